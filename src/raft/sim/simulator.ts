// The seeded cluster simulator: a faulty network, crashes, clients, and safety checks after every step.

import { randomInt, seededRandom, type Random } from '../../clock.js';
import { isBalancerError } from '../../errors.js';
import { MemoryStorage } from '../core/storage.js';
import type { ConfChange, Entry, Message, NodeId } from '../core/types.js';
import { checkLinearizable, type HistoryOp, type RegisterOp } from './linearizability.js';
import { SimNode, type AppliedRecord, type SimNodeOptions } from './node.js';
import { ClientHistory, drawRegisterOp } from './register.js';

export interface SimOptions {
  readonly nodes?: number;
  /** Ticks with faults injected. */
  readonly faultTicks?: number;
  /** Ticks allowed after healing for a leader to appear and every node to catch up. */
  readonly healTicks?: number;
  readonly clients?: number;
  readonly dropRate?: number;
  readonly duplicateRate?: number;
  /** Messages are delayed 0..maxDelay ticks, which also reorders them. */
  readonly maxDelay?: number;
  /** Chance per tick of a fault event (partition, crash, restart, heal). */
  readonly faultRate?: number;
  readonly node?: SimNodeOptions;
  /** Keep the full trace (otherwise only the last lines are kept). */
  readonly fullTrace?: boolean;
  readonly checkLinearizability?: boolean;
  /** Fault events may also remove voters (the leader included) and add fresh nodes as learners, then promote them. */
  readonly membershipChanges?: boolean;
  /**
   * Deliberately broken durability, to prove the checks catch real bugs: `forget-vote` loses the
   * vote on restart (a vote kept only in memory); `lose-log-tail` loses the last persisted entries
   * (an append acknowledged before fsync).
   */
  readonly bug?: 'forget-vote' | 'lose-log-tail';
}

export interface SimResult {
  readonly seed: number;
  readonly ticks: number;
  readonly committed: number;
  readonly acknowledged: number;
  readonly timedOut: number;
  readonly reads: number;
  readonly elections: number;
  readonly crashes: number;
  readonly messagesDelivered: number;
  readonly membershipChanges: number;
  readonly history: readonly HistoryOp[];
  readonly trace: readonly string[];
}

export class SimulationFailure extends Error {
  override readonly name = 'SimulationFailure';
  readonly seed: number;
  readonly trace: readonly string[];
  constructor(seed: number, problem: string, trace: readonly string[]) {
    super(
      `seed ${seed}: ${problem}\n` +
        `reproduce: npm run build && npm run sim -- --seeds 1 --from ${seed} --trace\n` +
        `last events:\n  ${trace.slice(-40).join('\n  ')}`,
    );
    this.seed = seed;
    this.trace = trace;
  }
}

interface InFlight {
  readonly message: Message;
  readonly deliverAt: number;
  readonly order: number;
}

interface ClientOp {
  readonly client: number;
  readonly op: RegisterOp;
  readonly requestId: string;
  readonly call: number;
  target: NodeId;
  deadline: number;
  attempts: number;
  readIndex?: number;
  everSubmitted: boolean;
}

const DEFAULTS = {
  nodes: 5,
  faultTicks: 300,
  healTicks: 250,
  clients: 3,
  dropRate: 0.05,
  duplicateRate: 0.03,
  maxDelay: 3,
  faultRate: 0.04,
};

class Simulator {
  readonly seed: number;
  private readonly rng: Random;
  private readonly options: Required<Omit<SimOptions, 'node' | 'fullTrace' | 'checkLinearizability' | 'bug' | 'membershipChanges'>>;
  private readonly nodeOptions: SimNodeOptions;
  readonly ids: NodeId[];
  private readonly storages = new Map<NodeId, MemoryStorage>();
  readonly nodes = new Map<NodeId, SimNode | null>();
  private readonly nodeRandoms = new Map<NodeId, Random>();
  private inFlight: InFlight[] = [];
  private messageOrder = 0;
  /** Directed links that drop everything: "a>b". */
  private readonly cut = new Set<string>();
  private now = 0;
  private readonly traceLines: string[] = [];
  private readonly fullTrace: boolean;
  private readonly bug: SimOptions['bug'];
  private readonly membershipChanges: boolean;
  private membershipEvents = 0;

