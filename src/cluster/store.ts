// The Raft-backed control plane: admin writes, file edits and membership go through the log; every applied config reaches the data plane and the file.

/*
 * Writes propose an envelope with a fresh request id and wait until this node applies the entry with
 * that id; that works on any node, because a follower forwards the proposal to the leader and every
 * node applies every entry. A proposal lost on the way (leader change, partition) is proposed again
 * with the same id, so it takes effect once even if both copies commit (see state-machine.ts). No call
 * waits longer than `writeTimeoutMs`: then it fails with NO_LEADER (no leader known) or
 * PROPOSAL_TIMEOUT, both 503 in the admin API. A node that knows there is no leader waits at most two
 * election timeouts for one before saying so.
 *
 * Reads of the config are linearizable: ReadIndex through the leader, then wait until this node has
 * applied up to that index.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Clock, Random, TimerHandle } from '../clock.js';
import { systemClock } from '../clock.js';
import { resolveReplicatedPaths } from '../config/load.js';
import { toPlainReplicated, type PlainReplicated } from '../config/plain.js';
import type { ClusterConfig, ReplicatedConfig } from '../config/schema.js';
import { validateReplicated, validateReplicatedText } from '../config/validate.js';
import { memberProblems } from '../config/file-spec.js';
import { poolStatusViews } from '../control/status.js';
import { Readiness } from '../control/readiness.js';
import type {
  BackendInput,
  BackendPatch,
  ClusterMember,
  ClusterRole,
  ClusterStatus,
  ControlPlane,
  Membership,
  NodeStatus,
  WriteOptions,
  WriteResult,
  ChangeOrigin,
} from '../control/types.js';
import type { ChangeMeta, ChangeSource, HistoryEntry } from '../control/history.js';
import { BalancerError, errorMessage, isBalancerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import type { DataPlane } from '../proxy/data-plane.js';
import { RaftNode, type RaftApplier, type RaftNodeEvent } from '../raft/runtime/node.js';
import type { ConfChange, Entry, NodeId, Snapshot } from '../raft/core/types.js';
import { discoveredHere, guard, type ConfigCommand } from '../control/config-reducer.js';
import { ConfigFileSync } from './config-file.js';
import { ConfigStateMachine, type ClusterCommand } from './state-machine.js';
import { isRetryable, Proposals } from './proposals.js';
import { FileEdits, type FileEditResult } from './file-edits.js';

const CLUSTER_STORE_DEFAULTS = Object.freeze({
  /** Longest any admin call waits for the cluster before answering 503. */
  writeTimeoutMs: 5_000,
  /** A YAML edit that found no quorum is proposed again after this, doubling up to the max. */
  editRetryInitialMs: 500,
  editRetryMaxMs: 10_000,
  /** Bounds the retries of one file edit (about an hour at the max backoff); a newer edit supersedes it anyway. */
  editMaxAttempts: 400,
  /**
   * Applied configs are written into the node's file at most once per this interval: a lone change is written at
   * once, a burst's later changes together (the newest) this long after the write before them. Each write-back costs
   * a node a few ms of CPU with its fsyncs, about half of what applying a change costs it.
   */
  fileWriteIntervalMs: 500,
});

export interface ClusterStoreOptions {
  /** The node's cluster section, with the secret already read from secretFile. */
  readonly cluster: ClusterConfig;
  readonly file: string;
  readonly baseDir: string;
  readonly dataPlane: DataPlane;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly noteOwnWrite: (text: string) => void;
  readonly clock?: Clock;
  readonly random?: Random;
  readonly writeTimeoutMs?: number;
  readonly editRetryInitialMs?: number;
  /** How often at most applied configs are written into the file (tests stretch it to see the coalescing). */
  readonly fileWriteIntervalMs?: number;
  /** Overrides cluster.listen (tests bind port 0 and hand the real ports out afterwards). */
  readonly listen?: string;
}

