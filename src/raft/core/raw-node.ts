// RawNode: the core's public face, turning Raft state changes into Ready batches for the driver.

/*
 * Design. The core is a pure, single-threaded state machine in the shape of etcd-io/raft: it owns
 * no timers, sockets or files. The driver (src/raft/runtime) calls tick() on a timer, step() for
 * every message from a peer, propose()/readIndex()/... for local requests, and then, whenever
 * hasReady(), takes ready() and carries it out in this order: (1) persist `snapshot`, `entries`
 * (MemoryStorage.append) and `hardState` durably — votes and terms therefore reach disk before any
 * message that depends on them leaves; (2) send `messages`; (3) apply the snapshot then
 * `committedEntries` to the state machine, calling applyConfChange() for conf-change entries;
 * (4) call advance(). Files: types.ts (data), storage.ts (Storage + MemoryStorage, the complete
 * in-memory log that a durable store loads at start), log.ts (stable + unstable log), progress.ts
 * (per-follower replication state and the inflight window), quorum.ts (majority arithmetic),
 * raft.ts (roles and message handling), dedupe.ts (request-id dedupe for the state machine layer).
 * Membership changes one server at a time and take effect when applied, as in etcd.
 */

import { BalancerError, type ErrorCode } from '../../errors.js';
import { encodeConfChange, isLocalMessage, isResponseMessage, Raft, type RaftConfig, type RaftStatus } from './raft.js';
import type { Storage } from './storage.js';
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, Ready, SoftState } from './types.js';

export type { RaftConfig, RaftStatus } from './raft.js';

export type BasicStatus = Pick<RaftStatus, 'id' | 'term' | 'vote' | 'commit' | 'applied' | 'lastIndex' | 'role' | 'leader'>;

const DROPPABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['NOT_LEADER', 'NO_LEADER', 'PROPOSAL_DROPPED', 'MEMBERSHIP_CHANGE_PENDING']);

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function isEmptyHardState(h: HardState): boolean {
  return h.term === 0 && h.vote === null && h.commit === 0;
}

export class RawNode {
  private readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private inFlight: Ready | undefined;

  constructor(config: RaftConfig, storage: Storage) {
    this.raft = new Raft(config, storage);
    this.prevSoftState = this.raft.softState();
    // A bootstrapped node's first hard state (term 1, commit of the bootstrap entries) must be persisted.
    this.prevHardState = storage.initialState().hardState;
  }

  get id(): NodeId {
    return this.raft.id;
  }

  tick(): void {
    this.raft.tick();
  }

  /** Feeds a message from a peer. Local-only types are refused; a proposal this node cannot take is dropped. */
  step(m: Message): void {
    if (isLocalMessage(m.type)) {
      throw new BalancerError('INTERNAL', `${m.type} is a local message and cannot arrive from the network`);
    }
    if (isResponseMessage(m.type) && !this.raft.prs.has(m.from) && m.term <= this.raft.term) {
      return; // a reply from a node no longer in our configuration
    }
    try {
      this.raft.step(m);
    } catch (error) {
      // A forwarded proposal or read that cannot be served: its origin times out, as in etcd.
      if (error instanceof BalancerError && DROPPABLE.has(error.code)) return;
      throw error;
    }
  }

  /**
   * Proposes a state-machine command. With a requestId, the committed entry carries it, so the
   * state machine layer can apply a retried request once (see dedupe.ts). Throws BalancerError
   * NO_LEADER (no leader known), PROPOSAL_DROPPED (leader removed or transferring); at a follower
   * that knows the leader the proposal is forwarded and completes when the entry is applied.
   */
  propose(data: string, requestId?: string): void {
    const entry: Entry = { term: 0, index: 0, type: 'normal', data, ...(requestId === undefined ? {} : { requestId }) };
    this.raft.step({ type: 'MsgProp', from: this.raft.id, to: this.raft.id, term: 0, entries: [entry] });
  }

  /** Proposes a membership change; MEMBERSHIP_CHANGE_PENDING while another is unapplied or the leader is new. */
  proposeConfChange(cc: ConfChange): void {
    if (this.raft.role !== 'leader' && this.raft.lead !== null && this.raft.lead !== this.raft.id) {
      // Membership changes go through the leader's checks; forwarding would lose the error.
      throw new BalancerError('NOT_LEADER', `node ${this.raft.id} is not the leader; the leader is ${this.raft.lead}`);
    }
    const entry: Entry = { term: 0, index: 0, type: 'conf-change', data: encodeConfChange(cc) };
    this.raft.step({ type: 'MsgProp', from: this.raft.id, to: this.raft.id, term: 0, entries: [entry] });
  }

