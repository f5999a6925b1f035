// The storage crash simulator: three real RaftNodes with real DiskStorage on simulated disks, crashed and restarted at random I/O points under client writes; seeded and replayable.

/*
 * What is real: RaftNode (the driver, its Ready loop, fail-stop, proposal tracking), DiskStorage and the
 * WAL (every byte they write), the core. What is simulated: the disks (FaultFs: a crash before or after
 * any file operation, un-fsynced writes lost, kept, torn or zero-filled), the network (an in-memory
 * transport with drops and delays), time (a FakeClock advanced one heartbeat per step) and the event
 * loop (the driver's deferred Ready loop runs from a queue the simulator drains), so a seed replays the
 * same run exactly: `npm run sim -- --storage --seeds 1 --from SEED --trace`.
 *
 * Faults: a node's process dies at a random file operation (before or after it), or between operations;
 * it restarts later from what its disk kept. Checked during the run: at most one leader per term; every
 * node applies the same entry at each index (so logs agree on what was committed); no node fails (a
 * fail-stop not caused by its own crash means it found its state broken); a restarted node's term is not
 * below any term it had sent, and in that term it votes for whom it had told it voted for (what it sent
 * must have been on disk). Checked after healing: every node restarted; every node applied every
 * acknowledged write; the client history is linearizable.
 *
 * `bug` injects a known durability bug so the checks can be seen to catch it: `skip-wal-fsync` (the WAL's
 * fdatasync does nothing), `late-hard-state` (the hard state is written after the Ready's messages left).
 */

