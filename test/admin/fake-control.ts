// An in-memory ControlPlane for admin API, CLI, dashboard and Prometheus tests; its status is mutable on purpose.

import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type {
  BackendInput,
  BackendPatch,
  BackendStatus,
  ClusterStatus,
  ControlPlane,
  NodeStatus,
  PoolStatusView,
  WriteOptions,
} from '../../src/control/types.js';
import type { PlainObject, PlainReplicated } from '../../src/config/plain.js';
import { BalancerError } from '../../src/errors.js';
import { Readiness } from '../../src/control/readiness.js';
import type { HistoryEntry } from '../../src/control/history.js';

export interface FakeControl extends ControlPlane {
  pools: PoolStatusView[];
  clusterState: ClusterStatus;
  version: number;
  isReady: boolean;
  /** When set, every write rejects with it. */
  failWrites: BalancerError | Error | null;
  historyEntries: HistoryEntry[];
  calls: { method: string; args: unknown[] }[];
  /** The options of every addBackend and updateBackend call, in order. */
  backendWriteOptions: (WriteOptions | undefined)[];
  setBackend(pool: string, id: string, change: Partial<BackendStatus>): void;
}

function backend(id: string, url: string, weight: number): BackendStatus {
  return { id, url, weight, effectiveWeight: weight, state: 'up', inflight: 0, latencyEwmaMs: 10, latencyMeasured: false, consecutiveFailures: 0, ejections: 0, reason: '' };
}