export class ClusterStore implements ControlPlane {
  readonly nodeId: NodeId;
  private readonly options: ClusterStoreOptions;
  private readonly clock: Clock;
  private readonly writeTimeoutMs: number;
  private readonly machine: ConfigStateMachine;
  /** No leader is no reason here: a node keeps serving its last applied config through a lost quorum. */
  readonly readiness = new Readiness();
  private node!: RaftNode;
  private fileSync!: ConfigFileSync;
  private readonly proposals: Proposals;
  private readonly fileEdits: FileEdits;
  private readonly reads = new Map<string, number | null>();
  private servedVersion = 0;
  /** The applied config the file has not been handed yet, and the turn that hands it over (see serveAppliedConfig). */
  private pendingWriteBack: { readonly version: number; readonly config: ReplicatedConfig } | null = null;
  private writeBackTimer: { readonly kind: 'turn'; readonly handle: NodeJS.Immediate } | { readonly kind: 'interval'; readonly handle: TimerHandle } | null = null;
  /** When (clock ms) the last write-back was handed to the file; the next waits out fileWriteIntervalMs from it. */
  private lastWriteBackAt = Number.NEGATIVE_INFINITY;
  private readonly fileWriteIntervalMs: number;
  private recordingIdentities = false;
  private stopped = false;
  /** The log index of the applied entry that removed this node (null: not removed, or re-added since). */
  private removedAt: number | null = null;
  /**
   * A peer's word that the cluster removed this node while it was down (its own log still lists it as a member,
   * so it cannot know otherwise); cleared when a leader talks to it, which only happens if it was added again.
   */
  private removedByPeer: { readonly peer: string; readonly detail: string } | null = null;

  private constructor(options: ClusterStoreOptions) {
    this.options = options;
    this.nodeId = options.cluster.nodeId;
    this.clock = options.clock ?? systemClock;
    this.writeTimeoutMs = options.writeTimeoutMs ?? CLUSTER_STORE_DEFAULTS.writeTimeoutMs;
    this.fileWriteIntervalMs = options.fileWriteIntervalMs ?? CLUSTER_STORE_DEFAULTS.fileWriteIntervalMs;
    this.machine = new ConfigStateMachine(undefined, options.cluster.historySize);
    this.proposals = new Proposals({
      nodeId: this.nodeId,
      clock: this.clock,
      writeTimeoutMs: this.writeTimeoutMs,
      metrics: options.metrics.raft,
      node: () => this.node,
      stopped: () => this.stopped,
    });
    this.fileEdits = new FileEdits({
      nodeId: this.nodeId,
      file: options.file,
      logger: options.logger,
      metrics: options.metrics,
      machine: this.machine,
      proposals: this.proposals,
      fileSync: () => this.fileSync,
      stopped: () => this.stopped,
      editRetryInitialMs: options.editRetryInitialMs ?? CLUSTER_STORE_DEFAULTS.editRetryInitialMs,
      editRetryMaxMs: CLUSTER_STORE_DEFAULTS.editRetryMaxMs,
      editMaxAttempts: CLUSTER_STORE_DEFAULTS.editMaxAttempts,
    });
    this.readiness.add('membership', () => this.standingProblem());
    this.readiness.add('config', () =>
      this.machine.version > 0 && options.dataPlane.ready ? null : 'no config applied yet: waiting for the cluster to commit one',
    );
    this.readiness.add('raft', () => {
      const failed = this.node?.failed ?? null;
      return failed === null ? null : `raft stopped on this node (${failed.kind}: ${failed.error.message}); ${failed.advice}`;
    });
    // Before the first config the proxy answers 503 with where the node stands, never 404 NO_ROUTE.
    options.dataPlane.describeWaiting(() => this.standingProblem() ?? 'no config applied yet: waiting for the cluster to commit one');
  }

  /** Member, removed, or waiting to be added: from the applied membership, and what this node applied about itself. */
  private membership(): Membership {
    if (this.node === undefined) return this.options.cluster.join === true ? 'waiting-to-join' : 'member';
    if (this.removedByPeer !== null) return 'removed';
    const { voters, learners } = this.node.status().confState;
    if (voters.includes(this.nodeId) || learners.includes(this.nodeId)) return 'member';
    // A node that applied its own removal, or one that bootstrapped (so it was a member once), was removed.
    return this.removedAt !== null || this.options.cluster.join !== true ? 'removed' : 'waiting-to-join';
  }

