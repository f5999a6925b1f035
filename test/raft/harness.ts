// A synchronous test network for the Raft core: every node driven by the Ready contract, messages
// delivered in FIFO order, with filters to drop, cut and isolate; like etcd's raft_test network.

import { seededRandom } from '../../src/clock.js';
import { decodeConfChange, type RaftConfig } from '../../src/raft/core/raft.js';
import { RawNode } from '../../src/raft/core/raw-node.js';
import { MemoryStorage } from '../../src/raft/core/storage.js';
import type { ConfState, Entry, Message, NodeId, Ready, ReadState } from '../../src/raft/core/types.js';

export type NodeOverrides = Partial<Omit<RaftConfig, 'id' | 'random'>>;

export interface TestNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  raw: RawNode;
  applied: Entry[];
  readStates: ReadState[];
  confState: ConfState;
  readies: Ready[];
}

export function entry(index: number, term: number, data = `e${index}`): Entry {
  return { index, term, type: 'normal', data };
}

/** A storage holding `terms[i]` as the term of entry i+1, with the given membership. */
export function storageWithLog(terms: readonly number[], voters: readonly NodeId[], hardTerm?: number): MemoryStorage {
  const storage = new MemoryStorage();
  storage.setConfState({ voters, learners: [] });
  storage.append(terms.map((term, i) => entry(i + 1, term)));
  const lastTerm = terms.length === 0 ? 0 : terms[terms.length - 1]!;
  storage.setHardState({ term: hardTerm ?? lastTerm, vote: null, commit: 0 });
  return storage;
}

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Every message that was sent (delivered or not), in order. */
  readonly sent: Message[] = [];
  private readonly queue: Message[] = [];
  private readonly cutLinks = new Set<string>();
  private dropFilter: ((m: Message) => boolean) | undefined;
  private seed = 1;
  readonly overrides: NodeOverrides;

  constructor(overrides: NodeOverrides = {}) {
    this.overrides = overrides;
  }

  /** A fresh cluster of voters `ids` (plus learners), bootstrapped identically. */
  static cluster(ids: readonly NodeId[], overrides: NodeOverrides = {}, learners: readonly NodeId[] = []): Network {
    const net = new Network(overrides);
    for (const id of [...ids, ...learners]) net.add(id, new MemoryStorage(), { voters: ids, learners });
    return net;
  }

  /** Nodes with hand-built storages (membership in the storage). */
  static fromStorages(storages: Readonly<Record<NodeId, MemoryStorage>>, overrides: NodeOverrides = {}): Network {
    const net = new Network(overrides);
    for (const [id, storage] of Object.entries(storages)) net.add(id, storage, {});
    return net;
  }

  add(id: NodeId, storage: MemoryStorage, extra: NodeOverrides): TestNode {
    const raw = new RawNode({ id, random: seededRandom(this.seed++ * 7 + 3), ...this.overrides, ...extra }, storage);
    const node: TestNode = { id, storage, raw, applied: [], readStates: [], confState: raw.status().confState, readies: [] };
    this.nodes.set(id, node);
    this.drain(node);
    return node;
  }

  node(id: NodeId): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  raw(id: NodeId): RawNode {
    return this.node(id).raw;
  }

  /** Carries out every Ready of a node; messages go to the queue. */
  drain(node: TestNode): void {
    for (let i = 0; i < 1000 && node.raw.hasReady(); i++) {
      const ready = node.raw.ready();
      node.readies.push(ready);
      if (ready.snapshot !== undefined) {
        node.storage.applySnapshot(ready.snapshot);
        node.confState = ready.snapshot.metadata.confState;
      }
      node.storage.append(ready.entries);
      if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
      for (const m of ready.messages) {
        this.sent.push(m);
        this.queue.push(m);
      }
      for (const e of ready.committedEntries) {
        node.applied.push(e);
        if (e.type === 'conf-change') node.confState = node.raw.applyConfChange(decodeConfChange(e.data));
      }
      node.readStates.push(...ready.readStates);
      node.raw.advance();
    }
  }

  private deliverable(m: Message): boolean {
    if (this.cutLinks.has(`${m.from}>${m.to}`)) return false;
    if (this.dropFilter?.(m) === true) return false;
    return this.nodes.has(m.to);
  }

  /** Delivers queued messages (and whatever they cause) until the network is quiet. */
  deliverAll(limit = 100_000): void {
    for (let i = 0; i < limit; i++) {
      const m = this.queue.shift();
      if (m === undefined) return;
      if (!this.deliverable(m)) continue;
      const node = this.node(m.to);
      node.raw.step(m);
      this.drain(node);
    }
    throw new Error('network did not quiesce');
  }

  /** Takes the queued messages out without delivering them (for scripted delivery). */
  takeQueued(): Message[] {
    return this.queue.splice(0, this.queue.length);
  }

  /** Injects a message as if it came from the network, then settles. */
  send(...messages: Message[]): void {
    this.queue.push(...messages);
    this.deliverAll();
  }

  tick(id: NodeId, times = 1): void {
    const node = this.node(id);
    for (let i = 0; i < times; i++) {
      node.raw.tick();
      this.drain(node);
    }
  }

  /** Ticks every node once and settles the network, `times` times. */
  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const node of this.nodes.values()) {
        node.raw.tick();
        this.drain(node);
      }
      this.deliverAll();
    }
  }

  campaign(id: NodeId): void {
    const node = this.node(id);
    node.raw.campaign();
    this.drain(node);
    this.deliverAll();
  }

  propose(id: NodeId, data: string, requestId?: string): void {
    const node = this.node(id);
    node.raw.propose(data, requestId);
    this.drain(node);
    this.deliverAll();
  }

  /** Drops every message between `id` and everyone else, both ways. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cutLinks.add(`${id}>${other}`);
      this.cutLinks.add(`${other}>${id}`);
    }
  }

  cut(from: NodeId, to: NodeId): void {
    this.cutLinks.add(`${from}>${to}`);
  }

  dropWhen(filter: ((m: Message) => boolean) | undefined): void {
    this.dropFilter = filter;
  }

  heal(): void {
    this.cutLinks.clear();
    this.dropFilter = undefined;
  }

  /** A crash: the RawNode and everything unpersisted vanish; storage survives. */
  restart(id: NodeId, overrides: NodeOverrides = {}): TestNode {
    const old = this.node(id);
    const applied = old.storage.snapshot().metadata.index;
    this.nodes.delete(id);
    const node = this.add(id, old.storage, { applied, ...overrides });
    return node;
  }

  remove(id: NodeId): void {
    this.nodes.delete(id);
  }

  leader(): TestNode | undefined {
    let best: TestNode | undefined;
    for (const node of this.nodes.values()) {
      const s = node.raw.status();
      if (s.role === 'leader' && (best === undefined || s.term > best.raw.status().term)) best = node;
    }
    return best;
  }

  /** The persisted log of a node. */
  log(id: NodeId): Entry[] {
    const storage = this.node(id).storage;
    return storage.entries(storage.firstIndex(), storage.lastIndex() + 1);
  }

  terms(id: NodeId): number[] {
    return this.log(id).map((e) => e.term);
  }

  appliedData(id: NodeId): string[] {
    return this.node(id).applied.filter((e) => e.type === 'normal').map((e) => e.data);
  }
}

/** Elects `id` in a fresh cluster with deterministic delivery and settles. */
export function electedCluster(ids: readonly NodeId[], leader: NodeId, overrides: NodeOverrides = {}): Network {
  const net = Network.cluster(ids, overrides);
  net.campaign(leader);
  if (net.raw(leader).status().role !== 'leader') throw new Error(`${leader} did not win`);
  return net;
}
