// The Raft driver: runs the pure core on real time, durable storage and the peer transport, and feeds committed entries to a state machine.

/*
 * One RawNode, one DiskStorage (loaded into the core's MemoryStorage at start) and one PeerTransport.
 * A timer ticks the core every heartbeat interval. Every input (tick, peer message, proposal) only
 * mutates the core and schedules the Ready loop; the loop takes one Ready at a time and carries it out
 * strictly in order: persist (snapshot, entries, hard state: fsynced before anything else happens) ->
 * send messages -> apply the snapshot and committed entries -> advance(). It never runs twice at once,
 * so the state machine sees entries in log order from a single caller.
 *
 * Every `snapshotEvery` applied entries the state machine is serialised into a snapshot, saved, and the
 * log before it compacted, in memory and on disk. A follower too far behind then gets that snapshot.
 */

import type { Clock, Random, TimerHandle } from '../../clock.js';
import { systemClock, systemRandom } from '../../clock.js';
import { BalancerError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { RaftMetrics } from '../../metrics/types.js';
import { decodeConfChange, encodeConfChange, RawNode, type BasicStatus, type RaftStatus } from '../core/index.js';
import { MemoryStorage } from '../core/storage.js';
import type { ConfChange, Entry, Message, NodeId, RaftRole, Ready, Snapshot } from '../core/types.js';
import { DiskStorage, type DiskStorageOptions, type PersistedState } from './storage.js';
import { PeerTransport, type PeerStats } from './transport.js';

export const RAFT_NODE_DEFAULTS = Object.freeze({
  snapshotEvery: 1000,
  /** Ready batches handled back to back before the loop yields to I/O callbacks. */
  readyBatchLimit: 256,
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
}

export type RaftNodeEvent =
  | { readonly type: 'leader'; readonly leader: NodeId | null; readonly role: RaftRole; readonly term: number }
  | { readonly type: 'read'; readonly context: string; readonly index: number }
  | { readonly type: 'applied'; readonly index: number }
  | { readonly type: 'failed'; readonly error: Error };

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
  readonly clusterId?: string;
  /** The disk under the data dir and lock details; tests put a fault-injecting file system here. */
  readonly storage?: DiskStorageOptions;
}

/** The core's in-memory log loaded with what the data dir holds (the snapshot, the entries after it, the hard state). */
export function memoryStorageFrom(initial: PersistedState): MemoryStorage {
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
  private disk!: DiskStorage;
  private transport!: PeerTransport;
  private configuredPeers: Record<NodeId, string>;
  private dialled = '';
  private tickTimer: TimerHandle | null = null;
  private loop: Promise<void> | null = null;
  private scheduled = false;
  private stopped = false;
  private failure: Error | null = null;
  private appliedIndex = 0;
  private snapshotIndex = 0;
  private leader: NodeId | null = null;
  private role: RaftRole = 'follower';
  private boundPort = 0;

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
    this.disk = await DiskStorage.open(options.dataDir, options.nodeId, this.logger, options.storage);
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
      this.transport = new PeerTransport({
        nodeId: options.nodeId,
        listen: options.listen,
        peers: this.peerAddresses(),
        secret: options.secret,
        ...(options.clusterId === undefined ? {} : { clusterId: options.clusterId }),
        logger: this.logger,
        metrics: this.metrics,
        clock: this.clock,
        onMessage: (message) => this.onPeerMessage(message),
        onUnreachable: (peer) => this.input(() => this.rawNode.reportUnreachable(peer)),
        onSnapshotStatus: (peer, status) => this.input(() => this.rawNode.reportSnapshot(peer, status === 'finish')),
      });
      this.dialled = peersKey(this.peerAddresses());
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
    this.logger.info('raft listening', { node: options.nodeId, listen: options.listen, port: this.boundPort });
    this.scheduleTick();
    // The first Ready replays what the disk says is committed, without waiting for a leader.
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

  /** Proposes a command; throws NO_LEADER / PROPOSAL_DROPPED at once when the core cannot take it. */
  propose(data: string, requestId: string): void {
    this.checkUsable();
    this.rawNode.propose(data, requestId);
    this.kick();
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
      this.rawNode.proposeConfChange(change);
      this.kick();
      return;
    }
    if (status.leader === null) throw new BalancerError('NO_LEADER', `node ${this.id} knows no leader`);
    const entry: Entry = { term: 0, index: 0, type: 'conf-change', data: encodeConfChange(change) };
    this.transport.send([{ type: 'MsgProp', from: this.id, to: status.leader, term: 0, entries: [entry] }]);
  }

  /** Asks for a linearizable read point; a 'read' event with this context follows (or nothing, if the leader is lost). */
  readIndex(context: string): void {
    this.checkUsable();
    this.rawNode.readIndex(context);
    this.kick();
  }

  transferLeader(to: NodeId): void {
    this.checkUsable();
    this.rawNode.transferLeader(to);
    this.kick();
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
    if (this.failure !== null) throw new BalancerError('INTERNAL', `raft node failed: ${this.failure.message}`, { cause: this.failure });
    if (this.stopped) throw new BalancerError('NO_LEADER', `raft node ${this.id} is stopped`);
  }

  private input(step: () => void): void {
    if (this.stopped || this.failure !== null) return;
    step();
    this.kick();
  }

  private onPeerMessage(message: Message): void {
    this.detectLostLog(message);
    this.input(() => this.rawNode.step(message));
  }

  private lostLogReported = false;

  /**
   * A leader's heartbeat never carries a commit index above what this node acknowledged holding, so one above our
   * last index means this node lost acknowledged entries (a wiped or restored data dir, or a torn tail that was
   * acknowledged). Raft cannot repair that by itself (the leader never probes below an acknowledged match, as in
   * etcd); say so loudly, with the way out, instead of serving reads that silently time out.
   */
  private detectLostLog(message: Message): void {
    if (message.type !== 'MsgHeartbeat' || this.lostLogReported) return;
    const lastIndex = this.memory.lastIndex();
    if ((message.commit ?? 0) <= lastIndex) return;
    this.lostLogReported = true;
    this.logger.error(
      'raft log lost entries this node had acknowledged: it cannot catch up by itself. Remove it (balancer cluster remove ID), wipe its data dir, start it with cluster.join: true and add it again',
      { node: this.id, leader: message.from, leaderCommit: message.commit, lastIndex },
    );
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = this.clock.setTimeout(() => {
      this.tickTimer = null;
      this.input(() => this.rawNode.tick());
      this.scheduleTick();
    }, this.options.heartbeatIntervalMs);
  }

  // ---- the Ready loop ----

  private kick(): void {
    if (this.scheduled || this.loop !== null || this.stopped || this.failure !== null) return;
    this.scheduled = true;
    setImmediate(() => {
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
      this.fail(error);
    }
  }

  private async handleReady(ready: Ready): Promise<void> {
    // 1. persist: nothing below may depend on state that is not on disk.
    if (ready.snapshot !== undefined) {
      // One atomic step: a crash leaves either the old log or the snapshot with its hard state, never a mix.
      await this.disk.saveSnapshot(ready.snapshot, ready.hardState, ready.entries);
      this.memory.applySnapshot(ready.snapshot);
    } else {
      await this.disk.save(ready.hardState, ready.entries);
    }
    if (ready.hardState !== undefined) this.memory.setHardState(ready.hardState);
    this.memory.append(ready.entries);
    if (this.stopped) return;

    // 2. send.
    if (ready.messages.length > 0) this.transport.send(ready.messages);

    // 3. apply.
    if (ready.snapshot !== undefined) {
      this.options.applier.restoreSnapshot(ready.snapshot);
      this.appliedIndex = ready.snapshot.metadata.index;
      this.snapshotIndex = ready.snapshot.metadata.index;
      this.logger.info('raft snapshot restored', { node: this.id, index: ready.snapshot.metadata.index });
      this.refreshPeers();
    }
    let membershipChanged = false;
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.appliedIndex) continue;
      if (entry.type === 'conf-change') {
        const change = decodeConfChange(entry.data);
        this.rawNode.applyConfChange(change);
        this.options.applier.applyConfChange(entry, change);
        membershipChanged = true;
        this.logger.info('raft membership changed', { node: this.id, change: change.type, member: change.nodeId, index: entry.index });
      } else {
        this.options.applier.applyEntry(entry);
      }
      this.appliedIndex = entry.index;
    }
    if (membershipChanged) this.refreshPeers();

    // 4. advance.
    this.rawNode.advance();

    if (ready.softState !== undefined) this.noteSoftState(ready.softState.leader, ready.softState.role);
    const status = this.rawNode.basicStatus();
    this.metrics.setTerm(status.term);
    this.metrics.setCommitIndex(status.commit);
    this.metrics.setAppliedIndex(this.appliedIndex);
    for (const read of ready.readStates) this.emit({ type: 'read', context: read.requestCtx, index: read.index });
    if (ready.committedEntries.length > 0 || ready.snapshot !== undefined) this.emit({ type: 'applied', index: this.appliedIndex });
  }

  private noteSoftState(leader: NodeId | null, role: RaftRole): void {
    const leaderChanged = leader !== this.leader;
    this.leader = leader;
    this.role = role;
    this.metrics.setIsLeader(role === 'leader');
    const term = this.rawNode.basicStatus().term;
    if (leaderChanged) {
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
    const snapshot = this.memory.createSnapshot(index, this.rawNode.status().confState, this.options.applier.snapshotData());
    await this.disk.saveSnapshot(snapshot);
    this.memory.compact(index);
    this.snapshotIndex = index;
    this.logger.info('raft snapshot taken', { node: this.id, index });
  }

  private fail(error: unknown): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    this.failure = failure;
    if (this.tickTimer !== null) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.metrics.setIsLeader(false);
    // A node that cannot persist must not vote or acknowledge anything again: it goes silent.
    this.logger.error('raft node failed; it no longer takes part in the cluster', { node: this.id, error: failure });
    void this.transport.stop();
    this.emit({ type: 'failed', error: failure });
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

  private refreshPeers(): void {
    if (this.transport === undefined) return;
    const addresses = this.peerAddresses();
    const key = peersKey(addresses);
    if (key === this.dialled) return;
    this.dialled = key;
    this.transport.updatePeers(addresses);
    this.logger.info('raft peers updated', { node: this.id, peers: addresses });
  }
}

function peersKey(addresses: Readonly<Record<NodeId, string>>): string {
  return JSON.stringify(Object.entries(addresses).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