  // safety bookkeeping
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** index -> the committed entry, from the first node that applied it. */
  private readonly committed = new Map<number, Entry>();
  private maxCommitted = 0;
  private readonly lastCommit = new Map<NodeId, number>();
  private readonly lastPersistedCommit = new Map<NodeId, number>();
  private readonly wasLeader = new Map<NodeId, number>();

  // clients
  private readonly clients = new ClientHistory<ClientOp>();
  private nextRequest = 0;
  /** Values written so far; drawRegisterOp numbers each new one. */
  private readonly values = { count: 0 };
  private elections = 0;
  private crashes = 0;
  private delivered = 0;

  constructor(seed: number, options: SimOptions = {}) {
    this.seed = seed;
    this.rng = seededRandom(seed);
    this.options = {
      nodes: options.nodes ?? DEFAULTS.nodes,
      faultTicks: options.faultTicks ?? DEFAULTS.faultTicks,
      healTicks: options.healTicks ?? DEFAULTS.healTicks,
      clients: options.clients ?? DEFAULTS.clients,
      dropRate: options.dropRate ?? DEFAULTS.dropRate,
      duplicateRate: options.duplicateRate ?? DEFAULTS.duplicateRate,
      maxDelay: options.maxDelay ?? DEFAULTS.maxDelay,
      faultRate: options.faultRate ?? DEFAULTS.faultRate,
    };
    this.nodeOptions = { snapshotEvery: 20, keepAfterSnapshot: 5, maxEntriesPerMsg: 8, maxInflightMsgs: 4, ...options.node };
    this.fullTrace = options.fullTrace ?? false;
    this.bug = options.bug;
    this.membershipChanges = options.membershipChanges ?? true;
    this.ids = Array.from({ length: this.options.nodes }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      const storage = new MemoryStorage();
      this.storages.set(id, storage);
      this.nodeRandoms.set(id, seededRandom((seed * 7919 + this.ids.indexOf(id) * 104729) >>> 0));
      this.nodes.set(id, new SimNode(id, storage, this.nodeRandoms.get(id)!, this.nodeOptions, this.ids));
    }
  }

  private trace(line: string): void {
    this.traceLines.push(`t=${this.now} ${line}`);
    if (!this.fullTrace && this.traceLines.length > 400) this.traceLines.splice(0, 200);
  }

  private fail(problem: string): never {
    throw new SimulationFailure(this.seed, problem, this.traceLines);
  }

  private chance(p: number): boolean {
    return this.rng.next() < p;
  }

  private pick<T>(items: readonly T[]): T {
    return items[randomInt(this.rng, items.length)]!;
  }

  // ---- network ---------------------------------------------------------------------------------

  private enqueue(messages: readonly Message[], faulty: boolean): void {
    for (const message of messages) {
      if (faulty && this.chance(this.options.dropRate)) {
        this.reportSnapshot(message, false);
        continue;
      }
      const copies = faulty && this.chance(this.options.duplicateRate) ? 2 : 1;
      for (let c = 0; c < copies; c++) {
        const delay = faulty ? randomInt(this.rng, this.options.maxDelay + 1) : randomInt(this.rng, 2);
        this.inFlight.push({ message, deliverAt: this.now + 1 + delay, order: this.messageOrder++ });
      }
    }
  }

