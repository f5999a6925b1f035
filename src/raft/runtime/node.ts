// The Raft driver: runs the pure core on real time, durable storage and the peer transport, and feeds committed entries to a state machine.

/*
 * One RawNode, one DiskStorage (loaded into the core's MemoryStorage at start) and one PeerTransport.
 * A timer ticks the core every heartbeat interval (a learner takes a batch of ticks as often as leaders beat
 * learners). Every input (tick, peer message, proposal) only mutates the core and schedules the Ready loop;
 * the loop takes one Ready at a time and carries it out strictly in order: persist (snapshot, entries, hard
 * state: fsynced before anything else happens) -> send messages -> apply the snapshot and committed entries
 * -> advance(). It never runs twice at once, so the state machine sees entries in log order from a single caller.
 * Three exceptions, as in etcd: a Ready holding nothing that must be durable (at most a new commit index) sends and
 * applies at once and writes the commit index without an fsync; a follower or learner applies entries a quorum of
 * others committed while its own copy is still being written (it still acknowledges them only once written); and a
 * leader sends its appends while its own copy is being written. See handleReadyWithoutSync,
 * mayApplyBeforePersisting and maySendBeforePersisting.
 *
 * Every `snapshotEvery` applied entries the state machine is serialised into a snapshot, saved, and the
 * log before it compacted, in memory and on disk. A follower too far behind then gets that snapshot.
 *
 * Fail-stop: any error that means the log or state is not what Raft requires (a LogInvariantError or
 * any other throw from the core while it handles a peer message, a tick or a Ready; a heartbeat showing
 * that this node lost entries it acknowledged) and any failure to persist stops the node for good: no
 * more ticks, votes, acknowledgements or proposals; the peer transport is closed; a 'failed' event
 * says why and what to do, and balancer_raft_failed is 1. A node that kept voting on a broken log could
 * help elect a leader missing committed entries; a silent node only costs the cluster one member. The
 * state machine keeps what it applied, so the data plane keeps serving its last config.
 *
 * Proposals made here are followed until applied, so one that can no longer commit answers at once with a
 * 'dropped' event (the caller proposes again with the same request id, which the state machine applies at
 * most once) instead of leaving its caller to time out: its entry was overwritten by a new leader's log (or
 * cut off with the suffix it was in), or it never reached this node's log before the leader or term
 * changed (a forwarder, the old leader, dropped it), or a snapshot replaced the log around it.
 */