  /** Why this node's place in the cluster keeps it out of rotation, or null when it is a member. */
  private standingProblem(): string | null {
    switch (this.membership()) {
      case 'removed':
        if (this.removedByPeer !== null) return `removed from the cluster while this node was down (peer ${this.removedByPeer.peer} says: ${this.removedByPeer.detail})`;
        return `removed from the cluster${this.removedAt === null ? '' : ` (at log index ${this.removedAt})`}: this node serves its last config but takes no part in the cluster; to bring it back, wipe its data dir, start it with cluster.join: true and add it again`;
      case 'waiting-to-join':
        return `waiting to be added to the cluster (started with cluster.join: true): run \`balancer cluster add ${this.nodeId} ADDRESS\` against a member`;
      default:
        return null;
    }
  }

  /** Opens the data dir, replays the log into the state machine, joins the peers. */
  static async start(options: ClusterStoreOptions): Promise<ClusterStore> {
    const store = new ClusterStore(options);
    const cluster = options.cluster;
    if (cluster.secret === null) throw new BalancerError('CONFIG_INVALID', 'cluster.secret (or a readable secretFile) is required');
    store.fileSync = await ConfigFileSync.open({
      file: options.file,
      dataDir: cluster.dataDir,
      logger: options.logger,
      noteOwnWrite: options.noteOwnWrite,
    });
    const fileText = await readFile(options.file, 'utf8').catch(() => null);
    const offlineEdit = fileText !== null && store.fileSync.isOfflineEdit(fileText) ? fileText : null;
    // Replaying the log applies configs, and each would be written back over the edit before it is proposed.
    if (offlineEdit !== null) store.fileSync.hold(true);
    store.node = await RaftNode.start({
      nodeId: cluster.nodeId,
      listen: options.listen ?? cluster.listen,
      peers: cluster.peers,
      secret: cluster.secret,
      dataDir: cluster.dataDir,
      electionTimeoutMs: cluster.electionTimeoutMs,
      heartbeatIntervalMs: cluster.heartbeatIntervalMs,
      ...(cluster.join === undefined ? {} : { join: cluster.join }),
      ...(cluster.snapshotEvery === undefined ? {} : { snapshotEvery: cluster.snapshotEvery }),
      applier: store.applier(),
      logger: options.logger,
      metrics: options.metrics.raft,
      clock: store.clock,
      ...(options.random === undefined ? {} : { random: options.random }),
    });
    store.node.on((event) => store.onNodeEvent(event));
    // The node replayed its committed log before it started listening: serve what that applied.
    store.serveAppliedConfig();
    if (offlineEdit !== null) void store.fileEdits.proposeOfflineEdit(offlineEdit);
    return store;
  }

  /** The Raft driver, for tests and tooling (peer port, status). */
  get raft(): RaftNode {
    return this.node;
  }

  get version(): number {
    return this.machine.version;
  }

  /** The config version this node's file last showed. */
  get fileVersion(): number {
    return this.fileSync.version;
  }

  status(): NodeStatus {
    const notReady = this.readiness.notReady();
    return {
      node: this.nodeId,
      version: this.machine.version,
      ready: notReady.length === 0,
      notReady,
      pools: poolStatusViews(this.options.dataPlane),
      cluster: this.cluster(),
    };
  }

  cluster(): ClusterStatus {
    const status = this.node.status();
    const { voters, learners } = status.confState;
    const learner = learners.includes(this.nodeId);
    const role: ClusterRole = status.role === 'follower' && learner ? 'learner' : status.role;
    const stats = this.node.peerStats();
    const members: ClusterMember[] = [...voters, ...learners].map((id) => ({
      id,
      address: this.options.cluster.peers[id] ?? this.machine.member(id)?.address ?? '',
      voter: voters.includes(id),
      matchIndex: status.progress?.[id]?.match ?? null,
      reachable: id === this.nodeId ? true : (stats[id]?.reachable ?? null),
      incarnation: this.machine.member(id)?.incarnation ?? null,
    }));
    const failed = this.node.failed;
    return {
      nodeId: this.nodeId,
      role,
      membership: this.membership(),
      term: status.term,
      leader: failed === null ? status.leader : null,
      commitIndex: status.commit,
      appliedIndex: this.node.applied,
      members,
      clusterId: this.machine.clusterId,
      ...(failed === null ? {} : { failure: { kind: failed.kind, message: failed.error.message, advice: failed.advice } }),
    };
  }

