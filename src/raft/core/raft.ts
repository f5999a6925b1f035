// The Raft state machine proper: roles, elections, replication, commit, reads, transfer and membership.

import type { Random } from '../../clock.js';
import { BalancerError } from '../../errors.js';
import { RaftLog } from './log.js';
import { Progress } from './progress.js';
import { quorumCommitIndex, voteResult, type VoteResult } from './quorum.js';
import { isStorageError, type Storage } from './storage.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  MessageType,
  NodeId,
  RaftRole,
  ReadState,
  Snapshot,
  SoftState,
} from './types.js';

/** Optional diagnostics sink; the core never requires one. */
export interface RaftLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface RaftConfig {
  readonly id: NodeId;
  /** Voters of a fresh cluster (every member must be given the same list). Empty when restarting from storage. */
  readonly voters?: readonly NodeId[];
  /** Alias of `voters`, etcd's name. */
  readonly peers?: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /** Ticks without hearing from a leader before campaigning (randomized in [electionTick, 2*electionTick)). */
  readonly electionTick?: number;
  readonly heartbeatTick?: number;
  /**
   * Ticks between heartbeats to learners (default: half the election timeout). A learner never campaigns, so it
   * needs no liveness beat at the voters' rate: in a fleet of 3 voters and 25 learners the learners' heartbeats
   * were most of the Raft traffic an idle cluster makes. Newly committed entries (with the commit) still go to learners at once.
   */
  readonly learnerHeartbeatTick?: number;
  readonly random: Random;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Characters of entry data per MsgApp (the first entry is always sent). */
  readonly maxSizePerMsg?: number;
  readonly maxEntriesPerMsg?: number;
  /** MsgApp batches in flight per follower before the leader waits for acknowledgements. */
  readonly maxInflightMsgs?: number;
  /** The last index the state machine applied before a restart; entries up to it are not delivered again. */
  readonly applied?: number;
  readonly logger?: RaftLogger;
}

export const RAFT_DEFAULTS = Object.freeze({
  electionTick: 10,
  heartbeatTick: 1,
  preVote: true,
  checkQuorum: true,
  maxSizePerMsg: 1024 * 1024,
  maxEntriesPerMsg: 64,
  maxInflightMsgs: 256,
});

export interface PeerProgress {
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly learner: boolean;
  readonly recentActive: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly role: RaftRole;
  readonly leader: NodeId | null;
  readonly leadTransferee: NodeId | null;
  /** Present only on the leader. */
  readonly progress?: Readonly<Record<NodeId, PeerProgress>>;
  readonly confState: ConfState;
}

/** Marks a MsgVote sent because of TimeoutNow: it may disturb a leader's lease, on purpose. */
export const CAMPAIGN_TRANSFER = 'campaign-transfer';

type CampaignKind = 'pre-election' | 'election' | 'transfer';

interface PendingRead {
  readonly index: number;
  readonly request: Message;
  readonly acks: Set<NodeId>;
}

const LOCAL_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['MsgHup', 'MsgBeat', 'MsgSnapStatus', 'MsgUnreachable']);

export function isLocalMessage(type: MessageType): boolean {
  return LOCAL_TYPES.has(type);
}

export function isResponseMessage(type: MessageType): boolean {
  return (
    type === 'MsgAppResp' ||
    type === 'MsgVoteResp' ||
    type === 'MsgPreVoteResp' ||
    type === 'MsgHeartbeatResp' ||
    type === 'MsgUnreachable'
  );
}

export function encodeConfChange(cc: ConfChange): string {
  return JSON.stringify(cc.address === undefined ? { type: cc.type, nodeId: cc.nodeId } : cc);
}

