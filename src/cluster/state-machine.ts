// The replicated state machine of a balancer cluster: config commands, request-id dedupe, membership with addresses and data dir identities; pure, snapshotable.

/*
 * Every node applies every committed entry through here, in log order, so everything in this file must be
 * deterministic: no clock, no randomness, no I/O, and iteration orders fixed by the order of application.
 * Normal entries carry an envelope `{"requestId": ..., "command": ...}`; the command goes through the same
 * reducer (and so the same validator) as on a single node, with the entry's log index as the new version.
 * A request id seen before answers with the stored outcome and changes nothing, which is what lets a
 * client retry a proposal (same id, any node) without it taking effect twice.
 *
 * Identity: the cluster id and each member's data dir incarnation are recorded here by `record-identity`
 * commands (the leader proposes one for what it has seen in authenticated handshakes). A recorded value
 * is never overwritten: the cluster id is set once, and a member's incarnation goes only with the member
 * (a `remove` conf change), so a member whose data dir was replaced stays refused until it is removed
 * and added again. Recording does not change the config version.
 */

import { RequestDedupe, type DedupeSnapshot } from '../raft/core/dedupe.js';
import type { ConfChange, Entry } from '../raft/core/types.js';
import { toPlainReplicated, type PlainReplicated } from '../config/plain.js';
import { validateReplicated } from '../config/validate.js';
import { BalancerError } from '../errors.js';
import { applyCommand, EMPTY_CONFIG_STATE, type CommandFailure, type ConfigCommand, type ConfigState } from '../control/config-reducer.js';
import { CHANGE_KINDS as KNOWN_CHANGE_KINDS, ConfigHistory, DEFAULT_HISTORY_SIZE, describeCommand, historyEntry, type ChangeKind, type ChangeMeta, type HistoryEntry } from '../control/history.js';

/** Records what the cluster has not recorded yet: its id, and the incarnations of members that have none. */
export interface RecordIdentityCommand {
  readonly type: 'record-identity';
  readonly clusterId?: string;
  readonly incarnations: Readonly<Record<string, string>>;
}

export type ClusterCommand = ConfigCommand | RecordIdentityCommand;

export interface ProposalEnvelope {
  readonly requestId: string;
  readonly command: ClusterCommand;
  /** When and from where, stamped by the proposer so that every node records the same history (absent in older entries). */
  readonly meta?: ChangeMeta;
}

/** What a command came to; stored in the dedupe table as JSON, so a retry gets the same answer. */
export type CommandOutcome =
  | { readonly ok: true; readonly version: number; readonly backend?: { id: string; url: string; weight: number } }
  | { readonly ok: false; readonly error: CommandFailure };

export interface ClusterMemberRecord {
  readonly id: string;
  /** Where peers reach the member, as given to `cluster add`; null for members of the bootstrap peers list. */
  readonly address: string | null;
  readonly voter: boolean;
  /** The member's data dir incarnation once recorded. */
  readonly incarnation?: string;
}

/** A member the cluster removed: peers refuse it, and tell it so, when it comes back with the same data dir. */
export interface RemovedMemberRecord {
  readonly id: string;
  /** The log index of the removal. */
  readonly index: number;
  /** Its data dir incarnation when removed (null if none was recorded): a node presenting it is that removed node. */
  readonly incarnation: string | null;
}

export interface StateMachineSnapshot {
  readonly format: 1;
  readonly version: number;
  readonly config: PlainReplicated;
  readonly members: readonly ClusterMemberRecord[];
  readonly dedupe: DedupeSnapshot;
  /** Absent in snapshots taken before identities were recorded. */
  readonly clusterId?: string | null;
  /** Absent in snapshots written before the history existed. */
  readonly history?: readonly HistoryEntry[];
  /** Absent in snapshots written before removals were recorded. */
  readonly removed?: readonly RemovedMemberRecord[];
}

export type AppliedEffect =
  | { readonly kind: 'noop' }
  | { readonly kind: 'command'; readonly requestId: string | undefined; readonly outcome: CommandOutcome; readonly duplicate: boolean }
  | { readonly kind: 'malformed'; readonly reason: string };

const SNAPSHOT_FORMAT = 1;

export function encodeEnvelope(envelope: ProposalEnvelope): string {
  return JSON.stringify(envelope);
}