  /**
   * Requests a linearizable read. A ReadState with this ctx appears in a later Ready; once the
   * state machine has applied up to its index, a read served locally is linearizable.
   */
  readIndex(ctx: string): void {
    this.raft.step({ type: 'MsgReadIndex', from: this.raft.id, to: this.raft.id, term: 0, context: ctx });
  }

  transferLeader(to: NodeId): void {
    this.raft.step({ type: 'MsgTransferLeader', from: this.raft.id, to: this.raft.id, term: 0, context: to });
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.raft.step({ type: 'MsgHup', from: this.raft.id, to: this.raft.id, term: 0 });
  }

  /** Called by the driver when it applies a committed conf-change entry. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.step({ type: 'MsgUnreachable', from: id, to: this.raft.id, term: 0 });
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step({ type: 'MsgSnapStatus', from: id, to: this.raft.id, term: 0, ...(ok ? {} : { reject: true }) });
  }

  /** Whether this node may campaign: a voter with no snapshot waiting to be persisted (a learner never may). */
  promotable(): boolean {
    return this.raft.promotable();
  }

  /** Ticks between a leader's heartbeats to a learner. */
  learnerHeartbeatTicks(): number {
    return this.raft.learnerHeartbeatTimeout;
  }

  hasReady(): boolean {
    const r = this.raft;
    const soft = r.softState();
    if (soft.leader !== this.prevSoftState.leader || soft.role !== this.prevSoftState.role) return true;
    const hard = r.hardState();
    if (!isEmptyHardState(hard) && !sameHardState(hard, this.prevHardState)) return true;
    return (
      r.raftLog.hasPendingSnapshot() ||
      r.raftLog.hasUnstableEntries() ||
      r.raftLog.hasNextCommittedEntries() ||
      r.msgs.length > 0 ||
      r.readStates.length > 0
    );
  }

  /** The next batch of work; call advance() after carrying it out and before the next ready(). */
  ready(): Ready {
    if (this.inFlight !== undefined) {
      throw new BalancerError('INTERNAL', 'ready() called again before advance()');
    }
    const r = this.raft;
    const soft = r.softState();
    const hard = r.hardState();
    const entries = r.raftLog.unstableEntries();
    const snapshot = r.raftLog.unstableSnapshot();
    const softChanged = soft.leader !== this.prevSoftState.leader || soft.role !== this.prevSoftState.role;
    const hardChanged = !isEmptyHardState(hard) && !sameHardState(hard, this.prevHardState);
    const ready: Ready = {
      ...(softChanged ? { softState: soft } : {}),
      ...(hardChanged ? { hardState: hard } : {}),
      ...(snapshot === undefined ? {} : { snapshot }),
      entries,
      committedEntries: r.raftLog.nextCommittedEntries(),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: entries.length > 0 || (hardChanged && (hard.term !== this.prevHardState.term || hard.vote !== this.prevHardState.vote)) || snapshot !== undefined,
    };
    r.msgs = [];
    r.readStates = [];
    if (softChanged) this.prevSoftState = soft;
    if (hardChanged) this.prevHardState = hard;
    this.inFlight = ready;
    return ready;
  }

  /** The driver has persisted, sent and applied everything in the last Ready. */
  advance(): void {
    const ready = this.inFlight;
    if (ready === undefined) return;
    this.inFlight = undefined;
    const log = this.raft.raftLog;
    if (ready.snapshot !== undefined) log.stableSnapTo(ready.snapshot.metadata.index);
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) log.stableTo(last.index, last.term);
    let applied = ready.snapshot?.metadata.index ?? 0;
    const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastCommitted !== undefined) applied = Math.max(applied, lastCommitted.index);
    if (applied > log.applied) log.appliedTo(applied);
  }

  /** Everything the leader knows, including per-peer progress (allocates; not for hot paths). */
  status(): RaftStatus {
    return this.raft.status();
  }

  /** Elections this node started since it was created; it rises once per round, so a node that keeps campaigning shows it. */
  electionsStarted(): number {
    return this.raft.electionsStarted;
  }

  /** The membership alone: status() without the progress map (which holds an object per member on a leader). */
  confState(): ConfState {
    return this.raft.confState();
  }

  /** The cheap part of status(): no progress map, no membership copy. */
  basicStatus(): BasicStatus {
    const r = this.raft;
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.raftLog.committed,
      applied: r.raftLog.applied,
      lastIndex: r.raftLog.lastIndex(),
      role: r.role,
      leader: r.lead,
    };
  }
}