export function decodeConfChange(data: string): ConfChange {
  const parsed = JSON.parse(data) as { type?: unknown; nodeId?: unknown; address?: unknown };
  if (
    (parsed.type !== 'add-voter' && parsed.type !== 'add-learner' && parsed.type !== 'remove') ||
    typeof parsed.nodeId !== 'string'
  ) {
    throw new BalancerError('INTERNAL', `malformed conf change entry: ${data}`);
  }
  return typeof parsed.address === 'string'
    ? { type: parsed.type, nodeId: parsed.nodeId, address: parsed.address }
    : { type: parsed.type, nodeId: parsed.nodeId };
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | null = null;
  role: RaftRole = 'follower';
  lead: NodeId | null = null;
  readonly raftLog: RaftLog;
  readonly prs = new Map<NodeId, Progress>();
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  leadTransferee: NodeId | null = null;
  /** Index of the latest conf change in the log; another may be proposed only once this one is applied. */
  pendingConfIndex = 0;

  private readonly votes = new Map<NodeId, boolean>();
  /** A learner's newest acknowledgement of appended entries, held until its next acknowledgement is due (see acknowledgeAppend). */
  private heldAck: Message | null = null;
  /** Ticks since this node last sent an acknowledgement of appended entries (a learner sends at most one per learner beat). */
  private ticksSinceAck = Number.POSITIVE_INFINITY;
  private electionElapsed = 0;
  private electionsStartedCount = 0;
  private heartbeatElapsed = 0;
  private learnerHeartbeatElapsed = 0;
  private randomizedElectionTimeout: number;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  readonly learnerHeartbeatTimeout: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  private readonly maxSizePerMsg: number;
  private readonly maxEntriesPerMsg: number;
  private readonly maxInflight: number;
  private readonly random: Random;
  private readonly logger: RaftLogger | undefined;

  private readonly pendingReads = new Map<string, PendingRead>();
  private readonly readQueue: string[] = [];
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  private pendingReadIndexMessages: Message[] = [];

  /** Elections this node started (a pre-vote round, a vote round or a transfer's), since it was created; read-only outside. */
  get electionsStarted(): number {
    return this.electionsStartedCount;
  }

  constructor(config: RaftConfig, storage: Storage) {
    this.id = config.id;
    this.electionTimeout = config.electionTick ?? RAFT_DEFAULTS.electionTick;
    this.heartbeatTimeout = config.heartbeatTick ?? RAFT_DEFAULTS.heartbeatTick;
    if (this.heartbeatTimeout <= 0 || this.electionTimeout <= this.heartbeatTimeout) {
      throw new BalancerError('INTERNAL', 'electionTick must be greater than heartbeatTick, which must be positive');
    }
    this.learnerHeartbeatTimeout = config.learnerHeartbeatTick ?? Math.max(this.heartbeatTimeout, Math.floor(this.electionTimeout / 2));
    if (this.learnerHeartbeatTimeout < this.heartbeatTimeout) {
      throw new BalancerError('INTERNAL', 'learnerHeartbeatTick must be at least heartbeatTick');
    }
    this.checkQuorum = config.checkQuorum ?? RAFT_DEFAULTS.checkQuorum;
    this.preVote = config.preVote ?? RAFT_DEFAULTS.preVote;
    this.maxSizePerMsg = config.maxSizePerMsg ?? RAFT_DEFAULTS.maxSizePerMsg;
    this.maxEntriesPerMsg = Math.max(1, config.maxEntriesPerMsg ?? RAFT_DEFAULTS.maxEntriesPerMsg);
    this.maxInflight = Math.max(1, config.maxInflightMsgs ?? RAFT_DEFAULTS.maxInflightMsgs);
    this.random = config.random;
    this.logger = config.logger;
    this.randomizedElectionTimeout = this.electionTimeout;

    const { hardState, confState } = storage.initialState();
    const configVoters = config.voters ?? config.peers ?? [];
    const configLearners = config.learners ?? [];
    const freshStorage = storage.lastIndex() === 0 && hardState.term === 0 && confState.voters.length === 0;

    this.raftLog = new RaftLog(storage, config.applied ?? 0);
    this.restoreConf(confState);
    if (freshStorage && configVoters.length > 0) {
      this.bootstrap(configVoters, configLearners);
    } else {
      if (hardState.term !== 0 || hardState.commit !== 0) this.loadHardState(hardState);
      if (this.raftLog.applied > this.raftLog.committed) {
        throw new BalancerError('STORAGE_CORRUPT', `applied ${this.raftLog.applied} is beyond commit ${this.raftLog.committed}`);
      }
      this.replayAppliedConfChanges();
    }
    this.becomeFollower(this.term, null);
  }

  /**
   * A fresh cluster writes its membership as committed conf-change entries at term 1 (as etcd's
   * Bootstrap), identical on every member, so a restart finds membership in the log, not in config.
   */
  private bootstrap(voters: readonly NodeId[], learners: readonly NodeId[]): void {
    const changes: ConfChange[] = [
      ...voters.map((nodeId): ConfChange => ({ type: 'add-voter', nodeId })),
      ...learners.map((nodeId): ConfChange => ({ type: 'add-learner', nodeId })),
    ];
    const entries: Entry[] = changes.map((cc, i) => ({ term: 1, index: i + 1, type: 'conf-change', data: encodeConfChange(cc) }));
    this.raftLog.append(entries);
    this.raftLog.commitTo(entries.length);
    this.term = 1;
    for (const cc of changes) this.applyConfChange(cc);
  }

  private loadHardState(hs: HardState): void {
    if (hs.commit < this.raftLog.committed || hs.commit > this.raftLog.lastIndex()) {
      throw new BalancerError(
        'STORAGE_CORRUPT',
        `hard state commit ${hs.commit} is outside [${this.raftLog.committed}, ${this.raftLog.lastIndex()}]`,
      );
    }
    this.raftLog.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  /** Membership changes the state machine applied before a restart are not delivered again: apply them here. */
  private replayAppliedConfChanges(): void {
    const from = this.raftLog.firstIndex();
    const to = Math.min(this.raftLog.applied, this.raftLog.committed);
    if (to < from) return;
    for (const entry of this.raftLog.slice(from, to + 1)) {
      if (entry.type === 'conf-change') this.applyConfChange(decodeConfChange(entry.data));
    }
  }

  // ---- state accessors -------------------------------------------------------------------------

  softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  confState(): ConfState {
    return { voters: this.voters.slice(), learners: this.learners.slice() };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id);
  }

  /** Whether this node may campaign: a voter with no snapshot still waiting to be persisted. */
  promotable(): boolean {
    return this.isVoter(this.id) && !this.raftLog.hasPendingSnapshot();
  }

  status(): RaftStatus {
    const base = {
      id: this.id,
      term: this.term,
      vote: this.vote,
      commit: this.raftLog.committed,
      applied: this.raftLog.applied,
      lastIndex: this.raftLog.lastIndex(),
      role: this.role,
      leader: this.lead,
      leadTransferee: this.leadTransferee,
      confState: this.confState(),
    };
    if (this.role !== 'leader') return base;
    const progress: Record<NodeId, PeerProgress> = {};
    for (const [id, pr] of this.prs) {
      progress[id] = { match: pr.match, next: pr.next, state: pr.state, learner: pr.isLearner, recentActive: pr.recentActive };
    }
    return { ...base, progress };
  }

  // ---- role transitions ------------------------------------------------------------------------

  private send(m: Omit<Message, 'from'> & { from?: NodeId }): void {
    const message: Message = { ...m, from: m.from ?? this.id };
    // A held acknowledgement goes ahead of anything sent after it, so the leader sees this node's messages in order.
    if (this.heldAck !== null) this.releaseHeldAck();
    this.msgs.push(message);
  }

  private releaseHeldAck(): void {
    const ack = this.heldAck;
    if (ack === null) return;
    this.heldAck = null;
    this.ticksSinceAck = 0;
    this.msgs.push(ack);
  }

  /**
   * Acknowledges entries appended from the leader `to`. A voter does so at once: its acknowledgement may commit them. A
   * learner's counts for nothing but the leader's bookkeeping (its match, and its inflight window, 256 messages), so a
   * learner sends at most one per learner heartbeat interval: the first after a quiet interval goes at once, later ones
   * are held and the newest goes at the next due tick (or ahead of the next message it sends, such as a heartbeat
   * answer). In a fleet of 25 learners taking changes back to back the leader otherwise reads 25 acknowledgements per
   * change and each learner wakes to write one. Never held: rejections (sent at once, and the next success goes at once
   * too, so a probe is not kept waiting), answers to snapshots, and anything after a new term or leader or once this
   * node becomes a voter. Held or not, an acknowledgement leaves only with a Ready handled after the entries it covers
   * were persisted (it joins msgs no earlier than they join the log), so what it vouches for is on disk.
   */
  private acknowledgeAppend(to: NodeId, index: number): void {
    const ack: Message = { from: this.id, to, type: 'MsgAppResp', term: this.term, index };
    if (this.ticksSinceAck < this.learnerHeartbeatTimeout && !this.isVoter(this.id)) {
      this.heldAck = ack;
      return;
    }
    this.send(ack);
    this.ticksSinceAck = 0;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random.next() * this.electionTimeout);
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    // A held acknowledgement was for the leader before this reset; the next leader probes and is answered at once.
    this.heldAck = null;
    this.ticksSinceAck = this.learnerHeartbeatTimeout;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.learnerHeartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = null;
    this.votes.clear();
    const last = this.raftLog.lastIndex();
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(last + 1, this.maxInflight, pr.isLearner);
      if (id === this.id) fresh.match = last;
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.pendingReads.clear();
    this.readQueue.length = 0;
    this.pendingReadIndexMessages = [];
  }

  becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
    this.logger?.debug('became follower', { id: this.id, term, lead });
  }

  private becomeCandidate(): void {
    if (this.role === 'leader') throw new BalancerError('INTERNAL', 'leader cannot become candidate directly');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.logger?.debug('became candidate', { id: this.id, term: this.term });
  }

  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new BalancerError('INTERNAL', 'leader cannot become pre-candidate directly');
    // Pre-vote must not touch term or vote: a node that cannot win leaves no trace on anyone.
    this.votes.clear();
    this.lead = null;
    this.role = 'pre-candidate';
    this.logger?.debug('became pre-candidate', { id: this.id, term: this.term });
  }

  private becomeLeader(): void {
    if (this.role === 'follower') throw new BalancerError('INTERNAL', 'follower cannot become leader directly');
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.prs.get(this.id);
    if (self !== undefined) self.becomeReplicate();
    // Any conf change already in the log may be uncommitted; block new ones until it is applied.
    this.pendingConfIndex = this.raftLog.lastIndex();
    // The no-op: the only way to commit entries of earlier terms (Figure 8) and to learn the commit index.
    this.appendEntries([{ type: 'empty', data: '' }]);
    this.logger?.info('became leader', { id: this.id, term: this.term });
  }

  // ---- ticks -----------------------------------------------------------------------------------

  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    this.ticksSinceAck++;
    if (this.heldAck !== null && this.ticksSinceAck >= this.learnerHeartbeatTimeout) this.releaseHeldAck();
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step({ type: 'MsgHup', from: this.id, to: this.id, term: 0 });
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.learnerHeartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.checkQuorumActive();
      if (this.role === 'leader' && this.leadTransferee !== null) this.leadTransferee = null;
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step({ type: 'MsgBeat', from: this.id, to: this.id, term: 0 });
    }
  }

  /** CheckQuorum: a leader that did not hear from a quorum within an election timeout steps down. */
  private checkQuorumActive(): void {
    const active = new Map<NodeId, boolean>();
    for (const id of this.voters) {
      const pr = this.prs.get(id);
      active.set(id, id === this.id || pr?.recentActive === true);
    }
    for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
    if (voteResult(this.voters, active) !== 'won') {
      this.logger?.warn('stepping down: no quorum heard within an election timeout', { id: this.id, term: this.term });
      this.becomeFollower(this.term, null);
    }
  }

  // ---- message handling ------------------------------------------------------------------------

  /** Throws BalancerError for proposals and reads that cannot be accepted. */
  step(m: Message): void {
    if (m.term === 0) {
      // local message or a forwarded proposal/read: no term checks
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const force = m.context === CAMPAIGN_TRANSFER;
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // A leader we heard from recently is alive: a removed or partitioned node must not depose it.
          this.logger?.debug('ignoring vote request within lease', { id: this.id, from: m.from, term: m.term });
          return;
        }
      }
      if (m.type === 'MsgPreVote') {
        // Never change term on a pre-vote.
      } else if (m.type === 'MsgPreVoteResp' && m.reject !== true) {
        // The pre-candidate's own future term; it moves there only if it wins the pre-vote.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A stale leader (e.g. healed from a partition) learns our term and steps down, instead of
        // us staying deaf to it while it keeps its followers from electing anyone.
        this.send({ to: m.from, type: 'MsgAppResp', term: this.term });
      } else if (m.type === 'MsgPreVote') {
        this.send({ to: m.from, type: 'MsgPreVoteResp', term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup(this.preVote ? 'pre-election' : 'election');
        return;
      case 'MsgVote':
      case 'MsgPreVote': {
        const canVote =
          this.vote === m.from ||
          (this.vote === null && this.lead === null) ||
          (m.type === 'MsgPreVote' && m.term > this.term);
        const respType = m.type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
        if (canVote && this.raftLog.isUpToDate(m.index ?? 0, m.logTerm ?? 0)) {
          // The response carries the candidate's term so a stale grant is recognisable as stale.
          this.send({ to: m.from, type: respType, term: m.term });
          if (m.type === 'MsgVote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send({ to: m.from, type: respType, term: this.term, reject: true });
        }
        return;
      }
      default:
        break;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        return;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        return;
      case 'follower':
        this.stepFollower(m);
        return;
    }
  }

  private hup(kind: CampaignKind): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChange()) {
      // Our membership may be about to change; campaigning now could count the wrong quorum.
      this.logger?.debug('not campaigning: unapplied conf change', { id: this.id });
      return;
    }
    this.electionsStartedCount++;
    this.campaign(kind);
  }

  private hasUnappliedConfChange(): boolean {
    if (this.raftLog.applied >= this.raftLog.committed) return false;
    const lo = Math.max(this.raftLog.applied + 1, this.raftLog.firstIndex());
    if (lo > this.raftLog.committed) return false;
    return this.raftLog.slice(lo, this.raftLog.committed + 1).some((e) => e.type === 'conf-change');
  }

  campaign(kind: CampaignKind): void {
    let voteType: 'MsgVote' | 'MsgPreVote';
    let term: number;
    if (kind === 'pre-election') {
      this.becomePreCandidate();
      voteType = 'MsgPreVote';
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'MsgVote';
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      if (kind === 'pre-election') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.raftLog.lastIndex();
    const lastTerm = this.raftLog.lastTerm();
    for (const id of this.voters) {
      if (id === this.id) continue;
      this.send({
        to: id,
        type: voteType,
        term,
        index: lastIndex,
        logTerm: lastTerm,
        ...(kind === 'transfer' ? { context: CAMPAIGN_TRANSFER } : {}),
      });
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters, this.votes);
  }

  private stepCandidate(m: Message): void {
    const myVoteResp = this.role === 'pre-candidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
    switch (m.type) {
      case 'MsgProp':
        throw new BalancerError('NO_LEADER', `node ${this.id} is campaigning; no leader is known`);
      case 'MsgReadIndex':
        throw new BalancerError('NO_LEADER', `node ${this.id} is campaigning; no leader is known`);
      case 'MsgApp':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case 'MsgPreVoteResp':
      case 'MsgVoteResp': {
        if (m.type !== myVoteResp) return;
        const result = this.poll(m.from, m.reject !== true);
        if (result === 'won') {
          if (this.role === 'pre-candidate') {
            this.campaign('election');
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === 'lost') {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgProp':
        if (this.lead === null) throw new BalancerError('NO_LEADER', `node ${this.id} knows no leader`);
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgApp':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case 'MsgSnap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case 'MsgTransferLeader':
        if (this.lead === null) return;
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgTimeoutNow':
        this.logger?.info('campaigning on TimeoutNow', { id: this.id, term: this.term, from: m.from });
        // A transfer skips pre-vote: the old leader asked for it, so there is no lease to protect.
        this.hup('transfer');
        return;
      case 'MsgReadIndex':
        if (this.lead === null) throw new BalancerError('NO_LEADER', `node ${this.id} knows no leader`);
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'MsgReadIndexResp':
        this.readStates.push({ index: m.index ?? 0, requestCtx: m.context ?? '' });
        return;
      default:
        return;
    }
  }

  private handleAppendEntries(m: Message): void {
    const prevIndex = m.index ?? 0;
    if (prevIndex < this.raftLog.committed) {
      // Everything up to our commit index is settled; tell the leader where we are.
      this.send({ to: m.from, type: 'MsgAppResp', term: this.term, index: this.raftLog.committed });
      return;
    }
    const lastNew = this.raftLog.maybeAppend(prevIndex, m.logTerm ?? 0, m.commit ?? 0, m.entries ?? []);
    if (lastNew !== undefined) {
      // The leader asked for no answer to a commit notice it knows we hold the log for (see maybeSendAppend).
      if (m.commitOnly !== true || (m.entries?.length ?? 0) > 0) this.acknowledgeAppend(m.from, lastNew);
      return;
    }
    // Fast backtracking: skip back past every entry of a term greater than the leader's prevLogTerm,
    // so the leader can jump a whole term per round trip instead of one entry.
    const [hintIndex, hintTerm] = this.raftLog.findConflictByTerm(Math.min(prevIndex, this.raftLog.lastIndex()), m.logTerm ?? 0);
    // The leader probes after a rejection: its next success is answered at once.
    this.ticksSinceAck = this.learnerHeartbeatTimeout;
    this.send({
      to: m.from,
      type: 'MsgAppResp',
      term: this.term,
      index: prevIndex,
      reject: true,
      rejectHint: hintIndex,
      logTerm: hintTerm,
    });
  }

  private handleHeartbeat(m: Message): void {
    this.raftLog.commitTo(Math.min(m.commit ?? 0, this.raftLog.lastIndex()));
    this.send({ to: m.from, type: 'MsgHeartbeatResp', term: this.term, ...(m.context === undefined ? {} : { context: m.context }) });
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    if (snapshot === undefined) return;
    if (this.restore(snapshot)) {
      this.logger?.info('restored snapshot', { id: this.id, index: snapshot.metadata.index });
      this.send({ to: m.from, type: 'MsgAppResp', term: this.term, index: this.raftLog.lastIndex() });
    } else {
      this.send({ to: m.from, type: 'MsgAppResp', term: this.term, index: this.raftLog.committed });
    }
  }

  private restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (index <= this.raftLog.committed) return false;
    if (this.role !== 'follower') {
      this.becomeFollower(this.term + 1, null);
      return false;
    }
    if (!confState.voters.includes(this.id) && !confState.learners.includes(this.id)) {
      // A node added after the leader's latest snapshot: install it anyway; the log after it carries
      // our own addition. Until we apply that we are not promotable, so this cannot harm safety.
      this.logger?.info('installing a snapshot taken before this node joined', { id: this.id, index });
    }
    if (this.raftLog.matchTerm(index, term)) {
      // We already hold the snapshot's last entry: keep our log, just learn the commit.
      this.raftLog.commitTo(index);
      return false;
    }
    this.raftLog.restore(snapshot);
    this.restoreConf(confState);
    return true;
  }

  private restoreConf(confState: ConfState): void {
    this.prs.clear();
    this.voters = [];
    this.learners = [];
    const next = this.raftLog.lastIndex() + 1;
    for (const id of confState.voters) {
      this.voters.push(id);
      this.prs.set(id, new Progress(next, this.maxInflight, false));
    }
    for (const id of confState.learners) {
      if (this.prs.has(id)) continue;
      this.learners.push(id);
      this.prs.set(id, new Progress(next, this.maxInflight, true));
    }
    const self = this.prs.get(this.id);
    if (self !== undefined) self.match = next - 1;
  }

  // ---- leader ----------------------------------------------------------------------------------

  private appendEntries(entries: readonly Omit<Entry, 'term' | 'index'>[]): void {
    let index = this.raftLog.lastIndex();
    const stamped: Entry[] = entries.map((e) => ({ ...e, term: this.term, index: ++index }));
    const last = this.raftLog.append(stamped);
    // The leader's own entries count at once. Nothing acts on a commit before the Ready holding them is persisted: the
    // commit reaches messages, the state machine and clients only in a later Ready, and the driver carries Readies out
    // one at a time (it may send this Ready's appends before writing them: thesis 10.2.1).
    this.prs.get(this.id)?.maybeUpdate(last);
    this.maybeCommit();
  }

  private maybeCommit(): boolean {
    const mci = quorumCommitIndex(this.voters, (id) => this.prs.get(id)?.match ?? 0);
    return this.raftLog.maybeCommit(mci, this.term);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  /** Sends entries (or a snapshot) to `to` if its progress allows; false when nothing was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.raftLog.term(prevIndex);
    let entries: Entry[] | undefined;
    if (prevTerm !== undefined) {
      try {
        entries = this.raftLog.entriesFrom(pr.next, this.maxSizePerMsg).slice(0, this.maxEntriesPerMsg);
      } catch (error) {
        if (!isStorageError(error, 'compacted')) throw error;
      }
    }
    if (prevTerm === undefined || entries === undefined) {
      return this.sendSnapshot(to, pr);
    }
    // A learner is sent entries only once they are committed, with the commit index in the same message: it persists
    // and applies them in one step, and never competes with the voters' persistence before a commit (in a fleet of
    // 3 voters and 25 learners on shared cores and one disk, the commit waited behind the learners' fsyncs). Safe
    // because a learner neither votes nor counts for the quorum; when promoted it gets the uncommitted tail like any voter.
    if (pr.isLearner && entries.length > 0) entries = entries.slice(0, Math.max(0, this.raftLog.committed - pr.next + 1));
    if (entries.length === 0 && !sendIfEmpty) return false;
    // A commit notice to a member that acknowledged everything up to prevIndex: its answer would tell nothing new (the
    // match is known, no window slot is taken, and the acknowledgement before it marked the member active), so it is
    // asked not to send one. A probe, or a member with entries still unacknowledged, is answered as before.
    const commitOnly = entries.length === 0 && pr.state === 'replicate' && pr.match === prevIndex;
    this.send({
      to,
      type: 'MsgApp',
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.raftLog.committed,
      ...(commitOnly ? { commitOnly } : {}),
    });
    pr.sentEntries(entries.length, entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex);
    pr.appendedSinceBeat = true;
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    let snapshot;
    try {
      snapshot = this.raftLog.snapshot();
    } catch (error) {
      if (isStorageError(error, 'snapshot-temporarily-unavailable')) return false;
      throw error;
    }
    if (snapshot.metadata.index === 0) return false;
    this.send({ to, type: 'MsgSnap', term: this.term, snapshot });
    pr.becomeSnapshot(snapshot.metadata.index);
    this.logger?.debug('sent snapshot', { id: this.id, to, index: snapshot.metadata.index });
    return true;
  }

  /** The last index `pr`'s member may be sent: a learner only what is committed (maybeSendAppend). */
  private lastSendable(pr: Progress): number {
    return pr.isLearner ? Math.min(this.raftLog.committed, this.raftLog.lastIndex()) : this.raftLog.lastIndex();
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  /**
   * Heartbeats to every voter; to learners too when `toLearners` (their own, slower beat). A member sent a MsgApp since
   * its last beat was due is skipped this time: that append reset its election timer and carried the commit index, and
   * its answer marks it active, as the heartbeat's would (while a fleet takes changes back to back, the leader would
   * otherwise send and answer a beat per member per interval on top of every change). Lost appends are still noticed:
   * a member whose appends stopped (paused, or nothing new) gets the next beat, whose answer resends. A beat carrying a
   * read index request goes to everyone: each answer confirms the leadership the read waits for.
   */
  private bcastHeartbeat(context: string | undefined, toLearners: boolean): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id || (pr.isLearner && !toLearners)) continue;
      const appended = pr.appendedSinceBeat;
      pr.appendedSinceBeat = false;
      if (appended && context === undefined) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, this.raftLog.committed);
      this.send({ to: id, type: 'MsgHeartbeat', term: this.term, commit, ...(context === undefined ? {} : { context }) });
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ to, type: 'MsgTimeoutNow', term: this.term });
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgBeat': {
        const toLearners = this.learnerHeartbeatElapsed >= this.learnerHeartbeatTimeout;
        if (toLearners) this.learnerHeartbeatElapsed = 0;
        this.bcastHeartbeat(this.readQueue.length > 0 ? this.readQueue[this.readQueue.length - 1] : undefined, toLearners);
        return;
      }
      case 'MsgProp':
        this.handleProposal(m);
        return;
      case 'MsgReadIndex':
        this.handleReadIndex(m);
        return;
      case 'MsgTransferLeader':
        this.handleTransferLeader(m);
        return;
      default:
        break;
    }
    const pr = this.prs.get(m.from);
    if (pr === undefined) return;
    switch (m.type) {
      case 'MsgAppResp':
        this.handleAppendResponse(m, pr);
        return;
      case 'MsgHeartbeatResp': {
        pr.recentActive = true;
        pr.probeSent = false;
        // A full window after lost messages would otherwise stall this follower until a timeout.
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.lastSendable(pr)) this.sendAppend(m.from);
        if (m.context !== undefined) this.ackRead(m.from, m.context);
        return;
      }
      case 'MsgSnapStatus':
        if (pr.state !== 'snapshot') return;
        if (m.reject === true) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for a heartbeat response (or the MsgAppResp to the snapshot) before probing again.
        pr.probeSent = true;
        return;
      case 'MsgUnreachable':
        if (pr.state === 'replicate') pr.becomeProbe();
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.index === undefined) return; // a term-only reply to a stale message
    if (m.reject === true) {
      let nextProbe = m.rejectHint ?? 0;
      if ((m.logTerm ?? 0) > 0) {
        // Leader-side half of fast backtracking: skip our own entries of terms the follower lacks.
        nextProbe = this.raftLog.findConflictByTerm(nextProbe, m.logTerm ?? 0)[0];
      }
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') {
      pr.becomeReplicate();
    } else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from);
    }
    // Keep the pipe full while the window allows; bounded by the log length.
    for (let i = 0; i < this.maxInflight && this.maybeSendAppend(m.from, false); i++) {
      // sending
    }
    if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
  }

  private handleProposal(m: Message): void {
    const entries = m.entries ?? [];
    if (entries.length === 0) throw new BalancerError('PROPOSAL_DROPPED', 'empty proposal');
    if (!this.prs.has(this.id)) {
      throw new BalancerError('PROPOSAL_DROPPED', `node ${this.id} was removed from the cluster`);
    }
    if (this.leadTransferee !== null) {
      throw new BalancerError('PROPOSAL_DROPPED', `leadership is being transferred to ${this.leadTransferee}`);
    }
    for (const entry of entries) {
      if (entry.type !== 'conf-change') continue;
      const problem = this.confChangeProblem(decodeConfChange(entry.data));
      if (problem !== undefined) throw new BalancerError('MEMBERSHIP_CHANGE_PENDING', problem);
      this.pendingConfIndex = this.raftLog.lastIndex() + entries.indexOf(entry) + 1;
    }
    this.appendEntries(entries.map((e) => ({ type: e.type, data: e.data, ...(e.requestId === undefined ? {} : { requestId: e.requestId }) })));
    // Learners hear of the new entries when they commit (or at once when the leader alone is the quorum); until
    // then an empty append would only wake them.
    for (const [id, pr] of this.prs) if (id !== this.id) this.maybeSendAppend(id, !pr.isLearner);
  }

  /** Why a membership change cannot be appended now, or undefined when it can. */
  private confChangeProblem(cc: ConfChange): string | undefined {
    if (!this.committedEntryInCurrentTerm()) {
      // The single-server-change fix: a new leader first commits an entry of its own term, so a
      // change proposed by an earlier leader can no longer be committed behind its back.
      return `leader ${this.id} has not yet committed an entry in term ${this.term}`;
    }
    if (this.pendingConfIndex > this.raftLog.applied) {
      return `a membership change at index ${this.pendingConfIndex} is not applied yet (applied ${this.raftLog.applied})`;
    }
    if (cc.type === 'remove' && this.voters.length === 1 && this.voters[0] === cc.nodeId) {
      return `cannot remove ${cc.nodeId}, the only voter`;
    }
    return undefined;
  }

  private handleTransferLeader(m: Message): void {
    const target = m.context ?? '';
    const pr = this.prs.get(target);
    if (pr === undefined || pr.isLearner) {
      this.logger?.debug('ignoring transfer to a non-voter', { id: this.id, target });
      return;
    }
    if (this.leadTransferee !== null) {
      if (this.leadTransferee === target) return;
      this.leadTransferee = null;
    }
    if (target === this.id) return;
    // Give the transfer one election timeout; tickHeartbeat aborts it after that.
    this.electionElapsed = 0;
    this.leadTransferee = target;
    if (pr.match === this.raftLog.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target);
  }

  private handleReadIndex(m: Message): void {
    if (this.voters.length === 1 && this.voters[0] === this.id) {
      this.answerRead(m, this.raftLog.committed);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may lag the true one until our no-op commits; answer after that.
      this.pendingReadIndexMessages.push(m);
      return;
    }
    this.startRead(m);
  }

  private startRead(m: Message): void {
    const ctx = m.context ?? '';
    if (!this.pendingReads.has(ctx)) {
      this.pendingReads.set(ctx, { index: this.raftLog.committed, request: m, acks: new Set() });
      this.readQueue.push(ctx);
    }
    this.ackRead(this.id, ctx);
    // Only voters' acknowledgements confirm leadership for a read.
    if (this.pendingReads.has(ctx)) this.bcastHeartbeat(ctx, false);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const waiting = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of waiting) this.startRead(m);
  }

  /** A heartbeat ack for `ctx` confirms leadership for it and every read queued before it. */
  private ackRead(from: NodeId, ctx: string): void {
    const pending = this.pendingReads.get(ctx);
    if (pending === undefined || !this.isVoter(from)) return;
    pending.acks.add(from);
    const acks = new Map<NodeId, boolean>();
    for (const id of pending.acks) acks.set(id, true);
    if (voteResult(this.voters, acks) !== 'won') return;
    const at = this.readQueue.indexOf(ctx);
    const done = this.readQueue.splice(0, at + 1);
    for (const key of done) {
      const read = this.pendingReads.get(key);
      this.pendingReads.delete(key);
      if (read !== undefined) this.answerRead(read.request, read.index);
    }
  }

  private answerRead(request: Message, index: number): void {
    const ctx = request.context ?? '';
    if (request.from === this.id) {
      this.readStates.push({ index, requestCtx: ctx });
    } else {
      this.send({ to: request.from, type: 'MsgReadIndexResp', term: this.term, index, context: ctx });
    }
  }

  // ---- membership ------------------------------------------------------------------------------

  /** Applies a committed membership change; called by the driver when it applies the entry. */
  applyConfChange(cc: ConfChange): ConfState {
    const next = this.raftLog.lastIndex() + 1;
    switch (cc.type) {
      case 'add-voter': {
        this.learners = this.learners.filter((id) => id !== cc.nodeId);
        if (!this.voters.includes(cc.nodeId)) this.voters.push(cc.nodeId);
        const pr = this.prs.get(cc.nodeId);
        if (pr === undefined) {
          const fresh = new Progress(next, this.maxInflight, false);
          // Lets a snapshot go out at once instead of waiting for a first reply from the new node.
          fresh.recentActive = true;
          this.prs.set(cc.nodeId, fresh);
        } else {
          pr.isLearner = false;
        }
        break;
      }
      case 'add-learner': {
        this.voters = this.voters.filter((id) => id !== cc.nodeId);
        if (!this.learners.includes(cc.nodeId)) this.learners.push(cc.nodeId);
        const pr = this.prs.get(cc.nodeId);
        if (pr === undefined) {
          const fresh = new Progress(next, this.maxInflight, true);
          fresh.recentActive = true;
          this.prs.set(cc.nodeId, fresh);
        } else {
          pr.isLearner = true;
        }
        break;
      }
      case 'remove':
        this.voters = this.voters.filter((id) => id !== cc.nodeId);
        this.learners = this.learners.filter((id) => id !== cc.nodeId);
        this.prs.delete(cc.nodeId);
        break;
    }
    if (this.role === 'leader') this.afterLeaderConfChange();
    // A learner just promoted: the leader now counts its acknowledgements towards commits.
    if (this.heldAck !== null && this.isVoter(this.id)) this.releaseHeldAck();
    return this.confState();
  }

  private afterLeaderConfChange(): void {
    if (!this.isVoter(this.id)) {
      // Removed or demoted: hand over to the most caught-up voter so the cluster need not wait for an
      // election timeout, then stop leading.
      let best: NodeId | null = null;
      let bestMatch = -1;
      for (const id of this.voters) {
        const match = this.prs.get(id)?.match ?? 0;
        if (match > bestMatch) {
          best = id;
          bestMatch = match;
        }
      }
      if (best !== null && bestMatch === this.raftLog.lastIndex()) this.sendTimeoutNow(best);
      this.logger?.info('leader left the voters; stepping down', { id: this.id, term: this.term });
      this.becomeFollower(this.term, null);
      return;
    }
    if (this.voters.length === 0) return;
    // A smaller quorum may already have committed more.
    if (this.maybeCommit()) this.bcastAppend();
    else for (const id of this.prs.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
    // A member that never acknowledged anything (just added) is probed now, not at its next heartbeat: a new
    // learner gets its log (or a snapshot) within a round trip of the commit that added it.
    for (const [id, pr] of this.prs) if (id !== this.id && pr.match === 0 && !pr.isPaused()) this.maybeSendAppend(id, true);
    if (this.leadTransferee !== null && !this.isVoter(this.leadTransferee)) this.leadTransferee = null;
  }
}