  private deliverDue(): void {
    const due = this.inFlight.filter((m) => m.deliverAt <= this.now);
    if (due.length === 0) return;
    this.inFlight = this.inFlight.filter((m) => m.deliverAt > this.now);
    // Same-tick messages arrive in a seeded random order: reordering beyond what delays give.
    for (let i = due.length - 1; i > 0; i--) {
      const j = randomInt(this.rng, i + 1);
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    for (const { message } of due) {
      const node = this.nodes.get(message.to);
      if (this.cut.has(`${message.from}>${message.to}`) || node === null || node === undefined) {
        this.reportSnapshot(message, false);
        continue;
      }
      this.delivered++;
      this.reportSnapshot(message, true);
      node.raw.step(message);
      this.process(node);
    }
  }

  /** The transport's duty (as in etcd): tell the leader whether a snapshot got through. */
  private reportSnapshot(message: Message, ok: boolean): void {
    if (message.type !== 'MsgSnap') return;
    const sender = this.nodes.get(message.from);
    if (sender === null || sender === undefined) return;
    sender.raw.reportSnapshot(message.to, ok);
    this.process(sender);
  }

  // ---- driver + checks -------------------------------------------------------------------------

  private process(node: SimNode): void {
    const faulty = this.now < this.options.faultTicks;
    const { messages, applied, readies } = node.drain();
    for (const ready of readies) {
      if (ready.hardState !== undefined) {
        const previous = this.lastPersistedCommit.get(node.id) ?? 0;
        if (ready.hardState.commit < previous) {
          this.fail(`${node.id} persisted commit ${ready.hardState.commit} after ${previous}`);
        }
        this.lastPersistedCommit.set(node.id, ready.hardState.commit);
      }
    }
    this.enqueue(messages, faulty);
    this.checkApplied(node, applied);
    this.checkNode(node, readies.some((r) => r.entries.length > 0 || r.snapshot !== undefined));
  }

  private checkApplied(node: SimNode, applied: readonly AppliedRecord[]): void {
    for (const { entry } of applied) {
      const known = this.committed.get(entry.index);
      if (known === undefined) {
        this.committed.set(entry.index, entry);
        this.maxCommitted = Math.max(this.maxCommitted, entry.index);
      } else if (known.term !== entry.term || known.data !== entry.data || known.requestId !== entry.requestId) {
        this.fail(`${node.id} applied ${entry.index}@${entry.term} but ${known.index}@${known.term} was applied elsewhere`);
      }
    }
  }

  private checkNode(node: SimNode, logChanged: boolean): void {
    const status = node.raw.basicStatus();
    const previousCommit = this.lastCommit.get(node.id) ?? 0;
    if (status.commit < previousCommit) this.fail(`${node.id} commit went back from ${previousCommit} to ${status.commit}`);
    this.lastCommit.set(node.id, status.commit);

    if (status.role === 'leader') {
      const holder = this.leaderOfTerm.get(status.term);
      if (holder !== undefined && holder !== node.id) this.fail(`two leaders in term ${status.term}: ${holder} and ${node.id}`);
      if (holder === undefined) {
        this.leaderOfTerm.set(status.term, node.id);
        this.elections++;
        this.trace(`${node.id} leader of term ${status.term} (last ${status.lastIndex}, commit ${status.commit})`);
      }
      if (this.wasLeader.get(node.id) !== status.term) {
        this.wasLeader.set(node.id, status.term);
        this.checkLeaderCompleteness(node);
      }
    }
    if (logChanged) this.checkLogMatching(node);
  }

  /** Every entry any node applied is in a new leader's log (or below its snapshot). */
  private checkLeaderCompleteness(leader: SimNode): void {
    const first = leader.storage.firstIndex();
    const last = leader.storage.lastIndex();
    if (last < this.maxCommitted) this.fail(`leader ${leader.id} last index ${last} misses committed ${this.maxCommitted}`);
    for (const [index, entry] of this.committed) {
      if (index < first - 1) continue;
      const term = leader.storage.term(index);
      if (term !== entry.term) this.fail(`leader ${leader.id} has ${index}@${term}, committed was ${index}@${entry.term}`);
    }
  }

  /** If two logs hold an entry with the same index and term, they agree on everything before it. */
  private checkLogMatching(node: SimNode): void {
    const mine = node.log();
    if (mine.length === 0) return;
    for (const other of this.nodes.values()) {
      if (other === null || other === node) continue;
      const theirs = other.log();
      if (theirs.length === 0) continue;
      const lo = Math.max(mine[0]!.index, theirs[0]!.index);
      const hi = Math.min(mine[mine.length - 1]!.index, theirs[theirs.length - 1]!.index);
      let matched = false;
      for (let index = hi; index >= lo; index--) {
        const a = mine[index - mine[0]!.index]!;
        const b = theirs[index - theirs[0]!.index]!;
        if (matched) {
          if (a.term !== b.term || a.data !== b.data || a.type !== b.type) {
            this.fail(`log matching: ${node.id} and ${other.id} agree above ${index} but differ at ${index}`);
          }
        } else if (a.term === b.term) {
          matched = true;
          if (a.data !== b.data || a.type !== b.type) this.fail(`log matching: ${node.id} and ${other.id} differ at ${index}@${a.term}`);
        }
      }
    }
  }

  // ---- faults ----------------------------------------------------------------------------------

  private up(): SimNode[] {
    const result: SimNode[] = [];
    for (const node of this.nodes.values()) if (node !== null) result.push(node);
    return result;
  }

  private injectFault(): void {
    if (this.membershipChanges && this.chance(0.12)) {
      this.changeMembership();
      return;
    }
    const roll = this.rng.next();
    if (roll < 0.25) {
      const size = 1 + randomInt(this.rng, Math.floor(this.ids.length / 2));
      const shuffled = this.ids.slice().sort(() => this.rng.next() - 0.5);
      const minority = new Set(shuffled.slice(0, size));
      this.cut.clear();
      for (const a of this.ids) for (const b of this.ids) if (minority.has(a) !== minority.has(b)) this.cut.add(`${a}>${b}`);
      this.trace(`partition {${[...minority].join(',')}} | rest`);
    } else if (roll < 0.4) {
      const a = this.pick(this.ids);
      const b = this.pick(this.ids.filter((id) => id !== a));
      this.cut.add(`${a}>${b}`);
      this.trace(`one-way cut ${a} -> ${b}`);
    } else if (roll < 0.6) {
      const alive = this.up();
      if (alive.length <= 1) return;
      const victim = this.pick(alive);
      this.nodes.set(victim.id, null);
      this.crashes++;
      this.trace(`crash ${victim.id} (persisted last ${victim.storage.lastIndex()}, commit ${victim.storage.hardState().commit})`);
    } else if (roll < 0.8) {
      this.restartOne();
    } else {
      this.cut.clear();
      this.trace('heal network');
    }
  }

  /** Removes a voter (possibly the leader) or adds a fresh node as a learner, or promotes a learner. */
  private changeMembership(): void {
    const leader = this.leader();
    if (leader === undefined) return;
    const { voters, learners } = leader.raw.status().confState;
    let cc: ConfChange;
    if (learners.length > 0) {
      cc = { type: 'add-voter', nodeId: learners[0]! };
    } else if (voters.length >= this.options.nodes && this.chance(0.5)) {
      cc = { type: 'remove', nodeId: this.pick(voters) };
    } else if (voters.length <= this.options.nodes) {
      const id = `n${this.ids.length + 1}`;
      const storage = new MemoryStorage();
      this.ids.push(id);
      this.storages.set(id, storage);
      this.nodeRandoms.set(id, seededRandom((this.seed * 7919 + this.ids.length * 104729) >>> 0));
      this.nodes.set(id, new SimNode(id, storage, this.nodeRandoms.get(id)!, this.nodeOptions));
      cc = { type: 'add-learner', nodeId: id };
    } else {
      return;
    }
    try {
      leader.raw.proposeConfChange(cc);
      this.membershipEvents++;
      this.trace(`${leader.id} proposes ${cc.type} ${cc.nodeId}`);
    } catch (error) {
      if (!isBalancerError(error)) throw error;
      this.trace(`${leader.id} refuses ${cc.type} ${cc.nodeId}: ${error.code}`);
    }
    this.process(leader);
  }

  private restartOne(): void {
    const down = this.ids.filter((id) => this.nodes.get(id) === null);
    if (down.length === 0) return;
    const id = this.pick(down);
    this.restart(id);
  }

  private restart(id: NodeId): void {
    if (this.bug !== undefined) this.breakStorage(id);
    const node = new SimNode(id, this.storages.get(id)!, this.nodeRandoms.get(id)!, this.nodeOptions);
    this.nodes.set(id, node);
    this.lastCommit.set(id, node.raw.basicStatus().commit);
    this.wasLeader.delete(id);
    this.trace(`restart ${id} (applied ${node.appliedIndex}, commit ${node.raw.basicStatus().commit})`);
    this.process(node);
  }

  private breakStorage(id: NodeId): void {
    const storage = this.storages.get(id)!;
    const hard = storage.hardState();
    if (this.bug === 'forget-vote') {
      storage.setHardState({ ...hard, vote: null });
      return;
    }
    const snapshot = storage.snapshot();
    const lost = Math.min(3, storage.lastIndex() - snapshot.metadata.index);
    if (lost <= 0) return;
    const kept = storage.entries(storage.firstIndex(), storage.lastIndex() + 1 - lost);
    const broken = new MemoryStorage();
    if (snapshot.metadata.index > 0) broken.applySnapshot(snapshot);
    else broken.setConfState(snapshot.metadata.confState);
    broken.append(kept);
    broken.setHardState({ ...hard, commit: Math.min(hard.commit, broken.lastIndex()) });
    this.storages.set(id, broken);
    this.lastPersistedCommit.set(id, Math.min(hard.commit, broken.lastIndex()));
  }

  // ---- clients ---------------------------------------------------------------------------------

  private startOp(client: number): void {
    const alive = this.up();
    if (alive.length === 0) return;
    const op = drawRegisterOp(this.rng, 0.35, this.values);
    const pending: ClientOp = {
      client,
      op,
      requestId: `c${client}-r${++this.nextRequest}`,
      call: this.now,
      target: this.pick(alive).id,
      deadline: this.now + 40,
      attempts: 0,
      everSubmitted: false,
    };
    this.clients.start(pending);
    this.submit(pending);
  }

  private submit(op: ClientOp): void {
    const node = this.nodes.get(op.target);
    if (node === null || node === undefined) return;
    op.attempts++;
    delete op.readIndex;
    try {
      if (op.op.kind === 'read') {
        node.raw.readIndex(op.requestId);
      } else {
        const command = op.op.kind === 'write' ? { op: 'write', value: op.op.value } : { op: 'cas', expect: op.op.expect, value: op.op.value };
        node.raw.propose(JSON.stringify(command), op.requestId);
      }
      op.everSubmitted = true;
      this.trace(`client ${op.client} ${op.requestId} ${JSON.stringify(op.op)} -> ${op.target}`);
    } catch (error) {
      if (!isBalancerError(error)) throw error;
      const leader = node.raw.basicStatus().leader;
      this.trace(`client ${op.client} ${op.requestId} refused by ${op.target}: ${error.code}`);
      // Retry with the same id at the leader the error named, or anywhere, on the next tick.
      if (leader !== null && leader !== op.target) op.target = leader;
    }
    this.process(node);
  }

  private pollClients(): void {
    for (const op of this.clients.pending.values()) {
      const node = this.nodes.get(op.target);
      if (node !== null && node !== undefined) {
        if (op.op.kind === 'read') {
          const state = node.readStates.find((r) => r.requestCtx === op.requestId);
          if (state !== undefined) op.readIndex = state.index;
          if (op.readIndex !== undefined && node.appliedIndex >= op.readIndex) {
            this.complete(op, node.machine.value);
            continue;
          }
        } else {
          const result = node.machine.dedupe.lookup(op.requestId);
          if (result !== undefined) {
            this.complete(op, result);
            continue;
          }
        }
      }
      if (this.now >= op.deadline) {
        this.giveUp(op);
      } else if (this.now % 12 === op.call % 12 && this.now !== op.call) {
        // Client-side retry, same request id, possibly another node: dedupe makes it safe.
        const alive = this.up();
        if (alive.length > 0 && (node === null || node === undefined || this.chance(0.5))) op.target = this.pick(alive).id;
        this.submit(op);
      }
    }
  }

  private complete(op: ClientOp, output: string | null): void {
    for (const node of this.nodes.values()) if (node !== null) node.readStates = node.readStates.filter((r) => r.requestCtx !== op.requestId);
    this.clients.complete(op, this.now, output);
    this.trace(`client ${op.client} ${op.requestId} done: ${String(output)}`);
  }

  private giveUp(op: ClientOp): void {
    this.clients.giveUp(op);
    this.trace(`client ${op.client} ${op.requestId} timed out`);
  }

  // ---- main loop -------------------------------------------------------------------------------

  private tickAll(): void {
    for (const node of this.up()) {
      node.raw.tick();
      this.process(node);
    }
  }

  private step(faulty: boolean): void {
    this.now++;
    if (faulty && this.chance(this.options.faultRate)) this.injectFault();
    this.tickAll();
    this.deliverDue();
    if (faulty) {
      for (let client = 0; client < this.options.clients; client++) {
        if (!this.clients.pending.has(client) && this.chance(0.3)) this.startOp(client);
      }
    }
    this.pollClients();
  }

  private heal(): void {
    this.cut.clear();
    for (const id of this.ids) if (this.nodes.get(id) === null) this.restart(id);
    this.trace('heal: network whole, every node up');
  }

  private leader(): SimNode | undefined {
    let found: SimNode | undefined;
    for (const node of this.up()) {
      const status = node.raw.basicStatus();
      if (status.role === 'leader' && (found === undefined || status.term > found.raw.basicStatus().term)) found = node;
    }
    return found;
  }

  run(checkLinearizability = true): SimResult {
    for (let t = 0; t < this.options.faultTicks; t++) this.step(true);
    this.heal();
    // Acknowledged writes are committed, so every index up to maxCommitted must reach every node.
    const target = this.maxCommitted;
    let settledAt = -1;
    for (let t = 0; t < this.options.healTicks; t++) {
      this.step(false);
      const leader = this.leader();
      if (leader === undefined || this.clients.pending.size > 0) continue;
      // Nodes removed from the cluster are not expected to keep up.
      const { voters, learners } = leader.raw.status().confState;
      const members = this.up().filter((n) => voters.includes(n.id) || learners.includes(n.id));
      const goal = Math.max(target, leader.raw.basicStatus().commit);
      if (members.every((n) => n.appliedIndex >= goal)) {
        settledAt = t;
        break;
      }
    }
    if (settledAt < 0) {
      const states = this.up()
        .map((n) => {
          const s = n.raw.basicStatus();
          return `${n.id}:${s.role}@${s.term} commit ${s.commit} applied ${n.appliedIndex}`;
        })
        .join(', ');
      this.fail(`no convergence within ${this.options.healTicks} ticks after healing (target ${target}; ${states}; pending ${this.clients.pending.size})`);
    }
    for (const op of [...this.clients.pending.values()]) this.giveUp(op);
    if (checkLinearizability) {
      const result = checkLinearizable(this.clients.history);
      if (!result.ok) this.fail(`history is not linearizable${result.exhausted === true ? ' (search exhausted)' : ''}: ${JSON.stringify(this.clients.history)}`);
    }
    return {
      seed: this.seed,
      ticks: this.now,
      committed: this.maxCommitted,
      acknowledged: this.clients.acknowledged.size,
      timedOut: this.clients.timedOut,
      reads: this.clients.reads,
      elections: this.elections,
      crashes: this.crashes,
      messagesDelivered: this.delivered,
      membershipChanges: this.membershipEvents,
      history: this.clients.history,
      trace: this.traceLines,
    };
  }
}

export function runSeed(seed: number, options: SimOptions = {}): SimResult {
  return new Simulator(seed, options).run(options.checkLinearizability ?? true);
}