function decodeEnvelope(data: string): ProposalEnvelope | string {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return 'entry data is not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'entry data is not an object';
  const record = value as { requestId?: unknown; command?: unknown };
  const command = record.command as { type?: unknown } | undefined;
  if (typeof record.requestId !== 'string' || typeof command !== 'object' || command === null || typeof command.type !== 'string') {
    return 'entry data is not a {requestId, command} envelope';
  }
  return record as ProposalEnvelope;
}

const CHANGE_KINDS: ReadonlySet<string> = new Set<string>(KNOWN_CHANGE_KINDS);

/** The entry's meta as far as it makes sense; anything odd is left out rather than trusted. */
function decodeMeta(raw: unknown): ChangeMeta {
  const meta = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const source = (typeof meta['source'] === 'object' && meta['source'] !== null ? meta['source'] : {}) as Record<string, unknown>;
  const kind = typeof source['kind'] === 'string' && CHANGE_KINDS.has(source['kind']) ? (source['kind'] as ChangeKind) : 'unknown';
  const text = (value: unknown): string | undefined => (typeof value === 'string' && value.length <= 4096 ? value : undefined);
  const node = text(source['node']);
  const file = text(source['file']);
  const via = source['via'] === 'api' || source['via'] === 'cli' ? source['via'] : undefined;
  const rollbackOf = Number.isSafeInteger(source['rollbackOf']) ? (source['rollbackOf'] as number) : undefined;
  const clientRequestId = text(meta['clientRequestId']);
  return {
    at: text(meta['at']) ?? null,
    source: {
      kind,
      ...(node === undefined ? {} : { node }),
      ...(file === undefined ? {} : { file }),
      ...(via === undefined ? {} : { via }),
      ...(rollbackOf === undefined ? {} : { rollbackOf }),
    },
    ...(clientRequestId === undefined ? {} : { clientRequestId }),
  };
}

export class ConfigStateMachine {
  private configState: ConfigState = EMPTY_CONFIG_STATE;
  private readonly memberMap = new Map<string, ClusterMemberRecord>();
  private readonly removedMap = new Map<string, RemovedMemberRecord>();
  private recordedClusterId: string | null = null;
  private dedupe: RequestDedupe;
  private readonly changes: ConfigHistory;

  constructor(dedupeCapacity?: number, historySize: number = DEFAULT_HISTORY_SIZE) {
    this.dedupe = new RequestDedupe(dedupeCapacity);
    this.changes = new ConfigHistory(historySize);
  }

  /** The last versions, newest first (bounded by this node's cluster.historySize). */
  history(): readonly HistoryEntry[] {
    return this.changes.list();
  }

  /** The recorded change that made `version`; undefined once the bounded history has forgotten it. */
  changeAt(version: number): HistoryEntry | undefined {
    return this.changes.at(version);
  }

  get state(): ConfigState {
    return this.configState;
  }

  get version(): number {
    return this.configState.version;
  }

  members(): ClusterMemberRecord[] {
    return [...this.memberMap.values()];
  }

  member(id: string): ClusterMemberRecord | undefined {
    return this.memberMap.get(id);
  }

  /** The removal of a node that is not a member now (null when it never was removed, or was added again since). */
  removedMember(id: string): RemovedMemberRecord | null {
    return this.removedMap.get(id) ?? null;
  }

  /** The cluster's id, once recorded. */
  get clusterId(): string | null {
    return this.recordedClusterId;
  }

  /** Applies a committed normal or empty entry. Never throws: a bad entry is reported, and skipped alike on every node. */
  applyEntry(entry: Entry): AppliedEffect {
    if (entry.type === 'empty' || entry.data === '') return { kind: 'noop' };
    if (entry.type !== 'normal') return { kind: 'malformed', reason: `${entry.type} entry given to applyEntry` };
    const envelope = decodeEnvelope(entry.data);
    if (typeof envelope === 'string') return { kind: 'malformed', reason: envelope };
    const requestId = entry.requestId ?? envelope.requestId;
    const stored = this.dedupe.lookup(requestId);
    if (stored !== undefined) {
      return { kind: 'command', requestId, outcome: JSON.parse(stored) as CommandOutcome, duplicate: true };
    }
    if (envelope.command.type === 'record-identity') {
      this.recordIdentity(envelope.command);
      const outcome: CommandOutcome = { ok: true, version: this.configState.version };
      this.dedupe.record(requestId, JSON.stringify(outcome));
      return { kind: 'command', requestId, outcome, duplicate: false };
    }
    const result = applyCommand(this.configState, envelope.command, entry.index);
    let outcome: CommandOutcome;
    if (result.ok) {
      this.configState = result.state;
      outcome = { ok: true, version: result.state.version, ...(result.backend === undefined ? {} : { backend: result.backend }) };
      this.changes.record(
        historyEntry({ version: result.state.version, requestId, change: describeCommand(envelope.command), ...decodeMeta(envelope.meta) }, result.state.config),
      );
    } else {
      outcome = { ok: false, error: result.error };
    }
    this.dedupe.record(requestId, JSON.stringify(outcome));
    return { kind: 'command', requestId, outcome, duplicate: false };
  }

