// A worker's data plane is the primary's DataPlane with pools that follow the primary: it carries over what did not change.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import { validateReplicated } from '../../src/config/validate.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { DataPlane } from '../../src/proxy/data-plane.js';
import type { RequestOutcome } from '../../src/proxy/forward-types.js';
import { PrimaryFedPools, inflightByBackend, type RemotePool } from '../../src/workers/primary-fed-pools.js';

function config(webWeight: number, apiPrefix = '/api'): ReplicatedConfig {
  const result = validateReplicated({
    routes: [{ match: { pathPrefix: apiPrefix }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
    pools: {
      web: {
        retryBudget: { percent: 0, minConcurrent: 1 },
        backends: [{ url: 'http://127.0.0.1:9001', id: 'a', weight: webWeight }, { url: 'http://127.0.0.1:9002', id: 'b' }],
      },
      api: { backends: [{ url: 'http://127.0.0.1:9003', id: 'c' }] },
    },
  });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

const request = (path: string) => ({ host: 'x', path, query: '', method: 'GET', headers: {}, listener: 'default' });

/** A worker's data plane as worker-main builds it, with the outcomes it would report to the primary. */
function workerDataPlane(): { dataPlane: DataPlane<RemotePool>; pools: PrimaryFedPools; reported: Array<[string, string, RequestOutcome]> } {
  const reported: Array<[string, string, RequestOutcome]> = [];
  const pools = new PrimaryFedPools((pool, backend, outcome) => reported.push([pool, backend, outcome]));
  const deps = { clock: new FakeClock(), random: seededRandom(1), metrics: noopMetrics, logger: memoryLogger('warn'), fedByPrimary: true };
  return { dataPlane: new DataPlane(deps, pools.build), pools, reported };
}

describe("a worker's data plane", () => {
  it('carries over the pools and routes a config change left alone, and what the changed pool was doing', () => {
    const { dataPlane, pools } = workerDataPlane();
    try {
      dataPlane.apply(1, config(1));
      const before = dataPlane.table;
      const web = before.pools.get('web')!.pool;
      const running = web.pick()!;
      running.requestStarted();
      expect(web.tryStartRetry()).toBe(true);
      pools.applyHealth(dataPlane.table, { api: { retryAfterSeconds: 7, backends: { c: { available: false, effectiveWeight: 1 } } } });

      dataPlane.apply(2, config(3));
      const after = dataPlane.table;
      expect(after.version).toBe(2);
      // The unchanged pool is the same object, with the health the primary sent; the routes keep their compiled matchers.
      expect(after.pools.get('api')).toBe(before.pools.get('api'));
      expect(after.pools.get('api')!.pool.retryAfterSeconds()).toBe(7);
      expect(after.routes).toBe(before.routes);
      // A weight edit is taken in place by the running pool (see below), which keeps the request in flight and the retry
      // running (its budget allows one).
      const rebuilt = after.pools.get('web')!.pool;
      expect(rebuilt).toBe(web);
      expect(rebuilt.backends.find((backend) => backend.id === 'a')!.weight).toBe(3);
      expect(inflightByBackend(after)['web']![running.id]).toBe(1);
      expect(rebuilt.tryStartRetry()).toBe(false);
      rebuilt.finishRetry();
      expect(rebuilt.tryStartRetry()).toBe(true);

      dataPlane.apply(3, config(3, '/v2'));
      expect(dataPlane.table.routes).not.toBe(after.routes);
      expect(dataPlane.route(request('/v2/x'))?.entry?.pool.name).toBe('api');
    } finally {
      dataPlane.stop();
    }
  });

  it('takes availability from the primary, for pools built after the snapshot too, and reports outcomes to it', () => {
    const { dataPlane, pools, reported } = workerDataPlane();
    try {
      dataPlane.apply(1, config(1));
      pools.applyHealth(dataPlane.table, {
        web: { retryAfterSeconds: 3, backends: { a: { available: false, effectiveWeight: 0 }, b: { available: true, effectiveWeight: 1 } } },
      });
      dataPlane.apply(2, config(2));
      const web = dataPlane.table.pools.get('web')!.pool;
      expect(web.retryAfterSeconds()).toBe(3);
      for (let i = 0; i < 10; i++) expect(web.pick()!.id).toBe('b');
      const backend = web.pick()!;
      backend.requestStarted();
      backend.requestFinished('http-5xx', 12);
      expect(reported).toEqual([['web', 'b', 'http-5xx']]);
      // A worker neither resolves DNS nor has a discovery view: the primary does.
      expect(dataPlane.discoveryStatus('web')).toBeNull();
    } finally {
      dataPlane.stop();
    }
  });

  it('takes a weight, drain or backup edit in place as a rebuilt pool would have it: no pool built, the snapshot\'s health kept, hash tables from the new weights', () => {
    const ring = (weights: readonly number[], drained: readonly boolean[] = []): ReplicatedConfig => {
      const result = validateReplicated({
        routes: [],
        pools: { web: { strategy: 'ring-hash', hashOn: { header: 'x-user' }, backends: weights.map((weight, i) => ({ url: `http://127.0.0.1:${9100 + i}`, id: `n${i}`, weight, drain: drained[i] === true })) } },
      });
      if (!result.ok) throw new Error(JSON.stringify(result.problems));
      return result.config;
    };
    const { pools } = workerDataPlane();
    let builds = 0;
    const deps = { clock: new FakeClock(), random: seededRandom(1), metrics: noopMetrics, logger: memoryLogger('warn'), fedByPrimary: true };
    const dataPlane = new DataPlane<RemotePool>(deps, (poolConfig, previous, poolDeps, tls) => {
      builds++;
      return pools.build(poolConfig, previous, poolDeps, tls);
    });
    try {
      const first = ring([1, 1, 1, 1, 1, 1]);
      dataPlane.apply(1, first);
      const web = dataPlane.table.pools.get('web')!.pool;
      // Its hash table is built from the first weights.
      expect(web.pick(undefined, { hashKey: 12345 })).toBeDefined();
      pools.applyHealth(dataPlane.table, { web: { retryAfterSeconds: 2, backends: { n1: { available: false, effectiveWeight: 0 }, n4: { available: true, effectiveWeight: 0.5 } } } });
      const edited = ring([4, 1, 1, 1, 2, 1], [false, false, true]);
      dataPlane.apply(2, edited);
      expect(builds).toBe(1);
      expect(dataPlane.table.pools.get('web')!.pool).toBe(web);
      expect(web.config).toBe(edited.pools['web']);
      // What a pool built now from the edited config, with the primary's last snapshot, would hold.
      const fresh = pools.build(edited.pools['web']!, undefined, deps, web.tls);
      const view = (pool: RemotePool) => pool.backends.map(({ id, weight, available, effectiveWeight }) => ({ id, weight, available, effectiveWeight }));
      expect(view(web)).toEqual(view(fresh));
      expect(view(web)[2]).toMatchObject({ id: 'n2', available: false });
      const keys = Array.from({ length: 2000 }, (_, n) => Math.imul(n + 1, 0x9e3779b1) >>> 0);
      expect(keys.map((key) => web.pick(undefined, { hashKey: key })?.id)).toEqual(keys.map((key) => fresh.pick(undefined, { hashKey: key })?.id));
    } finally {
      dataPlane.stop();
    }
  });
});
