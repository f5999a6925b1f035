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
    optional(m['entries'], (v) => Array.isArray(v) && v.every(isEntry)) &&
    optional(m['snapshot'], isSnapshot);
  if (!valid) return null;
  const message: object = m;
  return message as Message;
}