  /** Applies a committed membership change (at log `index`); the address, when the change carries one, is what new peers dial. */
  applyConfChange(cc: ConfChange, index = 0): void {
    if (cc.type === 'remove') {
      const removed = this.memberMap.get(cc.nodeId);
      this.memberMap.delete(cc.nodeId);
      this.removedMap.set(cc.nodeId, { id: cc.nodeId, index, incarnation: removed?.incarnation ?? null });
      return;
    }
    this.removedMap.delete(cc.nodeId);
    const previous = this.memberMap.get(cc.nodeId);
    this.memberMap.set(cc.nodeId, {
      id: cc.nodeId,
      address: cc.address ?? previous?.address ?? null,
      voter: cc.type === 'add-voter',
      // Promoting a learner keeps what was recorded for it.
      ...(previous?.incarnation === undefined ? {} : { incarnation: previous.incarnation }),
    });
  }

  private recordIdentity(command: RecordIdentityCommand): void {
    if (this.recordedClusterId === null && typeof command.clusterId === 'string') this.recordedClusterId = command.clusterId;
    const incarnations = typeof command.incarnations === 'object' && command.incarnations !== null ? command.incarnations : {};
    for (const [id, incarnation] of Object.entries(incarnations)) {
      const member = this.memberMap.get(id);
      if (member === undefined || member.incarnation !== undefined || typeof incarnation !== 'string') continue;
      this.memberMap.set(id, { ...member, incarnation });
    }
  }

  snapshot(): string {
    const snapshot: StateMachineSnapshot = {
      format: SNAPSHOT_FORMAT,
      version: this.configState.version,
      config: toPlainReplicated(this.configState.config),
      members: this.members(),
      dedupe: this.dedupe.toJSON(),
      clusterId: this.recordedClusterId,
      history: this.changes.toJSON(),
      removed: [...this.removedMap.values()],
    };
    return JSON.stringify(snapshot);
  }

  /** Replaces the whole state with a snapshot's; throws INTERNAL when the data is not one of ours. */
  restore(data: string): void {
    let parsed: StateMachineSnapshot;
    try {
      parsed = JSON.parse(data) as StateMachineSnapshot;
    } catch (error) {
      throw new BalancerError('INTERNAL', 'state machine snapshot is not JSON', { cause: error });
    }
    if (parsed.format !== SNAPSHOT_FORMAT || !Number.isInteger(parsed.version) || !Array.isArray(parsed.members)) {
      throw new BalancerError('INTERNAL', 'state machine snapshot has an unknown format');
    }
    let state: ConfigState = EMPTY_CONFIG_STATE;
    if (parsed.version > 0) {
      // Validated like any command: a snapshot from a node with another validator fails loudly, not subtly.
      const validated = validateReplicated(parsed.config, 'snapshot');
      if (!validated.ok) {
        throw new BalancerError('INTERNAL', `state machine snapshot holds an invalid config: ${validated.problems[0]?.message ?? ''}`);
      }
      state = { version: parsed.version, config: validated.config };
    }
    this.configState = state;
    this.memberMap.clear();
    for (const member of parsed.members) {
      this.memberMap.set(member.id, {
        id: member.id,
        address: member.address,
        voter: member.voter,
        ...(typeof member.incarnation === 'string' ? { incarnation: member.incarnation } : {}),
      });
    }
    this.removedMap.clear();
    for (const removed of Array.isArray(parsed.removed) ? parsed.removed : []) {
      if (typeof removed?.id !== 'string' || !Number.isSafeInteger(removed.index)) continue;
      this.removedMap.set(removed.id, { id: removed.id, index: removed.index, incarnation: typeof removed.incarnation === 'string' ? removed.incarnation : null });
    }
    this.recordedClusterId = typeof parsed.clusterId === 'string' ? parsed.clusterId : null;
    this.dedupe = RequestDedupe.fromJSON(parsed.dedupe);
    this.changes.restore(parsed.history);
  }
}