  async getConfig(): Promise<{ version: number; config: PlainReplicated }> {
    const deadline = this.clock.now() + this.writeTimeoutMs;
    for (let attempt = 0; attempt < 1000; attempt++) {
      await this.proposals.awaitLeader(deadline);
      const context = randomUUID();
      this.reads.set(context, null);
      try {
        try {
          this.node.readIndex(context);
        } catch (error) {
          if (isRetryable(error)) continue;
          throw error;
        }
        const answered = await this.proposals.waitFor(() => this.reads.get(context) !== null, this.proposals.attemptMs(deadline));
        const index = this.reads.get(context);
        if (!answered || index === null || index === undefined) {
          if (this.clock.now() >= deadline) break;
          continue;
        }
        if (!(await this.proposals.waitFor(() => this.node.applied >= index, deadline - this.clock.now()))) break;
        const state = this.machine.state;
        return { version: state.version, config: toPlainReplicated(state.config) };
      } finally {
        this.reads.delete(context);
      }
    }
    throw this.proposals.timeoutError('read the config');
  }

  async putConfig(body: unknown, options: { ifMatch?: number; sourceText?: string } & WriteOptions): Promise<WriteResult> {
    if (options.sourceText !== undefined) {
      const fromText = validateReplicatedText(options.sourceText, 'request body');
      if (!fromText.ok) throw invalid(fromText.problems);
    }
    // Checked here too so an invalid body never costs a log entry; apply validates again on every node.
    const checked = validateReplicated(body);
    if (!checked.ok) throw invalid(checked.problems);
    const command: ConfigCommand = {
      type: 'set-config',
      config: toPlainReplicated(checked.config),
      ...(options.ifMatch === undefined ? {} : { expectedVersion: options.ifMatch }),
      ...guard(options),
    };
    const outcome = await this.proposals.submit(command, this.changeMeta(options.origin), options.requestId);
    return { version: outcome.version, requestId: outcome.requestId };
  }

  async addBackend(pool: string, input: BackendInput, options: WriteOptions = {}): Promise<WriteResult & { backend: { id: string; url: string; weight: number } }> {
    const outcome = await this.proposals.submit({ type: 'add-backend', pool, backend: input, refuseUnsafe: true }, this.changeMeta(options.origin), options.requestId);
    return { version: outcome.version, requestId: outcome.requestId, backend: outcome.backend! };
  }

  async updateBackend(pool: string, id: string, patch: BackendPatch, options: WriteOptions = {}): Promise<WriteResult> {
    const outcome = await this.proposals.submit({ type: 'update-backend', pool, id, patch, refuseUnsafe: true, ...discoveredHere(this.options.dataPlane, pool, id) }, this.changeMeta(options.origin), options.requestId);
    return { version: outcome.version, requestId: outcome.requestId };
  }

  async removeBackend(pool: string, id: string, options: WriteOptions = {}): Promise<WriteResult> {
    const outcome = await this.proposals.submit({ type: 'remove-backend', pool, id, ...guard(options) }, this.changeMeta(options.origin), options.requestId);
    return { version: outcome.version, requestId: outcome.requestId };
  }

  history(): readonly HistoryEntry[] {
    return this.machine.history();
  }

  async rollback(version: number, options: { ifMatch?: number } & WriteOptions): Promise<WriteResult> {
    const target = this.machine.history().find((entry) => entry.version === version);
    if (target === undefined) throw notInHistory(version, this.options.cluster.historySize);
    // Compare-and-set on what is current now (read through the leader), unless the caller names the version it saw.
    const expectedVersion = options.ifMatch ?? (await this.getConfig()).version;
    const source: ChangeSource = { kind: 'rollback', node: this.nodeId, via: options.origin?.via ?? 'api', rollbackOf: version };
    const outcome = await this.proposals.submit(
      { type: 'set-config', config: target.config, expectedVersion, ...guard(options) },
      { ...this.changeMeta(options.origin), source },
      options.requestId,
    );
    this.options.logger.info('config rolled back', { node: this.nodeId, to: version, version: outcome.version, requestId: outcome.requestId });
    return { version: outcome.version, requestId: outcome.requestId };
  }