import { randomInt, seededRandom, FakeClock, type Random } from '../../clock.js';
import { errorMessage, isBalancerError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { noopMetrics } from '../../metrics/types.js';
import type { Entry, HardState, Message, NodeId, Snapshot } from '../core/types.js';
import { RaftNode, type RaftApplier, type RaftNodeEvent } from '../runtime/node.js';
import { DiskStorage, type DiskStorageOptions, type RaftStorage } from '../runtime/storage.js';
import type { PeerStats, PeerTransportOptions, RaftTransport } from '../runtime/transport.js';
import { FaultFs, SimulatedCrash, type CrashLoss, type FsOperation } from './fault-fs.js';
import { checkLinearizable, type RegisterOp } from './linearizability.js';
import { ClientHistory, RegisterMachine, drawRegisterOp } from './register.js';

export type StorageBug = 'skip-wal-fsync' | 'late-hard-state';

export interface StorageSimOptions {
  /** Steps (heartbeat intervals) with crashes and client traffic. */
  readonly faultSteps?: number;
  /** Steps allowed after healing for every node to catch up. */
  readonly healSteps?: number;
  readonly clients?: number;
  /** Chance per step that a running node gets a crash scheduled (at a coming file operation, or at once). */
  readonly crashRate?: number;
  /** Chance per step that a crashed node restarts. */
  readonly restartRate?: number;
  readonly dropRate?: number;
  /** Messages are delayed 0..maxDelay steps, which also reorders them. */
  readonly maxDelay?: number;
  readonly snapshotEvery?: number;
  readonly bug?: StorageBug;
  readonly fullTrace?: boolean;
}

export interface StorageSimResult {
  readonly seed: number;
  readonly steps: number;
  readonly crashes: { readonly before: number; readonly after: number; readonly between: number };
  /** Crashes by the kind of file operation they hit. */
  readonly crashedOperations: Readonly<Record<string, number>>;
  readonly restarts: number;
  readonly committed: number;
  readonly acknowledged: number;
  readonly timedOut: number;
  readonly reads: number;
  readonly elections: number;
  /** Snapshots a leader sent and a follower installed (not counting those loaded from disk at start). */
  readonly snapshotsInstalled: number;
  readonly trace: readonly string[];
}

export class StorageSimulationFailure extends Error {
  override readonly name = 'StorageSimulationFailure';
  constructor(
    readonly seed: number,
    problem: string,
    readonly trace: readonly string[],
    readonly bug?: StorageBug,
  ) {
    super(
      `storage seed ${seed}: ${problem}\n` +
        `reproduce: npm run build && npm run sim -- --storage --seeds 1 --from ${seed}${bug === undefined ? '' : ` --bug ${bug}`} --trace\n` +
        `last events:\n  ${trace.slice(-40).join('\n  ')}`,
    );
  }
}

const DEFAULTS = {
  faultSteps: 400,
  healSteps: 600,
  clients: 3,
  crashRate: 0.04,
  restartRate: 0.2,
  dropRate: 0.02,
  maxDelay: 2,
  snapshotEvery: 8,
};

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
const HEARTBEAT_MS = 10;
const ELECTION_MS = 100;
const DATA_ROOT = '/sim';
const CLIENT_DEADLINE_STEPS = 80;
const CLIENT_RETRY_STEPS = 12;

interface InFlight {
  readonly message: Message;
  readonly from: NodeId;
  readonly deliverAt: number;
}

/** One node slot: its disk survives crashes; the process (RaftNode and state machine) does not. */
interface SimProcess {
  readonly id: NodeId;
  disk: FaultFs;
  node: RaftNode | null;
  machine: RegisterMachine;
  pid: number;
  generation: number;
  /** The transport hooks of the running process, which the network delivers to. */
  endpoint: PeerTransportOptions | null;
  /** A crash planned at a coming file operation of this process. */
  plan: { readonly at: number; readonly when: 'crash-before' | 'crash-after' } | null;
  crashedAt: number;
  readonly reads: Map<string, number>;
  /** What its processes sent, which their disk must have held first: the highest term, and each term's granted vote. */
  readonly sent: { term: number; readonly votes: Map<number, NodeId> };
}

interface ClientOp {
  readonly client: number;
  readonly op: RegisterOp;
  readonly requestId: string;
  readonly call: number;
  target: NodeId;
  targetGeneration: number;
  lastSubmit: number;
  everSubmitted: boolean;
  retryNow: boolean;
}

class StorageSimulator {
  private readonly rng: Random;
  private readonly options: typeof DEFAULTS;
  private readonly bug: StorageBug | undefined;
  private readonly clock = new FakeClock(0);
  private readonly processes = new Map<NodeId, SimProcess>();
  private readonly tasks: Array<() => void> = [];
  private readonly livePids = new Set<number>();
  private nextPid = 1000;
  private inFlight: InFlight[] = [];
  private step = 0;
  private readonly traceLines: string[] = [];
  private readonly fullTrace: boolean;
  private failure: string | null = null;

  // checks
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly applied = new Map<number, Entry>();
  private maxApplied = 0;

  // clients
  private readonly clients = new ClientHistory<ClientOp>();
  private nextRequest = 0;
  /** Values written so far; drawRegisterOp numbers each new one. */
  private readonly values = { count: 0 };

  // counters
  private readonly crashes = { before: 0, after: 0, between: 0 };
  private readonly crashedOperations: Record<string, number> = {};
  private restarts = 0;
  private snapshotsInstalled = 0;

  constructor(
    readonly seed: number,
    options: StorageSimOptions = {},
  ) {
    this.rng = seededRandom(seed);
    this.options = { ...DEFAULTS, ...stripUndefined(options) };
    this.bug = options.bug;
    this.fullTrace = options.fullTrace ?? false;
  }

  async run(): Promise<StorageSimResult> {
    try {
      for (const id of IDS) {
        const proc: SimProcess = {
          id,
          disk: this.newDisk(id, null, 'lose-all'),
          node: null,
          machine: new RegisterMachine(),
          pid: 0,
          generation: 0,
          endpoint: null,
          plan: null,
          crashedAt: 0,
          reads: new Map(),
          sent: { term: 0, votes: new Map() },
        };
        this.processes.set(id, proc);
      }
      for (const proc of this.processes.values()) await this.startProcess(proc);
      for (let i = 0; i < this.options.faultSteps; i++) await this.tick(true);
      await this.heal();
      for (const op of [...this.clients.pending.values()]) this.giveUp(op);
      this.finalChecks();
    } finally {
      for (const proc of this.processes.values()) await this.kill(proc);
    }
    return {
      seed: this.seed,
      steps: this.step,
      crashes: { ...this.crashes },
      crashedOperations: { ...this.crashedOperations },
      restarts: this.restarts,
      committed: this.maxApplied,
      acknowledged: this.clients.acknowledged.size,
      timedOut: this.clients.timedOut,
      reads: this.clients.reads,
      elections: this.leaderOfTerm.size,
      snapshotsInstalled: this.snapshotsInstalled,
      trace: this.traceLines,
    };
  }

  // ---- bookkeeping ---------------------------------------------------------------------------------

  private trace(line: string): void {
    this.traceLines.push(`step ${this.step} ${line}`);
    if (!this.fullTrace && this.traceLines.length > 600) this.traceLines.splice(0, 300);
  }

  private fail(problem: string): never {
    throw new StorageSimulationFailure(this.seed, problem, this.traceLines, this.bug);
  }

  /** Problems found inside callbacks are raised at the next step boundary. */
  private noteFailure(problem: string): void {
    if (this.failure === null) this.failure = problem;
  }

  private chance(p: number): boolean {
    return this.rng.next() < p;
  }

  private pick<T>(items: readonly T[]): T {
    return items[randomInt(this.rng, items.length)]!;
  }

  private up(): SimProcess[] {
    return [...this.processes.values()].filter((p) => p.node !== null);
  }

  // ---- disks and processes -------------------------------------------------------------------------

  private newDisk(id: NodeId, previous: FaultFs | null, loss: CrashLoss): FaultFs {
    const options = {
      decide: (operation: FsOperation) => this.decide(id, operation),
      random: seededRandom((this.seed * 31 + IDS.indexOf(id) * 7919 + this.restarts * 104729) >>> 0),
      ...(this.bug === 'skip-wal-fsync' ? { ignoreFileSync: (path: string) => /wal-\d+\.log$/.test(path) } : {}),
    };
    return previous === null ? new FaultFs(options) : previous.afterCrash(loss, options);
  }

  private decide(id: NodeId, operation: FsOperation): 'crash-before' | 'crash-after' | undefined {
    const proc = this.processes.get(id);
    const plan = proc?.plan;
    if (proc === undefined || plan === undefined || plan === null || operation.index < plan.at) return undefined;
    proc.plan = null;
    this.crashes[plan.when === 'crash-before' ? 'before' : 'after']++;
    this.crashedOperations[operation.kind] = (this.crashedOperations[operation.kind] ?? 0) + 1;
    this.trace(`${id} crashes ${plan.when === 'crash-before' ? 'before' : 'after'} ${operation.kind} ${operation.path.replace(`${DATA_ROOT}/${id}/`, '')} (op ${operation.index})`);
    return plan.when;
  }

  private applier(proc: SimProcess): RaftApplier {
    return {
      restoreSnapshot: (snapshot: Snapshot) => {
        proc.machine = RegisterMachine.restore(snapshot.data);
        // While starting the snapshot comes from its own disk; once running, from the leader.
        const fromLeader = proc.node !== null;
        this.trace(`${proc.id} restores snapshot ${snapshot.metadata.index}@${snapshot.metadata.term}${fromLeader ? ' sent by the leader' : ' from its disk'}`);
        if (fromLeader) this.snapshotsInstalled++;
      },
      applyEntry: (entry: Entry) => {
        if (entry.type === 'normal' && entry.data !== '') proc.machine.apply(entry);
        this.checkApplied(proc, entry);
      },
      applyConfChange: (entry: Entry) => this.checkApplied(proc, entry),
      snapshotData: () => proc.machine.serialize(),
      memberAddress: () => null,
    };
  }

  private checkApplied(proc: SimProcess, entry: Entry): void {
    const known = this.applied.get(entry.index);
    if (known === undefined) {
      this.applied.set(entry.index, entry);
      this.maxApplied = Math.max(this.maxApplied, entry.index);
    } else if (known.term !== entry.term || known.data !== entry.data || known.requestId !== entry.requestId) {
      this.noteFailure(`${proc.id} applied ${entry.index}@${entry.term} (${entry.requestId ?? entry.type}) but ${known.index}@${known.term} (${known.requestId ?? known.type}) was applied elsewhere`);
    }
  }

  private transportFor(proc: SimProcess): (options: PeerTransportOptions) => RaftTransport {
    return (options) => {
      let open = true;
      proc.endpoint = options;
      return {
        start: async () => ({ port: 0 }),
        send: (messages: readonly Message[]) => {
          if (open) this.enqueue(proc.id, messages);
        },
        updatePeers: () => {},
        stop: async () => {
          open = false;
          if (proc.endpoint === options) proc.endpoint = null;
        },
        stats: () => ({}) as Record<string, PeerStats>,
      };
    };
  }

  private openStorage(): ((dir: string, nodeId: NodeId, logger: Logger, options: DiskStorageOptions) => Promise<RaftStorage>) | undefined {
    if (this.bug !== 'late-hard-state') return undefined;
    return async (dir, nodeId, logger, options) => new LateHardStateStorage(await DiskStorage.open(dir, nodeId, logger, options), (run) => this.tasks.push(run));
  }

  private async startProcess(proc: SimProcess): Promise<void> {
    proc.pid = this.nextPid++;
    proc.generation++;
    proc.machine = new RegisterMachine();
    proc.reads.clear();
    this.livePids.add(proc.pid);
    const openStorage = this.openStorage();
    let node: RaftNode;
    try {
      node = await RaftNode.start({
        nodeId: proc.id,
        listen: '127.0.0.1:0',
        peers: Object.fromEntries(IDS.map((id) => [id, `127.0.0.1:${7001 + IDS.indexOf(id)}`])),
        secret: 'storage-sim',
        dataDir: `${DATA_ROOT}/${proc.id}`,
        electionTimeoutMs: ELECTION_MS,
        heartbeatIntervalMs: HEARTBEAT_MS,
        snapshotEvery: this.options.snapshotEvery,
        applier: this.applier(proc),
        logger: silentLogger,
        metrics: noopMetrics.raft,
        clock: this.clock,
        random: seededRandom((this.seed * 7919 + IDS.indexOf(proc.id) * 104729 + proc.generation * 15485863) >>> 0),
        storage: {
          fs: proc.disk,
          pid: proc.pid,
          isProcessAlive: (pid) => this.livePids.has(pid),
          newIncarnation: () => `${proc.id}-${this.seed}-${proc.generation}`.replace(/[^0-9a-f]/g, 'a').padEnd(16, '0'),
        },
        ...(openStorage === undefined ? {} : { openStorage }),
        transport: this.transportFor(proc),
        defer: (run) => this.tasks.push(run),
      });
    } catch (error) {
      if (error instanceof SimulatedCrash || proc.disk.crashed) {
        // It died again while starting: that is one more crash, and a restart to come.
        this.livePids.delete(proc.pid);
        proc.endpoint = null;
        proc.crashedAt = this.step;
        this.trace(`${proc.id} crashed while starting`);
        return;
      }
      this.fail(`${proc.id} cannot start after a crash: ${errorMessage(error)}`);
    }
    proc.node = node;
    node.on((event) => this.onEvent(proc, node, event));
    const status = node.basicStatus();
    // Raft's persistence rule, seen from outside: nothing it said before the crash may be missing now.
    if (status.term < proc.sent.term) this.fail(`${proc.id} restarted at term ${status.term} but had sent messages of term ${proc.sent.term}`);
    const promised = proc.sent.votes.get(status.term);
    if (promised !== undefined && status.vote !== promised) {
      this.fail(`${proc.id} restarted voting for ${status.vote ?? 'nobody'} in term ${status.term} but had granted its vote to ${promised}`);
    }
    this.trace(`${proc.id} starts (pid ${proc.pid}): term ${status.term}, commit ${status.commit}, last ${status.lastIndex}, applied ${node.applied}`);
  }

  private onEvent(proc: SimProcess, node: RaftNode, event: RaftNodeEvent): void {
    if (proc.node !== node) return;
    switch (event.type) {
      case 'leader':
        if (event.role === 'leader') {
          const holder = this.leaderOfTerm.get(event.term);
          if (holder !== undefined && holder !== proc.id) this.noteFailure(`two leaders in term ${event.term}: ${holder} and ${proc.id}`);
          if (holder === undefined) this.trace(`${proc.id} leads term ${event.term}`);
          this.leaderOfTerm.set(event.term, proc.id);
        }
        break;
      case 'read':
        proc.reads.set(event.context, event.index);
        break;
      case 'dropped':
        for (const op of this.clients.pending.values()) if (op.requestId === event.requestId && op.target === proc.id) op.retryNow = true;
        break;
      case 'failed':
        // A node that fails with its disk intact found its own state broken: that is what the checks are for.
        if (!proc.disk.crashed) this.noteFailure(`${proc.id} failed (${event.kind}): ${event.error.message}`);
        break;
      default:
        break;
    }
  }

  /** The process dies: nothing more runs in it; what it sent is already on the network. */
  private async kill(proc: SimProcess): Promise<void> {
    const node = proc.node;
    if (node === null) return;
    proc.node = null;
    proc.endpoint = null;
    proc.plan = null;
    this.livePids.delete(proc.pid);
    proc.crashedAt = this.step;
    if (!proc.disk.crashed) proc.disk.crash();
    await node.stop().catch(() => undefined);
  }

  // ---- the event loop -----------------------------------------------------------------------------

  /** Runs queued Ready loops until nothing is left; all file I/O resolves in microtasks, so one macrotask flushes it. */
  private async settle(): Promise<void> {
    for (let guard = 0; guard < 100_000; guard++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const task = this.tasks.shift();
      if (task === undefined) return;
      task();
    }
    this.fail('the nodes never settled');
  }

  private async reapCrashed(): Promise<void> {
    for (const proc of this.processes.values()) {
      if (proc.node !== null && proc.disk.crashed) {
        this.trace(`${proc.id} is down`);
        await this.kill(proc);
      }
    }
  }

  private async tick(faulty: boolean): Promise<void> {
    this.step++;
    this.clock.advance(HEARTBEAT_MS);
    this.deliverDue(faulty);
    if (faulty) await this.injectFaults();
    if (faulty) {
      for (let client = 0; client < this.options.clients; client++) {
        if (!this.clients.pending.has(client) && this.chance(0.3)) this.startOp(client);
      }
    }
    this.pollClients(faulty);
    await this.settle();
    await this.reapCrashed();
    if (this.failure !== null) this.fail(this.failure);
  }

  // ---- network ------------------------------------------------------------------------------------

  private enqueue(from: NodeId, messages: readonly Message[]): void {
    const sent = this.processes.get(from)!.sent;
    for (const message of messages) {
      // Pre-votes carry a term the sender has not moved to and persist nothing.
      if (message.type !== 'MsgPreVote' && message.type !== 'MsgPreVoteResp') sent.term = Math.max(sent.term, message.term);
      if (message.type === 'MsgVoteResp' && message.reject !== true) {
        const earlier = sent.votes.get(message.term);
        if (earlier !== undefined && earlier !== message.to) this.noteFailure(`${from} granted its vote in term ${message.term} to ${earlier} and to ${message.to}`);
        sent.votes.set(message.term, message.to);
      }
      if (this.chance(this.options.dropRate)) {
        if (message.type === 'MsgSnap') this.processes.get(from)?.endpoint?.onSnapshotStatus?.(message.to, 'failure');
        continue;
      }
      this.inFlight.push({ message, from, deliverAt: this.step + 1 + randomInt(this.rng, this.options.maxDelay + 1) });
    }
  }

  private deliverDue(faulty: boolean): void {
    const due = this.inFlight.filter((m) => m.deliverAt <= this.step);
    if (due.length === 0) return;
    this.inFlight = this.inFlight.filter((m) => m.deliverAt > this.step);
    if (faulty) {
      for (let i = due.length - 1; i > 0; i--) {
        const j = randomInt(this.rng, i + 1);
        [due[i], due[j]] = [due[j]!, due[i]!];
      }
    }
    for (const { message, from } of due) {
      const target = this.processes.get(message.to)?.endpoint;
      const sender = this.processes.get(from)?.endpoint;
      if (target === null || target === undefined) {
        if (message.type === 'MsgSnap') sender?.onSnapshotStatus?.(message.to, 'failure');
        continue;
      }
      target.onMessage(message);
      if (message.type === 'MsgSnap') sender?.onSnapshotStatus?.(message.to, 'finish');
    }
  }

  // ---- faults -------------------------------------------------------------------------------------

  private async injectFaults(): Promise<void> {
    const down = [...this.processes.values()].filter((p) => p.node === null && this.step > p.crashedAt);
    if (down.length > 0 && this.chance(this.options.restartRate)) {
      const proc = this.pick(down);
      const loss: CrashLoss = this.pick(['lose-all', 'keep-all', 'random', 'random']);
      proc.disk = this.newDisk(proc.id, proc.disk, loss);
      this.restarts++;
      this.trace(`${proc.id} restarts (disk after crash: ${loss})`);
      await this.startProcess(proc);
    }
    const up = this.up();
    // Two down at once stops progress for a while, which is fine; three would only waste the run.
    if (up.length >= 2 && this.chance(this.options.crashRate)) {
      const proc = this.pick(up);
      if (proc.plan !== null) return;
      if (this.chance(0.25)) {
        this.crashes.between++;
        this.trace(`${proc.id} crashes between file operations`);
        await this.kill(proc);
      } else {
        const at = proc.disk.operationCount + randomInt(this.rng, 40);
        proc.plan = { at, when: this.chance(0.5) ? 'crash-before' : 'crash-after' };
      }
    }
  }

  private async heal(): Promise<void> {
    for (const proc of this.processes.values()) proc.plan = null;
    for (const proc of this.processes.values()) {
      if (proc.node === null) {
        proc.disk = this.newDisk(proc.id, proc.disk, 'random');
        this.restarts++;
        this.trace(`${proc.id} restarts for healing`);
        await this.startProcess(proc);
        if (proc.node === null) this.fail(`${proc.id} did not start for healing`);
      }
    }
    this.trace('heal: every node up, no more faults');
    for (let i = 0; i < this.options.healSteps; i++) {
      await this.tick(false);
      const nodes = this.up().map((p) => p.node!);
      const leader = nodes.find((n) => n.basicStatus().role === 'leader');
      if (leader === undefined || this.clients.pending.size > 0) continue;
      const goal = Math.max(this.maxApplied, leader.basicStatus().commit);
      if (nodes.length === IDS.length && nodes.every((n) => n.applied >= goal)) return;
    }
    const states = this.up()
      .map((p) => {
        const s = p.node!.basicStatus();
        return `${p.id}:${s.role}@${s.term} commit ${s.commit} applied ${p.node!.applied}`;
      })
      .join(', ');
    this.fail(`no convergence within ${this.options.healSteps} steps after healing (applied ${this.maxApplied}; ${states}; pending ${this.clients.pending.size})`);
  }

  private finalChecks(): void {
    const values = new Set<string>();
    for (const proc of this.processes.values()) {
      for (const requestId of this.clients.acknowledged) {
        if (proc.machine.dedupe.lookup(requestId) === undefined) this.fail(`acknowledged write ${requestId} is missing on ${proc.id} after healing`);
      }
      values.add(String(proc.machine.value));
    }
    if (values.size !== 1) this.fail(`nodes disagree on the final value: ${[...values].join(', ')}`);
    const result = checkLinearizable(this.clients.history);
    if (!result.ok) this.fail(`history is not linearizable${result.exhausted === true ? ' (search exhausted)' : ''}: ${JSON.stringify(this.clients.history)}`);
  }

  // ---- clients ------------------------------------------------------------------------------------

  private startOp(client: number): void {
    const up = this.up();
    if (up.length === 0) return;
    const op = drawRegisterOp(this.rng, 0.3, this.values);
    const target = this.pick(up);
    const pending: ClientOp = {
      client,
      op,
      requestId: `c${client}-r${++this.nextRequest}`,
      call: this.step,
      target: target.id,
      targetGeneration: target.generation,
      lastSubmit: this.step,
      everSubmitted: false,
      retryNow: false,
    };
    this.clients.start(pending);
    this.submit(pending);
  }

  private submit(op: ClientOp): void {
    const proc = this.processes.get(op.target)!;
    const node = proc.node;
    op.lastSubmit = this.step;
    op.retryNow = false;
    op.targetGeneration = proc.generation;
    if (node === null) return;
    try {
      if (op.op.kind === 'read') {
        proc.reads.delete(op.requestId);
        node.readIndex(op.requestId);
      } else {
        const command = op.op.kind === 'write' ? { op: 'write', value: op.op.value } : { op: 'cas', expect: op.op.expect, value: op.op.value };
        node.propose(JSON.stringify(command), op.requestId);
      }
      op.everSubmitted = true;
      this.trace(`client ${op.client} ${op.requestId} ${JSON.stringify(op.op)} -> ${op.target}`);
    } catch (error) {
      if (!isBalancerError(error)) throw error;
      const leader = node.leaderId;
      if (leader !== null && leader !== op.target) op.target = leader;
    }
  }

  private pollClients(faulty: boolean): void {
    for (const op of this.clients.pending.values()) {
      const proc = this.processes.get(op.target)!;
      if (proc.node !== null && proc.generation === op.targetGeneration) {
        if (op.op.kind === 'read') {
          const index = proc.reads.get(op.requestId);
          if (index !== undefined && proc.node.applied >= index) {
            this.complete(op, proc.machine.value);
            continue;
          }
        } else {
          const result = proc.machine.dedupe.lookup(op.requestId);
          if (result !== undefined) {
            this.complete(op, result);
            continue;
          }
        }
      }
      if (faulty && this.step - op.call >= CLIENT_DEADLINE_STEPS) {
        this.giveUp(op);
        continue;
      }
      const stale = proc.node === null || proc.generation !== op.targetGeneration;
      if (op.retryNow || stale || this.step - op.lastSubmit >= CLIENT_RETRY_STEPS) {
        // Same request id, maybe another node: the state machine applies it once.
        const up = this.up();
        if (up.length > 0 && (stale || this.chance(0.5))) op.target = this.pick(up).id;
        this.submit(op);
      }
    }
  }

  private complete(op: ClientOp, output: string | null): void {
    this.clients.complete(op, this.step, output);
    this.trace(`client ${op.client} ${op.requestId} done: ${String(output)}`);
  }

  private giveUp(op: ClientOp): void {
    this.clients.giveUp(op);
    this.trace(`client ${op.client} ${op.requestId} timed out`);
  }
}

/**
 * The injected `late-hard-state` bug: entries are written before save() resolves, but the hard state (term,
 * vote, commit) only in a later task, after the driver has sent the Ready's messages, so a crash in between
 * forgets a vote or term that peers have already seen.
 */
class LateHardStateStorage implements RaftStorage {
  constructor(
    private readonly inner: DiskStorage,
    private readonly later: (run: () => void) => void,
  ) {}

  get identity() {
    return this.inner.identity;
  }

  initialState() {
    return this.inner.initialState();
  }

  async save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
    await this.inner.save(undefined, entries);
    if (hardState !== undefined) this.later(() => void this.inner.save(hardState, []).catch(() => undefined));
  }

  saveSnapshot(snapshot: Snapshot, hardState?: HardState, entries: readonly Entry[] = []): Promise<void> {
    return this.inner.saveSnapshot(snapshot, hardState, entries);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function runStorageSeed(seed: number, options: StorageSimOptions = {}): Promise<StorageSimResult> {
  return new StorageSimulator(seed, options).run();
}