import type { Clock, Random, TimerHandle } from '../../clock.js';
import { systemClock, systemRandom } from '../../clock.js';
import { BalancerError, errorMessage, isBalancerError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { RaftMetrics } from '../../metrics/types.js';
import { decodeConfChange, encodeConfChange, RawNode, type BasicStatus, type RaftStatus } from '../core/index.js';
import { MemoryStorage } from '../core/storage.js';
import type { ConfChange, ConfState, Entry, Message, NodeId, RaftRole, Ready, Snapshot } from '../core/types.js';
import { DiskStorage, type DiskStorageOptions, type PersistedState, type RaftStorage } from './storage.js';
import type { PeerIdentity, PeerRefusal } from './peer-connection.js';
import { PeerTransport, type PeerStats, type PeerTransportOptions, type RaftTransport } from './transport.js';

const RAFT_NODE_DEFAULTS = Object.freeze({
  snapshotEvery: 1000,
  /** Ready batches handled back to back before the loop yields to I/O callbacks. */
  readyBatchLimit: 256,
  /** Bound on proposals followed for a 'dropped' event at once. */
  maxTrackedProposals: 10_000,
});

/** The state machine the driver applies to. Calls come from the Ready loop only, one at a time, in log order. */
export interface RaftApplier {
  /** Replaces the whole state with a snapshot's (at start from disk, or sent by the leader). */
  restoreSnapshot(snapshot: Snapshot): void;
  /** A committed normal or empty entry. */
  applyEntry(entry: Entry): void;
  /** A committed membership change, after the core applied it. */
  applyConfChange(entry: Entry, change: ConfChange): void;
  /** The state after the last applied entry, for a local snapshot. */
  snapshotData(): string;
  /** Where peers reach a member, when the replicated membership knows it. */
  memberAddress(id: NodeId): string | null;
  /** The data dir incarnation the cluster recorded for a member; a peer presenting another is refused. */
  memberIncarnation?(id: NodeId): string | null;
  /** The cluster's recorded id; a peer presenting another is refused. */
  clusterId?(): string | null;
  /** The removal of a node that is no member now, with its incarnation then (null: never removed, or added again). */
  removedMember?(id: NodeId): { readonly index: number; readonly incarnation: string | null } | null;
}

/**
 * Why a node stopped taking part in Raft: `storage` (persisting failed), `invariant` (the core found its
 * log or state broken), `lost-log` (a leader's heartbeat shows entries this node acknowledged are gone),
 * `state-machine` (applying a committed entry or snapshot threw).
 */
export type RaftFailureKind = 'storage' | 'invariant' | 'lost-log' | 'state-machine';

export interface RaftFailure {
  readonly kind: RaftFailureKind;
  readonly error: Error;
  /** What the operator should do, in a sentence or two. */
  readonly advice: string;
}

export type RaftNodeEvent =
  | { readonly type: 'leader'; readonly leader: NodeId | null; readonly role: RaftRole; readonly term: number }
  | { readonly type: 'read'; readonly context: string; readonly index: number }
  | { readonly type: 'applied'; readonly index: number }
  /** A peer proved who it is in a handshake and presented this data dir identity. */
  | { readonly type: 'peer'; readonly peer: NodeId; readonly identity: PeerIdentity }
  /** A proposal made on this node can no longer commit as proposed; proposing it again with the same request id is safe. */
  | { readonly type: 'dropped'; readonly requestId: string; readonly reason: string }
  /** A peer refused this node because the cluster removed it (while this node was down, or it would have applied it). */
  | { readonly type: 'removed-by-peer'; readonly peer: NodeId; readonly detail: string }
  | ({ readonly type: 'failed' } & RaftFailure);

/** Errors the core throws at a caller for a request it cannot take now; anything else it throws means a broken invariant. */
const REFUSALS: ReadonlySet<string> = new Set(['NO_LEADER', 'NOT_LEADER', 'PROPOSAL_DROPPED', 'MEMBERSHIP_CHANGE_PENDING']);

/** An error thrown inside the Ready loop, tagged with the step it came from. */
class FailStop extends Error {
  constructor(
    readonly kind: RaftFailureKind,
    readonly error: Error,
  ) {
    super(error.message, { cause: error });
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function adviceFor(kind: RaftFailureKind, nodeId: NodeId): string {
  const rejoin =
    `remove it from the cluster (balancer cluster remove ${nodeId}), move its data dir aside, start it with cluster.join: true ` +
    `and add it again (balancer cluster add ${nodeId} ADDRESS); it then catches up from the leader`;
  switch (kind) {
    case 'storage':
      return 'Persisting Raft state failed: check the disk under the data dir (space, permissions, I/O errors), then restart the node; it recovers from its write-ahead log.';
    case 'lost-log':
      return `This node lost log entries it had acknowledged (a wiped or restored data dir, or a disk that lost writes); Raft cannot repair that by itself: ${rejoin}.`;
    case 'invariant':
      return `Its Raft log or state is not what Raft requires (a damaged or replaced data dir, or a bug). Restart it once, keeping the data dir; if it stops again, ${rejoin}.`;
    case 'state-machine':
      return `Applying a committed entry or snapshot failed (a log written by another balancer version, or a bug). Restart it once; if it stops again, ${rejoin}.`;
  }
}

export interface RaftNodeOptions {
  readonly nodeId: NodeId;
  /** host:port for peer traffic; port 0 picks a free one (see `port`). */
  readonly listen: string;
  /** Node id -> address this node dials; this node's own entry included (its key makes it a bootstrap voter). */
  readonly peers: Readonly<Record<NodeId, string>>;
  readonly secret: string;
  readonly dataDir: string;
  readonly electionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  /** Start with an empty log and wait to be added by the leader, instead of bootstrapping from `peers`. */
  readonly join?: boolean;
  readonly snapshotEvery?: number;
  readonly applier: RaftApplier;
  readonly logger: Logger;
  readonly metrics: RaftMetrics;
  readonly clock?: Clock;
  readonly random?: Random;
  /** The cluster name peer frames are authenticated under (not the recorded cluster id; see PeerIdentity). */
  readonly clusterId?: string;
  /** The disk under the data dir and lock details; tests put a fault-injecting file system here. */
  readonly storage?: DiskStorageOptions;
  /** Opens the durable storage (DiskStorage.open); the storage crash simulator wraps it to inject bugs. */
  readonly openStorage?: (dir: string, nodeId: NodeId, logger: Logger, options: DiskStorageOptions) => Promise<RaftStorage>;
  /** Makes the peer transport (a PeerTransport); the storage crash simulator passes an in-memory network. */
  readonly transport?: (options: PeerTransportOptions) => RaftTransport;
  /** Runs the Ready loop soon (setImmediate); the simulator queues it to run it deterministically. */
  readonly defer?: (run: () => void) => void;
}

/** The core's in-memory log loaded with what the data dir holds (the snapshot, the entries after it, the hard state). */
function memoryStorageFrom(initial: PersistedState): MemoryStorage {
  const memory = new MemoryStorage();
  if (initial.snapshot !== null) memory.applySnapshot(initial.snapshot);
  memory.append(initial.entries);
  memory.setHardState(initial.hardState);
  return memory;
}

export class RaftNode {
  readonly id: NodeId;
  readonly electionTimeoutMs: number;
  private readonly options: RaftNodeOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly metrics: RaftMetrics;
  private readonly snapshotEvery: number;
  private readonly listeners = new Set<(event: RaftNodeEvent) => void>();
  private rawNode!: RawNode;
  private memory!: MemoryStorage;
  private disk!: RaftStorage;
  private transport!: RaftTransport;
  private configuredPeers: Record<NodeId, string>;
  private dialled = '';
  private tickTimer: TimerHandle | null = null;
  private loop: Promise<void> | null = null;
  private scheduled = false;
  private stopped = false;
  private failure: RaftFailure | null = null;
  /** A peer refused this node as removed from the cluster, and no leader has talked to it since. */
  private removedByPeer = false;
  private appliedIndex = 0;
  private snapshotIndex = 0;
  private leader: NodeId | null = null;
  /** Elections the metrics were told of: the core counts them, the metric is a counter. */
  private electionsReported = 0;
  /** The term, commit and applied index the gauges last showed (-1: not set yet). */
  private readonly reported = { term: -1, commit: -1, applied: -1 };
  private boundPort = 0;
  private readonly peerIdentities = new Map<NodeId, PeerIdentity>();
  /**
   * Proposals made here and not applied yet, by request id: where their entry sits in this node's log, once
   * seen there, and the leader and term they were proposed under.
   */
  private readonly proposals = new Map<string, { index: number | null; readonly leader: NodeId | null; readonly term: number }>();

  private constructor(options: RaftNodeOptions) {
    this.options = options;
    this.id = options.nodeId;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.snapshotEvery = Math.max(1, options.snapshotEvery ?? RAFT_NODE_DEFAULTS.snapshotEvery);
    this.electionTimeoutMs = options.electionTimeoutMs;
    this.configuredPeers = { ...options.peers };
  }

  /**
   * Opens the data dir (lock, node id, WAL recovery), restores the state machine from the stored
   * snapshot, starts the peer listener and the ticker. Throws BalancerError STORAGE_LOCKED,
   * STORAGE_NODE_MISMATCH, STORAGE_CORRUPT, or CONFIG_IO when the listener cannot bind.
   */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    const node = new RaftNode(options);
    await node.open();
    return node;
  }

  private async open(): Promise<void> {
    const options = this.options;
    const openStorage = options.openStorage ?? ((dir, nodeId, logger, storageOptions) => DiskStorage.open(dir, nodeId, logger, storageOptions));
    this.disk = await openStorage(options.dataDir, options.nodeId, this.logger, options.storage ?? {});
    try {
      const initial = this.disk.initialState();
      this.memory = memoryStorageFrom(initial);
      if (initial.snapshot !== null) {
        options.applier.restoreSnapshot(initial.snapshot);
        this.appliedIndex = initial.snapshot.metadata.index;
        this.snapshotIndex = this.appliedIndex;
      }
      const fresh = initial.snapshot === null && initial.entries.length === 0 && initial.hardState.term === 0;
      const bootstrap = fresh && options.join !== true;
      const electionTick = Math.max(2, Math.round(options.electionTimeoutMs / options.heartbeatIntervalMs));
      this.rawNode = new RawNode(
        {
          id: options.nodeId,
          ...(bootstrap ? { voters: Object.keys(options.peers).sort() } : {}),
          electionTick,
          heartbeatTick: 1,
          random: options.random ?? systemRandom,
          applied: this.appliedIndex,
          logger: this.logger,
        },
        this.memory,
      );
      this.logger.info('raft node opened', {
        node: options.nodeId,
        dataDir: options.dataDir,
        start: bootstrap ? 'bootstrap' : fresh ? 'join' : 'restart',
        lastIndex: this.memory.lastIndex(),
        snapshotIndex: this.snapshotIndex,
        term: initial.hardState.term,
      });
      const makeTransport = options.transport ?? ((transportOptions: PeerTransportOptions) => new PeerTransport(transportOptions));
      this.transport = makeTransport({
        nodeId: options.nodeId,
        listen: options.listen,
        peers: this.peerAddresses(),
        secret: options.secret,
        ...(options.clusterId === undefined ? {} : { clusterId: options.clusterId }),
        logger: this.logger,
        metrics: this.metrics,
        clock: this.clock,
        onMessage: (message) => this.onPeerMessage(message),
        onUnreachable: (peer) => {
          // The identity we knew belonged to the process on the connection that just went; the next handshake tells us again.
          this.peerIdentities.delete(peer);
          this.input(() => this.rawNode.reportUnreachable(peer));
        },
        onSnapshotStatus: (peer, status) => this.input(() => this.rawNode.reportSnapshot(peer, status === 'finish')),
        identity: () => this.identity,
        checkPeer: (peer, identity) => this.checkPeer(peer, identity),
        onPeerIdentity: (peer, identity) => this.notePeerIdentity(peer, identity),
        onRemovedByPeer: (peer, detail) => this.onRemovedByPeer(peer, detail),
      });
      this.dialled = peersKey(this.peerAddresses());
      // Apply what the disk says is committed before listening: peers are judged by the identities recorded there.
      if (this.rawNode.hasReady()) await this.drain();
      const failed = this.failure as RaftFailure | null;
      if (failed !== null) {
        throw new BalancerError('STORAGE_CORRUPT', `raft node ${options.nodeId} cannot replay its log: ${failed.error.message}. ${failed.advice}`, { cause: failed.error });
      }
      try {
        this.boundPort = (await this.transport.start()).port;
      } catch (error) {
        throw new BalancerError('CONFIG_IO', `cannot listen for raft peers on ${options.listen}: ${errorMessage(error)}`, { cause: error });
      }
    } catch (error) {
      await this.transport?.stop().catch(() => undefined);
      await this.disk.close();
      throw error;
    }
    this.logger.info('raft listening', { node: options.nodeId, listen: options.listen, port: this.boundPort, incarnation: this.disk.identity.incarnation });
    this.scheduleTick();
    this.kick();
  }

  /** The port the peer listener bound (useful with port 0). */
  get port(): number {
    return this.boundPort;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get leaderId(): NodeId | null {
    return this.leader;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** This node's data dir identity as sent to peers. */
  get identity(): PeerIdentity {
    return { incarnation: this.disk.identity.incarnation, clusterId: this.options.applier.clusterId?.() ?? null };
  }

  /** The identity a peer presented in its last authenticated handshake, if any. */
  peerIdentity(id: NodeId): PeerIdentity | null {
    return this.peerIdentities.get(id) ?? null;
  }

  /** Set once the node failed and stopped taking part in Raft (see the module comment). */
  get failed(): RaftFailure | null {
    return this.failure;
  }

  on(listener: (event: RaftNodeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): RaftStatus {
    return this.rawNode.status();
  }

  basicStatus(): BasicStatus {
    return this.rawNode.basicStatus();
  }

  /** The voters and learners: status() without the leader's progress map. */
  confState(): ConfState {
    return this.rawNode.confState();
  }

  peerStats(): Record<NodeId, PeerStats> {
    return this.transport.stats();
  }

  /**
   * Replaces the addresses this node dials (its own `peers` map); members added through the log keep
   * the address their conf change carried unless this map names them.
   */
  setConfiguredPeers(peers: Readonly<Record<NodeId, string>>): void {
    this.configuredPeers = { ...peers };
    this.refreshPeers();
  }

  /**
   * Proposes a command; throws NO_LEADER / PROPOSAL_DROPPED at once when the core cannot take it. Later, a
   * 'dropped' event says when it can no longer commit (see the module comment).
   */
  propose(data: string, requestId: string): void {
    this.request(() => this.rawNode.propose(data, requestId));
    const { leader, term } = this.rawNode.basicStatus();
    this.proposals.delete(requestId);
    this.proposals.set(requestId, { index: null, leader, term });
    // Callers forget what they gave up on (forgetProposal); this only bounds what a careless one leaves.
    if (this.proposals.size > RAFT_NODE_DEFAULTS.maxTrackedProposals) this.proposals.delete(this.proposals.keys().next().value!);
  }

  /** Stops following a proposal whose caller no longer waits for it. */
  forgetProposal(requestId: string): void {
    this.proposals.delete(requestId);
  }

  /**
   * Proposes a membership change. At a follower the change goes to the leader as a forwarded proposal
   * (the core refuses to forward it itself so as not to lose the error); the caller learns the outcome
   * from the applied membership.
   */
  proposeConfChange(change: ConfChange): void {
    this.checkUsable();
    const status = this.rawNode.basicStatus();
    if (status.role === 'leader') {
      this.request(() => this.rawNode.proposeConfChange(change));
      return;
    }
    if (status.leader === null) throw new BalancerError('NO_LEADER', `node ${this.id} knows no leader`);
    const entry: Entry = { term: 0, index: 0, type: 'conf-change', data: encodeConfChange(change) };
    this.transport.send([{ type: 'MsgProp', from: this.id, to: status.leader, term: 0, entries: [entry] }]);
  }

  /** Asks for a linearizable read point; a 'read' event with this context follows (or nothing, if the leader is lost). */
  readIndex(context: string): void {
    this.request(() => this.rawNode.readIndex(context));
  }

  transferLeader(to: NodeId): void {
    this.request(() => this.rawNode.transferLeader(to));
  }

  /** Stops ticking, closes the transport, lets the Ready in progress finish and releases the data dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== null) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    await this.transport.stop();
    await this.loop?.catch(() => undefined);
    await this.disk.close();
    this.metrics.setIsLeader(false);
    this.logger.info('raft node stopped', { node: this.id });
  }

  // ---- inputs ----

  private checkUsable(): void {
    if (this.failure !== null) {
      throw new BalancerError('RAFT_FAILED', `raft node ${this.id} stopped taking part in the cluster after a failure (${this.failure.error.message}); send the request to another node`, { cause: this.failure.error });
    }
    if (this.stopped) throw new BalancerError('NO_LEADER', `raft node ${this.id} is stopped`);
  }

  /** A local request to the core: its refusals go back to the caller; anything else it throws stops the node. */
  private request(call: () => void): void {
    this.checkUsable();
    try {
      call();
    } catch (error) {
      if (!(error instanceof BalancerError && REFUSALS.has(error.code))) this.fail('invariant', error);
      throw error;
    }
    this.kick();
  }

  /** An input from time or the network: whatever the core throws here means its state is broken. */
  private input(step: () => void): void {
    if (this.stopped || this.failure !== null) return;
    try {
      step();
    } catch (error) {
      this.fail('invariant', error);
      return;
    }
    this.kick();
  }

  private onPeerMessage(message: Message): void {
    if (this.stopped || this.failure !== null) return;
    if (this.lostLog(message)) return;
    // A leader replicating to this node: it is a member (added again), whatever a peer said before.
    if (this.removedByPeer && (message.type === 'MsgApp' || message.type === 'MsgHeartbeat' || message.type === 'MsgSnap')) this.removedByPeer = false;
    this.input(() => this.rawNode.step(message));
  }

  /**
   * A leader's heartbeat never carries a commit index above what this node acknowledged holding, so one above our
   * last index (in a term not older than ours) means this node lost acknowledged entries: a wiped or restored data
   * dir, or a disk that lost writes. Raft cannot repair that by itself (the leader never probes below an acknowledged
   * match, as in etcd), and a node in that state must not vote: fail-stop, with the way out.
   */
  private lostLog(message: Message): boolean {
    if (message.type !== 'MsgHeartbeat') return false;
    // The core's view, not the persisted one: entries still on their way to disk are not lost.
    const { term, lastIndex } = this.rawNode.basicStatus();
    if (message.term < term) return false;
    const leaderCommit = message.commit ?? 0;
    if (leaderCommit <= lastIndex) return false;
    this.fail(
      'lost-log',
      new BalancerError('STORAGE_CORRUPT', `leader ${message.from} says entries up to ${leaderCommit} are committed here, but this node's log ends at ${lastIndex}`),
    );
    return true;
  }

  /**
   * Ticks the core every heartbeat interval. A node that may not campaign (a learner, a node not yet or no longer a
   * voter) only counts ticks that a leader's message resets, so it takes them in batches, as often as a leader
   * beats learners: in an idle fleet a learner's process wakes for them twice a second instead of ten times. A
   * learner promoted to voter is back on single ticks after its current batch.
   */
  private scheduleTick(): void {
    if (this.stopped) return;
    const ticks = this.rawNode.promotable() ? 1 : this.rawNode.learnerHeartbeatTicks();
    this.tickTimer = this.clock.setTimeout(() => {
      this.tickTimer = null;
      for (let tick = 0; tick < ticks; tick++) {
        // Counted even when a removed node's core no longer ticks: its clock runs, it just takes no part.
        this.metrics.ticked();
        if (!this.removedByPeer) this.input(() => this.rawNode.tick());
      }
      this.scheduleTick();
    }, this.options.heartbeatIntervalMs * ticks);
  }

  // ---- the Ready loop ----

  private kick(): void {
    if (this.scheduled || this.loop !== null || this.stopped || this.failure !== null) return;
    // Most inputs leave nothing to do (an acknowledgement that commits nothing, a heartbeat answer): no turn for them.
    if (!this.rawNode.hasReady()) return;
    this.scheduled = true;
    (this.options.defer ?? setImmediate)(() => {
      this.scheduled = false;
      if (this.loop !== null || this.stopped) return;
      this.loop = this.drain().finally(() => {
        this.loop = null;
        if (!this.stopped && this.failure === null && this.rawNode.hasReady()) this.kick();
      });
    });
  }

  private async drain(): Promise<void> {
    try {
      for (let batch = 0; batch < RAFT_NODE_DEFAULTS.readyBatchLimit && this.rawNode.hasReady(); batch++) {
        await this.handleReady(this.rawNode.ready());
        if (this.stopped) return;
        await this.maybeSnapshot();
      }
    } catch (error) {
      if (error instanceof FailStop) this.fail(error.kind, error.error);
      else this.fail('invariant', error);
    }
  }

  /** Runs one synchronous step of a Ready; a throw is tagged with what it means for the operator. */
  private step<T>(kind: RaftFailureKind, work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw new FailStop(kind, asError(error));
    }
  }

  private async persist(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      // Our own refusals to persist (a gap in the entries) mean the core handed us a broken log; the rest is the disk.
      throw new FailStop(isBalancerError(error, 'INTERNAL') && error.message.startsWith('refusing') ? 'invariant' : 'storage', asError(error));
    }
  }

  private async handleReady(ready: Ready): Promise<void> {
    if (ready.mustSync === false && ready.snapshot === undefined) return this.handleReadyWithoutSync(ready);
    const applyEarly = this.mayApplyBeforePersisting(ready);
    const sendEarly = this.maySendBeforePersisting(ready);
    // A leader's appends go out while its own copy is written (see maySendBeforePersisting).
    if (sendEarly) this.transport.send(ready.messages);
    // 1. persist: nothing below may depend on state that is not on disk (but see mayApplyBeforePersisting).
    const persisting = this.persist(() =>
      ready.snapshot !== undefined
        ? // One atomic step: a crash leaves either the old log or the snapshot with its hard state, never a mix.
          this.disk.saveSnapshot(ready.snapshot, ready.hardState, ready.entries)
        : this.disk.save(ready.hardState, ready.entries),
    );
    let applied = false;
    if (applyEarly) {
      // Awaited below; should applying fail first, the node stops and this outcome no longer matters.
      persisting.catch(() => undefined);
      applied = this.applyCommitted(ready);
      if (applied) this.emit({ type: 'applied', index: this.appliedIndex });
    }
    await persisting;
    this.step('invariant', () => {
      if (ready.snapshot !== undefined) this.memory.applySnapshot(ready.snapshot);
      if (ready.hardState !== undefined) this.memory.setHardState(ready.hardState);
      this.memory.append(ready.entries);
    });
    if (this.proposals.size > 0) this.followProposals(ready);
    if (this.stopped) return;

    // 2. send.
    if (!sendEarly && ready.messages.length > 0) this.transport.send(ready.messages);

    // 3. apply.
    if (!applyEarly) applied = this.applyCommitted(ready);

    // 4. advance.
    this.finishReady(ready, applied && !applyEarly);
  }

  /**
   * A Ready the disk need not hold before anything it says goes out (no entries, snapshot, term or vote: at most a new
   * commit index) is acted on at once: its messages leave and its committed entries apply, then the commit index is
   * written without an fsync (DiskStorage SaveOptions). What its messages vouch for (entries acknowledged, votes) reached
   * the disk with earlier Readies, which were handled to the end before this one; a commit index need not be durable
   * (after a crash the node learns it again from a leader). On a leader this is the Ready that tells followers and
   * learners of a commit: they hear of it, and the leader applies it, one fsync sooner.
   */
  private async handleReadyWithoutSync(ready: Ready): Promise<void> {
    const hardState = ready.hardState;
    this.step('invariant', () => {
      if (hardState !== undefined) this.memory.setHardState(hardState);
    });
    if (this.proposals.size > 0) this.followProposals(ready);
    if (ready.messages.length > 0) this.transport.send(ready.messages);
    const applied = this.applyCommitted(ready);
    if (applied) this.emit({ type: 'applied', index: this.appliedIndex });
    if (hardState !== undefined) await this.persist(() => this.disk.save(hardState, [], { sync: false }));
    if (this.stopped) return;
    this.finishReady(ready, false);
  }

  /**
   * Committed entries may apply while this Ready's entries are still being written (as etcd applies them), when they
   * were committed by a quorum that does not count this node's unwritten copy: on a follower or learner a commit comes
   * from the leader, which counts only acknowledgements, and this node acknowledges an entry only once it is on disk.
   * A leader counts its own log, so it applies only after its Ready is persisted; so does a snapshot or a membership
   * change (they change the core's view of the cluster). A learner, which gets entries only once committed, applies a
   * change while the fsync of its copy runs instead of after it. Should the machine crash before that fsync, the node
   * restarts from its log without the entries and is sent them again (its config file, written back from the applied
   * config, may show the newer version until then: the replay writes the older one back and the catch-up the newer).
   */
  private mayApplyBeforePersisting(ready: Ready): boolean {
    if (ready.snapshot !== undefined || ready.committedEntries.length === 0) return false;
    if (ready.committedEntries.some((entry) => entry.type === 'conf-change')) return false;
    return this.rawNode.basicStatus().role !== 'leader';
  }

  /**
   * A leader may send a Ready's appends before its own copy of the Ready's entries is on disk, so the followers write
   * theirs while it writes its own (Raft thesis 10.2.1, as etcd does): one fsync less on the way to a commit. Safe
   * because the leader's copy counts towards a commit only in memory until then: the core may count it when a
   * follower's acknowledgement arrives during the write, but nothing acts on that commit before this Ready is
   * persisted (Readies are carried out one at a time; the commit reaches a message, the state machine or a client only
   * in a later one). Should the node crash first, only followers hold the entries, as when a leader dies before its
   * appends reach anyone: they commit only if a quorum of followers wrote them. Not when the Ready votes or changes the
   * term (a vote must be durable before anything it vouches for is sent), holds a snapshot, or sends anything but
   * appends and heartbeats carrying a commit index below its first new entry: a lone voter commits its entries the
   * moment it appends them, and its learners would otherwise hear of a commit whose only copy is not yet written.
   */
  private maySendBeforePersisting(ready: Ready): boolean {
    const first = ready.entries[0];
    if (first === undefined || ready.snapshot !== undefined || ready.messages.length === 0) return false;
    if (this.rawNode.basicStatus().role !== 'leader') return false;
    const durable = this.memory.hardState();
    const hardState = ready.hardState;
    if (hardState !== undefined && (hardState.term !== durable.term || hardState.vote !== durable.vote)) return false;
    return ready.messages.every((m) => (m.type === 'MsgApp' || m.type === 'MsgHeartbeat') && (m.commit ?? 0) < first.index);
  }

  /** Applies the Ready's snapshot and committed entries in log order; true when anything was applied. */
  private applyCommitted(ready: Ready): boolean {
    const applier = this.options.applier;
    if (ready.snapshot !== undefined) {
      const snapshot = ready.snapshot;
      this.step('state-machine', () => applier.restoreSnapshot(snapshot));
      this.appliedIndex = snapshot.metadata.index;
      this.snapshotIndex = snapshot.metadata.index;
      this.logger.info('raft snapshot restored', { node: this.id, index: snapshot.metadata.index });
      this.refreshPeers();
    }
    let membershipChanged = false;
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.appliedIndex) continue;
      if (entry.type === 'conf-change') {
        const change = this.step('invariant', () => {
          const decoded = decodeConfChange(entry.data);
          this.rawNode.applyConfChange(decoded);
          return decoded;
        });
        this.step('state-machine', () => applier.applyConfChange(entry, change));
        membershipChanged = true;
        this.logger.info('raft membership changed', { node: this.id, change: change.type, member: change.nodeId, index: entry.index });
      } else {
        this.step('state-machine', () => applier.applyEntry(entry));
      }
      this.appliedIndex = entry.index;
    }
    if (membershipChanged) this.refreshPeers();
    return ready.committedEntries.length > 0 || ready.snapshot !== undefined;
  }

  /** Advances the core past a handled Ready and tells metrics and listeners; `announceApplied` emits 'applied'. */
  private finishReady(ready: Ready, announceApplied: boolean): void {
    this.step('invariant', () => this.rawNode.advance());

    if (ready.softState !== undefined) this.noteSoftState(ready.softState.leader, ready.softState.role);
    if (this.proposals.size > 0) this.dropOrphanedProposals();
    const elections = this.rawNode.electionsStarted();
    if (elections > this.electionsReported) this.metrics.electionsStarted(elections - this.electionsReported);
    this.electionsReported = elections;
    const status = this.rawNode.basicStatus();
    // Each gauge set costs prom-client a label hash; a change passes through several Readies, each moving one or none.
    if (status.term !== this.reported.term) this.metrics.setTerm((this.reported.term = status.term));
    if (status.commit !== this.reported.commit) this.metrics.setCommitIndex((this.reported.commit = status.commit));
    if (this.appliedIndex !== this.reported.applied) this.metrics.setAppliedIndex((this.reported.applied = this.appliedIndex));
    for (const read of ready.readStates) this.emit({ type: 'read', context: read.requestCtx, index: read.index });
    if (announceApplied) this.emit({ type: 'applied', index: this.appliedIndex });
  }

  /** Where this Ready puts or takes away the entries of pending proposals (see the module comment). */
  private followProposals(ready: Ready): void {
    const first = ready.entries[0];
    const last = ready.entries.at(-1);
    for (const [requestId, pending] of this.proposals) {
      const at = pending.index;
      if (at === null || first === undefined || last === undefined || at < first.index) continue;
      // Entries written at `first` replace everything from there on, ours included.
      const replacement = at <= last.index ? ready.entries[at - first.index] : undefined;
      if (replacement?.requestId === requestId) continue;
      this.dropProposal(requestId, `its entry at index ${at} was ${replacement === undefined ? 'cut off' : 'overwritten'} by the log of the leader of term ${last.term}`);
    }
    for (const entry of ready.entries) {
      const pending = entry.requestId === undefined ? undefined : this.proposals.get(entry.requestId);
      if (pending !== undefined) pending.index = entry.index;
    }
    const snapshot = ready.snapshot?.metadata.index;
    if (snapshot !== undefined) {
      for (const [requestId, pending] of this.proposals) {
        if (pending.index === null || pending.index <= snapshot) {
          this.dropProposal(requestId, `a snapshot up to index ${snapshot} replaced this node's log; it may be in it`);
        }
      }
    }
    for (const entry of ready.committedEntries) if (entry.requestId !== undefined) this.proposals.delete(entry.requestId);
  }

  /** Proposals not yet seen in this node's log when the leader or term changed were lost on the way. */
  private dropOrphanedProposals(): void {
    const { leader, term } = this.rawNode.basicStatus();
    for (const [requestId, pending] of this.proposals) {
      if (pending.index === null && (pending.leader !== leader || pending.term !== term)) {
        this.dropProposal(requestId, `the leader changed (now ${leader ?? 'none'}, term ${term}) before it reached this node's log`);
      }
    }
  }

  private dropProposal(requestId: string, reason: string): void {
    this.proposals.delete(requestId);
    this.logger.debug('raft proposal dropped', { node: this.id, requestId, reason });
    this.emit({ type: 'dropped', requestId, reason });
  }

  private noteSoftState(leader: NodeId | null, role: RaftRole): void {
    const leaderChanged = leader !== this.leader;
    this.leader = leader;
    this.metrics.setIsLeader(role === 'leader');
    const term = this.rawNode.basicStatus().term;
    if (leaderChanged) {
      // A new leader dials every member at once; a former one goes back to dialling the voters only.
      this.refreshPeers();
      if (leader !== null) {
        this.metrics.leaderChanged();
        this.logger.info('raft leader elected', { node: this.id, leader, term, role });
      } else {
        this.logger.info('raft leader lost', { node: this.id, term, role });
      }
    }
    this.emit({ type: 'leader', leader, role, term });
  }

  private async maybeSnapshot(): Promise<void> {
    if (this.appliedIndex - this.snapshotIndex < this.snapshotEvery) return;
    const index = this.appliedIndex;
    const data = this.step('state-machine', () => this.options.applier.snapshotData());
    const snapshot = this.step('invariant', () => this.memory.createSnapshot(index, this.rawNode.status().confState, data));
    await this.persist(() => this.disk.saveSnapshot(snapshot));
    this.step('invariant', () => this.memory.compact(index));
    this.snapshotIndex = index;
    this.logger.info('raft snapshot taken', { node: this.id, index });
  }

  /** Fail-stop (see the module comment); the first failure wins. */
  private fail(kind: RaftFailureKind, cause: unknown): void {
    if (this.failure !== null || this.stopped) return;
    const failure: RaftFailure = { kind, error: asError(cause), advice: adviceFor(kind, this.id) };
    this.failure = failure;
    if (this.tickTimer !== null) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.leader = null;
    this.metrics.setIsLeader(false);
    this.metrics.setFailed(true);
    this.logger.error(
      `raft node stopped: it no longer votes, acknowledges or proposes anything; the data plane keeps serving the last applied config. ${failure.advice}`,
      { node: this.id, failure: kind, error: failure.error, appliedIndex: this.appliedIndex },
    );
    void this.transport?.stop();
    this.emit({ type: 'failed', ...failure });
  }

  private emit(event: RaftNodeEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.logger.error('raft event listener threw', { event: event.type, error });
      }
    }
  }

  // ---- peers ----

  /**
   * A member whose data dir incarnation is not the one the cluster recorded lost or replaced its state: letting
   * it vote could elect a leader missing committed entries, so it stays out until removed and added again.
   */
  private checkPeer(peer: NodeId, identity: PeerIdentity): PeerRefusal | null {
    const applier = this.options.applier;
    const ours = applier.clusterId?.() ?? null;
    if (identity.clusterId !== null && ours !== null && identity.clusterId !== ours) {
      return {
        reason: 'wrong_cluster',
        detail: `node "${peer}" belongs to cluster ${identity.clusterId}, not to this node's cluster ${ours}; check the peers addresses on both sides`,
      };
    }
    const removed = applier.removedMember?.(peer) ?? null;
    // Only the data dir the cluster removed: a node added again under the same id comes with a new incarnation.
    if (removed !== null && removed.incarnation !== null && identity.incarnation === removed.incarnation && !this.isMember(peer)) {
      return {
        reason: 'removed',
        detail:
          `node "${peer}" was removed from the cluster at log index ${removed.index}: it serves its last config but takes no part in the cluster; ` +
          `to bring it back, wipe its data dir, start it with cluster.join: true and add it again (balancer cluster add ${peer} ADDRESS)`,
      };
    }
    const recorded = applier.memberIncarnation?.(peer) ?? null;
    if (recorded !== null && identity.incarnation !== recorded) {
      return {
        reason: 'unknown_incarnation',
        detail:
          `node "${peer}" presents data dir incarnation ${identity.incarnation ?? '(none)'}, but the cluster knows "${peer}" as incarnation ${recorded}: ` +
          `its data dir was wiped, replaced or copied from elsewhere, so it may lack entries it acknowledged and must not vote. ` +
          `It stays out until an operator removes it (balancer cluster remove ${peer}), starts it with an empty data dir and cluster.join: true, ` +
          `and adds it again (balancer cluster add ${peer} ADDRESS)`,
      };
    }
    return null;
  }

  private isMember(id: NodeId): boolean {
    if (this.rawNode === undefined) return false;
    const { voters, learners } = this.rawNode.status().confState;
    return voters.includes(id) || learners.includes(id);
  }

  /**
   * A peer says the cluster removed this node. Its own log cannot say so (it was down when the removal
   * committed), so it stops campaigning (its election ticks stop: nobody would answer them) until a leader
   * talks to it again, which only happens if it was added back.
   */
  private onRemovedByPeer(peer: NodeId, detail: string): void {
    if (this.stopped || this.failure !== null) return;
    const first = !this.removedByPeer;
    this.removedByPeer = true;
    if (first) this.emit({ type: 'removed-by-peer', peer, detail });
  }

  private notePeerIdentity(peer: NodeId, identity: PeerIdentity): void {
    const known = this.peerIdentities.get(peer);
    if (known?.incarnation === identity.incarnation && known.clusterId === identity.clusterId) return;
    this.peerIdentities.set(peer, identity);
    this.emit({ type: 'peer', peer, identity });
  }

  private peerAddresses(): Record<NodeId, string> {
    const addresses: Record<NodeId, string> = {};
    const members = this.rawNode === undefined ? null : this.rawNode.status().confState;
    for (const id of members === null ? [] : [...members.voters, ...members.learners]) {
      const address = this.options.applier.memberAddress(id);
      if (address !== null && id !== this.id) addresses[id] = address;
    }
    for (const [id, address] of Object.entries(this.configuredPeers)) if (id !== this.id) addresses[id] = address;
    return addresses;
  }

  /** A learner sends only to the leader, a voter: it dials every member but the other learners. Others dial all. */
  /**
   * The peers to dial at once: the leader dials every member (a learner just added hears from it without waiting for a
   * first heartbeat to open the link); another voter dials the voters (any of them may campaign or lead); a learner
   * dials no one. Anyone else is dialled when a message is first sent to it (see PeerTransport.updatePeers): each
   * learner answers its leader, and nothing else ever crosses a learner's pairs.
   */
  private peersToDial(addresses: Readonly<Record<NodeId, string>>): Set<NodeId> | undefined {
    const members = this.rawNode === undefined ? null : this.rawNode.status().confState;
    if (members === null || this.leader === this.id) return undefined;
    if (members.learners.includes(this.id)) return new Set();
    return new Set(Object.keys(addresses).filter((id) => !members.learners.includes(id)));
  }

  private refreshPeers(): void {
    if (this.transport === undefined) return;
    const addresses = this.peerAddresses();
    const dial = this.peersToDial(addresses);
    const key = `${peersKey(addresses)} ${dial === undefined ? '*' : [...dial].sort().join(',')}`;
    if (key === this.dialled) return;
    this.dialled = key;
    this.transport.updatePeers(addresses, dial);
    this.logger.info('raft peers updated', { node: this.id, peers: addresses, ...(dial === undefined ? {} : { dialled: [...dial].sort() }) });
  }
}

function peersKey(addresses: Readonly<Record<NodeId, string>>): string {
  return JSON.stringify(Object.entries(addresses).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