  /** When and from where a change made through the admin API (or CLI) on this node comes. */
  private changeMeta(origin: ChangeOrigin | undefined, source?: ChangeSource): ChangeMeta {
    return {
      at: new Date().toISOString(),
      source: source ?? { kind: origin?.via ?? 'api', node: this.nodeId },
      ...(origin?.clientRequestId === undefined ? {} : { clientRequestId: origin.clientRequestId }),
    };
  }

  /** Adds a voter or learner; adding an existing learner as a voter promotes it. */
  async addMember(id: string, address: string, learner: boolean): Promise<ClusterStatus> {
    const problems = memberProblems(id, address);
    if (problems.length > 0) throw new BalancerError('BAD_REQUEST', `cannot add member ${JSON.stringify(id)}: ${problems.join('; ')}`);
    const change: ConfChange = { type: learner ? 'add-learner' : 'add-voter', nodeId: id, address };
    const done = (): boolean => {
      const { voters, learners } = this.node.status().confState;
      return (learner ? learners : voters).includes(id) && (this.machine.member(id)?.address ?? address) === address;
    };
    return this.changeMembership(change, done);
  }

  async removeMember(id: string): Promise<ClusterStatus> {
    const isMember = (): boolean => {
      const { voters, learners } = this.node.status().confState;
      return voters.includes(id) || learners.includes(id);
    };
    if (!isMember()) throw new BalancerError('NOT_FOUND', `"${id}" is not a member of the cluster`);
    return this.changeMembership({ type: 'remove', nodeId: id }, () => !isMember());
  }

  async transferLeader(id: string): Promise<ClusterStatus> {
    if (!this.node.status().confState.voters.includes(id)) {
      throw new BalancerError('BAD_REQUEST', `"${id}" is not a voter; leadership can move only to a voter`);
    }
    const deadline = this.clock.now() + this.writeTimeoutMs;
    for (let attempt = 0; attempt < 1000 && this.clock.now() < deadline; attempt++) {
      if (this.node.leaderId === id) return this.cluster();
      await this.proposals.awaitLeader(deadline);
      this.node.transferLeader(id);
      if (await this.proposals.waitFor(() => this.node.leaderId === id, this.proposals.attemptMs(deadline))) return this.cluster();
    }
    throw this.proposals.timeoutError(`transfer leadership to ${id}`);
  }

  /**
   * A YAML edit (the watcher, or SIGHUP): validate the whole file, and propose its routes and pools as a
   * compare-and-set from the version the file last showed. Resolves once the edit is settled.
   */
  reloadFromText(text: string): Promise<FileEditResult> {
    return this.fileEdits.reloadFromText(text);
  }