export function createFakeControl(): FakeControl {
  const readiness = new Readiness();
  readiness.add('fake', () => (fake.isReady ? null : 'the test said so'));
  const fake: FakeControl = {
    version: 3,
    isReady: true,
    failWrites: null,
    historyEntries: [
      {
        version: 3,
        requestId: 'req-3',
        change: 'add backend web/web-2',
        at: '2026-11-30T01:02:03.000Z',
        source: { kind: 'cli', node: 'n2' },
        config: { routes: [], pools: { web: { backends: [{ url: 'http://10.0.0.1:80', id: 'web-1' }, { url: 'http://10.0.0.2:80', id: 'web-2' }] } } },
      },
      {
        version: 2,
        requestId: 'req-2',
        change: 'set config',
        at: '2026-11-30T01:00:00.000Z',
        source: { kind: 'file', node: 'n1', file: '/etc/balancer/balancer.yaml' },
        clientRequestId: 'deploy-42',
        config: { routes: [], pools: { web: { backends: [{ url: 'http://10.0.0.1:80', id: 'web-1' }] } } },
      },
    ],
    calls: [],
    backendWriteOptions: [],
    pools: [
      {
        name: 'web',
        strategy: 'weighted',
        panic: false,
        backends: [backend('web-1', 'http://127.0.0.1:9001', 3), backend('web-2', 'http://127.0.0.1:9002', 1)],
      },
      { name: 'api', strategy: 'least-request', panic: false, backends: [backend('api-1', 'http://127.0.0.1:9101', 1)] },
    ],
    clusterState: {
      nodeId: 'n1',
      role: 'leader',
      membership: 'member',
      term: 5,
      leader: 'n1',
      commitIndex: 42,
      appliedIndex: 42,
      members: [
        { id: 'n1', address: '127.0.0.1:7001', voter: true, matchIndex: 42, reachable: true },
        { id: 'n2', address: '127.0.0.1:7002', voter: true, matchIndex: 41, reachable: true },
        { id: 'n3', address: '127.0.0.1:7003', voter: true, matchIndex: 12, reachable: false },
      ],
    },
    setBackend(pool, id, change) {
      fake.pools = fake.pools.map((p) =>
        p.name !== pool ? p : { ...p, backends: p.backends.map((b) => (b.id === id ? { ...b, ...change } : b)) },
      );
    },
    status(): NodeStatus {
      const notReady = fake.readiness.notReady();
      return { node: 'n1', version: fake.version, ready: notReady.length === 0, notReady, pools: fake.pools, cluster: fake.clusterState };
    },
    readiness,
    async getConfig(): Promise<{ version: number; config: PlainReplicated }> {
      fake.calls.push({ method: 'getConfig', args: [] });
      const pools: Record<string, PlainObject> = {};
      for (const p of fake.pools) {
        pools[p.name] = { strategy: p.strategy, backends: p.backends.map((b) => ({ id: b.id, url: b.url, weight: b.weight })) };
      }
      return { version: fake.version, config: { routes: [{ match: { pathPrefix: '/' }, pool: 'web' }], pools } };
    },
    async putConfig(body, options) {
      fake.calls.push({ method: 'putConfig', args: [body, options] });
      if (fake.failWrites !== null) throw fake.failWrites;
      if (options.ifMatch !== undefined && options.ifMatch !== fake.version) {
        throw new BalancerError('VERSION_MISMATCH', `config version is ${fake.version}, not ${options.ifMatch}`);
      }
      fake.version += 1;
      return { version: fake.version, requestId: `req-${fake.version}` };
    },
    async addBackend(pool: string, input: BackendInput, options?: WriteOptions) {
      fake.calls.push({ method: 'addBackend', args: [pool, input] });
      fake.backendWriteOptions.push(options);
      if (fake.failWrites !== null) throw fake.failWrites;
      const target = fake.pools.find((p) => p.name === pool);
      if (target === undefined) throw new BalancerError('NOT_FOUND', `no pool named ${pool}`);
      const id = input.id ?? new URL(input.url).host;
      if (target.backends.some((b) => b.id === id)) throw new BalancerError('CONFLICT', `pool ${pool} already has a backend ${id}`);
      const added = backend(id, input.url, input.weight ?? 1);
      fake.pools = fake.pools.map((p) => (p.name === pool ? { ...p, backends: [...p.backends, added] } : p));
      fake.version += 1;
      return { version: fake.version, requestId: `req-${fake.version}`, backend: { id, url: input.url, weight: added.weight } };
    },
    async updateBackend(pool: string, id: string, patch: BackendPatch, options?: WriteOptions) {
      fake.calls.push({ method: 'updateBackend', args: [pool, id, patch] });
      fake.backendWriteOptions.push(options);
      if (fake.failWrites !== null) throw fake.failWrites;
      const target = fake.pools.find((p) => p.name === pool)?.backends.find((b) => b.id === id);
      if (target === undefined) throw new BalancerError('NOT_FOUND', `no backend ${id} in pool ${pool}`);
      fake.setBackend(pool, id, {
        ...(patch.weight === undefined ? {} : { weight: patch.weight, effectiveWeight: patch.weight }),
        ...(patch.drain === true ? { state: 'draining' as const } : {}),
      });
      fake.version += 1;
      return { version: fake.version, requestId: `req-${fake.version}` };
    },
    async removeBackend(pool: string, id: string, options?: WriteOptions) {
      fake.calls.push({ method: 'removeBackend', args: [pool, id, options] });
      if (fake.failWrites !== null) throw fake.failWrites;
      const target = fake.pools.find((p) => p.name === pool)?.backends.find((b) => b.id === id);
      if (target === undefined) throw new BalancerError('NOT_FOUND', `no backend ${id} in pool ${pool}`);
      fake.pools = fake.pools.map((p) => (p.name === pool ? { ...p, backends: p.backends.filter((b) => b.id !== id) } : p));
      fake.version += 1;
      return { version: fake.version, requestId: `req-${fake.version}` };
    },
    history: () => fake.historyEntries,
    async rollback(version: number, options) {
      fake.calls.push({ method: 'rollback', args: [version, options] });
      if (fake.failWrites !== null) throw fake.failWrites;
      const target = fake.historyEntries.find((entry) => entry.version === version);
      if (target === undefined) throw new BalancerError('NOT_FOUND', `version ${version} is not in the config history`);
      fake.version += 1;
      return { version: fake.version, requestId: `rollback-${fake.version}` };
    },
    cluster: () => fake.clusterState,
    async addMember(id: string, address: string, learner: boolean) {
      fake.calls.push({ method: 'addMember', args: [id, address, learner] });
      if (fake.failWrites !== null) throw fake.failWrites;
      fake.clusterState = {
        ...fake.clusterState,
        members: [...fake.clusterState.members, { id, address, voter: !learner, matchIndex: 0, reachable: null }],
      };
      return fake.clusterState;
    },
    async removeMember(id: string) {
      fake.calls.push({ method: 'removeMember', args: [id] });
      if (fake.failWrites !== null) throw fake.failWrites;
      if (!fake.clusterState.members.some((m) => m.id === id)) throw new BalancerError('NOT_FOUND', `no member ${id}`);
      fake.clusterState = { ...fake.clusterState, members: fake.clusterState.members.filter((m) => m.id !== id) };
      return fake.clusterState;
    },
    async transferLeader(id: string) {
      fake.calls.push({ method: 'transferLeader', args: [id] });
      if (fake.failWrites !== null) throw fake.failWrites;
      fake.clusterState = { ...fake.clusterState, leader: id, role: id === fake.clusterState.nodeId ? 'leader' : 'follower' };
      return fake.clusterState;
    },
  };
  return fake;
}

/** Listens on an ephemeral loopback port and returns the base URL. */
export async function listenLocal(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
