// Which payloads from a peer are Raft messages: the network message types and their shape, checked before the core sees them.

import { isPlainObject } from '../../json.js';
import type { Message, MessageType } from '../core/types.js';
import { isCount, isEntry, isSnapshot, optional } from './record-shapes.js';

// Local-only message types must never be accepted from the network: they would let a peer drive our node.
const NETWORK_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'MsgProp',
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgSnap',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgTransferLeader',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
]);
/** The message a payload holds, if it has the shape the core expects of a message from a peer. */
export function parsePeerMessage(payload: Buffer): Message | null {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (!isPlainObject(value)) return null;
  const m = value;
  const valid =
    typeof m['type'] === 'string' &&
    NETWORK_MESSAGE_TYPES.has(m['type'] as MessageType) &&
    typeof m['from'] === 'string' &&
    typeof m['to'] === 'string' &&
    isCount(m['term']) &&
    optional(m['logTerm'], isCount) &&
    optional(m['index'], isCount) &&
    optional(m['commit'], isCount) &&
    optional(m['rejectHint'], isCount) &&
    optional(m['reject'], (v) => typeof v === 'boolean') &&
    optional(m['context'], (v) => typeof v === 'string') &&
    optional(m['commitOnly'], (v) => typeof v === 'boolean') &&
    optional(m['entries'], (v) => Array.isArray(v) && v.every(isEntry)) &&
    optional(m['snapshot'], isSnapshot);
  if (!valid) return null;
  const message: object = m;
  return message as Message;
}

/**
 * Writes messages as the JSON they travel in. A leader hands a change to every member in one go, in messages that differ
 * only in `to` (each learner is sent the same committed entries): the rest of such a message is serialised once for the
 * run and reused, instead of once per member. `to` comes first, then the fields in their usual order; receivers parse
 * the object (parsePeerMessage), so the key order is not part of the wire format and nodes of either build read each
 * other. One encoder per transport; it keeps the last message it wrote (never a snapshot) until the next one.
 */
export class MessageEncoder {
  private last: Message | null = null;
  private lastRest = '';

  encode(message: Message): string {
    let rest: string;
    if (this.last !== null && sameButRecipient(this.last, message)) rest = this.lastRest;
    else {
      rest = JSON.stringify({ ...message, to: undefined }).slice(1);
      // A snapshot can be megabytes: not kept for a next message that could never share it anyway.
      this.last = message.snapshot === undefined ? message : null;
      this.lastRest = this.last === null ? '' : rest;
    }
    return `{"to":${JSON.stringify(message.to)}${rest === '}' ? '' : ','}${rest}`;
  }
}

/**
 * Whether two messages have the same fields in the same order and the same values but for `to`. Entries are compared by
 * identity: the core never changes an entry once made, and a fan-out's messages hold the same entry objects.
 */
function sameButRecipient(a: Message, b: Message): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  const otherKeys = Object.keys(b);
  if (keys.length !== otherKeys.length) return false;
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (key !== otherKeys[i]) return false;
    if (key === 'to' || x[key] === y[key]) continue;
    const mine = x[key];
    const theirs = y[key];
    if (key !== 'entries' || !Array.isArray(mine) || !Array.isArray(theirs) || mine.length !== theirs.length) return false;
    if (mine.some((entry, j) => entry !== theirs[j])) return false;
  }
  return true;
}