  /** Stops the Raft node (timers, transport, data dir lock); pending calls fail. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.node.stop();
    this.proposals.cancelAll();
    // The last applied config still reaches the file; a write-back still running would otherwise touch the file and
    // the data dir after the node is gone.
    this.startWriteBack();
    await this.fileSync.idle();
  }

  // ---- the state machine the driver applies to ----

  private applier(): RaftApplier {
    return {
      restoreSnapshot: (snapshot: Snapshot) => {
        this.machine.restore(snapshot.data);
        const { voters, learners } = snapshot.metadata.confState;
        if (voters.includes(this.nodeId) || learners.includes(this.nodeId)) this.removedAt = null;
      },
      applyEntry: (entry: Entry) => {
        const effect = this.machine.applyEntry(entry);
        if (effect.kind === 'malformed') {
          this.options.logger.error('skipping a malformed log entry', { index: entry.index, reason: effect.reason });
        } else if (effect.kind === 'command' && effect.requestId !== undefined) {
          this.proposals.noteApplied(effect.requestId, effect.outcome);
        }
      },
      applyConfChange: (entry: Entry, change: ConfChange) => {
        this.machine.applyConfChange(change, entry.index);
        if (change.nodeId !== this.nodeId) return;
        if (change.type === 'remove') {
          this.removedAt = entry.index;
          this.options.logger.warn('this node was removed from the cluster: it no longer votes or campaigns, and /readyz answers 503', {
            node: this.nodeId,
            index: entry.index,
            hint: 'to bring it back, wipe its data dir, start it with cluster.join: true and run `balancer cluster add` against a member',
          });
        } else {
          this.removedAt = null;
        }
      },
      snapshotData: () => this.machine.snapshot(),
      memberAddress: (id: NodeId) => this.machine.member(id)?.address ?? null,
      memberIncarnation: (id: NodeId) => this.machine.member(id)?.incarnation ?? null,
      removedMember: (id: NodeId) => this.machine.removedMember(id),
      clusterId: () => this.machine.clusterId,
    };
  }

  private onNodeEvent(event: RaftNodeEvent): void {
    switch (event.type) {
      case 'applied':
        this.serveAppliedConfig();
        this.recordIdentities();
        break;
      case 'peer':
        this.recordIdentities();
        break;
      case 'dropped':
        this.proposals.noteDropped(event.requestId);
        break;
      case 'read':
        if (this.reads.has(event.context)) this.reads.set(event.context, event.index);
        break;
      case 'removed-by-peer':
        // Its own log already says so (removed while up): that was logged when applied.
        if (this.membership() === 'removed') break;
        this.removedByPeer = { peer: event.peer, detail: event.detail };
        // The same message as for a removal this node applied itself: operators grep for one line.
        this.options.logger.warn('this node was removed from the cluster: it no longer votes or campaigns, and /readyz answers 503', {
          node: this.nodeId,
          while: 'down',
          peer: event.peer,
          detail: event.detail,
          hint: 'to bring it back, wipe its data dir, start it with cluster.join: true and run `balancer cluster add` against a member',
        });
        break;
      case 'leader':
        // A leader talks to this node: it is a member again, whatever a peer said before.
        if (event.leader !== null && event.leader !== this.nodeId) this.removedByPeer = null;
        if (event.leader === this.nodeId && this.machine.version === 0) void this.fileEdits.seedFromFile();
        this.recordIdentities();
        break;
      case 'failed':
        // Every waiting call wakes up and fails fast with RAFT_FAILED instead of waiting out its deadline.
        this.proposals.cancelAll();
        break;
    }
    this.proposals.recheck();
  }

  /** Hands a newly applied config to the data plane at once, and to the file in the background. */
  private serveAppliedConfig(): void {
    const { version, config } = this.machine.state;
    if (version === this.servedVersion || version === 0 || this.stopped) return;
    this.servedVersion = version;
    this.options.dataPlane.apply(version, resolveReplicatedPaths(config, this.options.baseDir));
    this.options.logger.info('config applied', { node: this.nodeId, version, pools: Object.keys(config.pools) });
    this.pendingWriteBack = { version, config };
    if (this.writeBackTimer?.kind === 'turn') return;
    // This node's own file edit is in the file already: its write-back only records that the file shows this version,
    // and must not wait, since the next edit of the file is a compare-and-set from the version the file is known to show.
    const source = this.machine.changeAt(version)?.source;
    const shownByFile = source?.kind === 'file' && source.node === this.nodeId;
    const wait = shownByFile ? 0 : this.lastWriteBackAt + this.fileWriteIntervalMs - this.clock.now();
    if (wait > 0) {
      // A burst: the file was written moments ago. Its next write takes whatever is newest by then, once, instead of
      // every version in turn (each write-back costs a few ms of CPU with its fsyncs).
      this.writeBackTimer ??= { kind: 'interval', handle: this.clock.setTimeout(() => this.startWriteBack(), wait) };
      return;
    }
    if (this.writeBackTimer?.kind === 'interval') this.clock.clearTimeout(this.writeBackTimer.handle);
    // A write-back begins with a synchronous read and rewrite of the file (milliseconds of CPU): started in this turn it
    // would run before the writes waiting for this version hear of it (their answers follow in promise callbacks).
    // Started after them, a PATCH is answered as soon as the data plane serves its change; the file follows.
    this.writeBackTimer = { kind: 'turn', handle: setImmediate(() => this.startWriteBack()) };
  }

  /** Hands the newest applied config to the file (a write-back waiting its turn takes the newest anyway). */
  private startWriteBack(): void {
    const timer = this.writeBackTimer;
    this.writeBackTimer = null;
    if (timer?.kind === 'turn') clearImmediate(timer.handle);
    else if (timer?.kind === 'interval') this.clock.clearTimeout(timer.handle);
    const pending = this.pendingWriteBack;
    this.pendingWriteBack = null;
    if (pending === null) return;
    this.lastWriteBackAt = this.clock.now();
    const { version, config } = pending;
    void this.fileSync.writeBack(version, config).catch((error: unknown) => {
      this.options.logger.error('config file write-back failed', { error: errorMessage(error) });
    });
  }

  /**
   * The leader records what the cluster has not recorded yet: a cluster id (made here, once), and the data dir
   * incarnation of each member it has heard in an authenticated handshake (its own from its data dir). Bootstrap
   * members get theirs once the first leader hears them; a member added with `cluster add` once the leader
   * reaches it. One proposal at a time; the next event tries again if something is still missing.
   */
  private recordIdentities(): void {
    if (this.recordingIdentities || this.stopped || this.node.failed !== null || this.node.leaderId !== this.nodeId) return;
    // Runs on every applied entry: the membership alone, not the leader's progress map of every member.
    const { voters, learners } = this.node.confState();
    const incarnations: Record<string, string> = {};
    for (const id of [...voters, ...learners]) {
      const member = this.machine.member(id);
      if (member === undefined || member.incarnation !== undefined) continue;
      const seen = id === this.nodeId ? this.node.identity.incarnation : this.node.peerIdentity(id)?.incarnation;
      if (seen !== null && seen !== undefined) incarnations[id] = seen;
    }
    const needClusterId = this.machine.clusterId === null;
    if (!needClusterId && Object.keys(incarnations).length === 0) return;
    const command: ClusterCommand = {
      type: 'record-identity',
      ...(needClusterId ? { clusterId: randomBytes(16).toString('hex') } : {}),
      incarnations,
    };
    this.recordingIdentities = true;
    void this.proposals.submit(command, undefined).then(
      () => {
        this.recordingIdentities = false;
        this.options.logger.info('cluster identity recorded', { node: this.nodeId, clusterId: this.machine.clusterId, incarnations });
        // A peer heard while this proposal was in flight found recordingIdentities set and was skipped, and an idle
        // cluster may send no further event: record it now (nothing to do returns at once).
        this.recordIdentities();
      },
      (error: unknown) => {
        this.recordingIdentities = false;
        this.options.logger.debug('recording cluster identities failed; the next leader event retries', { error: errorMessage(error) });
      },
    );
  }

  private async changeMembership(change: ConfChange, done: () => boolean): Promise<ClusterStatus> {
    if (done()) return this.cluster();
    const deadline = this.clock.now() + this.writeTimeoutMs;
    let lastRefusal: BalancerError | null = null;
    for (let attempt = 0; attempt < 1000 && this.clock.now() < deadline; attempt++) {
      await this.proposals.awaitLeader(deadline);
      try {
        this.node.proposeConfChange(change);
      } catch (error) {
        if (isBalancerError(error, 'MEMBERSHIP_CHANGE_PENDING')) {
          lastRefusal = error;
          await this.proposals.waitFor(done, Math.min(100, Math.max(0, deadline - this.clock.now())));
          if (done()) break;
          continue;
        }
        if (!isRetryable(error)) throw error;
      }
      if (await this.proposals.waitFor(done, this.proposals.attemptMs(deadline))) break;
    }
    if (done()) {
      this.options.logger.info('cluster membership change committed', { node: this.nodeId, change: change.type, member: change.nodeId });
      return this.cluster();
    }
    throw lastRefusal ?? this.proposals.timeoutError(`${change.type} ${change.nodeId}`);
  }


}

function notInHistory(version: number, size: number): BalancerError {
  return new BalancerError('NOT_FOUND', `version ${version} is not in this node's config history (it keeps the last ${size} versions: cluster.historySize); \`balancer config history\` lists them`);
}

function invalid(problems: readonly { path: string; message: string; line?: number; column?: number }[]): BalancerError {
  return new BalancerError('CONFIG_INVALID', `config rejected: ${problems.length} problem(s)`, { details: problems });
}
