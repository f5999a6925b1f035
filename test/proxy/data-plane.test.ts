// DataPlane.apply: a new config swaps in a new table; pools and routes that did not change are carried over, not rebuilt.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolRuntime } from '../../src/balancer/pool.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import { validateReplicated } from '../../src/config/validate.js';
import { isBalancerError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { DataPlane } from '../../src/proxy/data-plane.js';

/** Two pools behind two routes; `webCa` is the web pool's tls.ca file (its backends are https then). */
function config(webWeight: number, apiPrefix = '/api', webCa: string | null = null): ReplicatedConfig {
  const scheme = webCa === null ? 'http' : 'https';
  const result = validateReplicated({
    routes: [{ match: { pathPrefix: apiPrefix }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
    pools: {
      web: {
        backends: [{ url: `${scheme}://127.0.0.1:9001`, id: 'a', weight: webWeight }, { url: `${scheme}://127.0.0.1:9002`, id: 'b' }],
        ...(webCa === null ? {} : { tls: { ca: webCa } }),
      },
      api: { backends: [{ url: 'http://127.0.0.1:9003', id: 'c' }] },
    },
  });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

function localDataPlane(): DataPlane {
  return new DataPlane({ clock: new FakeClock(), random: seededRandom(1), metrics: noopMetrics, logger: memoryLogger('warn') }, PoolRuntime.create);
}

const request = (path: string) => ({ host: 'x', path, query: '', method: 'GET', headers: {}, listener: 'default' });

describe('DataPlane.apply', () => {
  it('rebuilds what changed and carries over the pools and routes that did not', () => {
    const dataPlane = localDataPlane();
    try {
      dataPlane.apply(1, config(1));
      const before = dataPlane.table;
      dataPlane.apply(2, config(3));
      const after = dataPlane.table;
      expect(after.version).toBe(2);
      expect(after.pools.get('api')).toBe(before.pools.get('api'));
      // A weight edit is taken in place by the running pool (see the in-place tests below).
      expect(after.pools.get('web')).toBe(before.pools.get('web'));
      expect(after.pools.get('web')!.pool.get('a')!.config.weight).toBe(3);
      // The carried pool still serves: it was not stopped with the rest of the old table.
      expect(after.pools.get('api')!.pool.pick()?.id).toBe('c');
      // Equal routes (another object, same meaning) keep their compiled matchers.
      expect(after.routes).toBe(before.routes);
      // An identical config rebuilds nothing.
      dataPlane.apply(3, config(3));
      expect(dataPlane.table.pools.get('web')).toBe(after.pools.get('web'));
      // Changed routes are compiled again and route by their new matchers.
      dataPlane.apply(4, config(3, '/v2'));
      expect(dataPlane.table.routes).not.toBe(after.routes);
      expect(dataPlane.route(request('/v2/x'))?.entry?.pool.name).toBe('api');
      expect(dataPlane.route(request('/api/x'))?.entry?.pool.name).toBe('web');
    } finally {
      dataPlane.stop();
    }
  });

  it('reads a pool\'s TLS files when it builds the pool, again only when told they changed, and names those pools to listeners', () => {
    const dir = mkdtempSync(join(tmpdir(), 'balancer-data-plane-'));
    const ca = join(dir, 'ca.pem');
    const dataPlane = localDataPlane();
    try {
      const told: string[][] = [];
      dataPlane.onApplied((_version, _config, tlsReloaded) => told.push([...tlsReloaded]));
      writeFileSync(ca, 'first CA');
      dataPlane.apply(1, config(1, '/api', ca));
      const first = dataPlane.table.pools.get('web')!;
      expect(first.pool.tls.ca).toBe('first CA');
      writeFileSync(ca, 'second CA');
      // The same config: the pool is carried over with what it read.
      dataPlane.apply(2, config(1, '/api', ca));
      expect(dataPlane.table.pools.get('web')).toBe(first);
      // Its files changed (the file watcher, or a worker's primary, says so): rebuilt with what they hold now.
      dataPlane.apply(3, config(1, '/api', ca), new Set(['web']));
      const reloaded = dataPlane.table.pools.get('web')!;
      expect(reloaded).not.toBe(first);
      expect(reloaded.pool.tls.ca).toBe('second CA');
      expect(reloaded.upstreams.get('a')).not.toBe(first.upstreams.get('a'));
      expect(dataPlane.table.pools.get('api')).toBeDefined();
      expect(told).toEqual([[], [], ['web']]);
    } finally {
      dataPlane.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a rebuilt pool keeps the connection pools of its unchanged backends, and makes new ones where a connection setting differs', () => {
    const web = (settings: Record<string, unknown>, weightOfB = 1): ReplicatedConfig => {
      const result = validateReplicated({
        routes: [],
        pools: {
          web: {
            backends: [{ url: 'https://127.0.0.1:9001', id: 'a' }, { url: 'https://127.0.0.1:9002', id: 'b', weight: weightOfB }, { url: 'https://127.0.0.1:9003', id: 'c' }],
            ...settings,
          },
        },
      });
      if (!result.ok) throw new Error(JSON.stringify(result.problems));
      return result.config;
    };
    const withAddresses = (config: ReplicatedConfig, id: string, addresses: string[]): ReplicatedConfig => {
      const pool = config.pools['web']!;
      return { ...config, pools: { web: { ...pool, backends: pool.backends.map((backend) => (backend.id === id ? { ...backend, addresses } : backend)) } } };
    };
    const upstreams = (dataPlane: DataPlane) => dataPlane.table.pools.get('web')!.upstreams;
    const dataPlane = localDataPlane();
    try {
      dataPlane.apply(1, web({}));
      const first = upstreams(dataPlane);
      // A weight is no connection setting: every backend keeps its connections.
      dataPlane.apply(2, web({}, 5));
      expect(dataPlane.table.pools.get('web')!.pool.get('b')!.config.weight).toBe(5);
      for (const id of ['a', 'b', 'c']) expect(upstreams(dataPlane).get(id)).toBe(first.get(id));
      // Addresses DNS found for one backend: that backend connects anew, the others keep theirs.
      dataPlane.apply(3, withAddresses(web({}, 5), 'b', ['127.0.0.2']));
      expect(upstreams(dataPlane).get('b')).not.toBe(first.get('b'));
      expect(upstreams(dataPlane).get('b')!.key).toContain('127.0.0.2');
      expect(upstreams(dataPlane).get('a')).toBe(first.get('a'));
      const withB = upstreams(dataPlane);
      // Pool-wide settings the connections are made with: every backend connects anew.
      for (const [version, settings, inKey] of [
        [4, { tls: { serverName: 'web.internal' } }, 'web.internal'],
        [5, { timeouts: { connect: '7s' } }, '7000'],
        [6, { protocol: 'h2' }, '|h2|'],
        [7, { connections: { max: 3 } }, '|3'],
      ] as const) {
        const before = upstreams(dataPlane);
        dataPlane.apply(version, web(settings));
        for (const id of ['a', 'b', 'c']) {
          expect(upstreams(dataPlane).get(id)).not.toBe(before.get(id));
          expect(upstreams(dataPlane).get(id)!.key).toContain(inKey);
        }
      }
      expect(withB.get('a')!.serverName).toBe('127.0.0.1');
    } finally {
      dataPlane.stop();
    }
  });

  it('fails with CONFIG_IO when a pool it builds has a tls.ca that cannot be read, and keeps the running table', () => {
    const dataPlane = localDataPlane();
    try {
      dataPlane.apply(1, config(1));
      const running = dataPlane.table;
      let caught: unknown;
      try {
        dataPlane.apply(2, config(1, '/api', '/nonexistent/ca.pem'));
      } catch (error) {
        caught = error;
      }
      expect(isBalancerError(caught, 'CONFIG_IO')).toBe(true);
      expect((caught as Error).message).toContain('/nonexistent/ca.pem');
      expect(dataPlane.table).toBe(running);
    } finally {
      dataPlane.stop();
    }
  });

  it('takes a weight, drain or backup edit of a large pool in place: no pool built, no connection pool or metric series walked', () => {
    const backends = Array.from({ length: 1000 }, (_, i) => ({ url: `http://127.0.0.${1 + (i % 200)}:${9000 + i}`, id: `b${i}` }));
    const first = validateReplicated({ routes: [{ match: { pathPrefix: '/api' }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }], pools: { web: { backends }, api: { backends: [{ url: 'http://127.0.0.1:9003', id: 'c' }] } } });
    if (!first.ok) throw new Error(JSON.stringify(first.problems));
    // What the config reducer makes of a backend edit: the pool and the edited backend are new objects, the rest are kept.
    const edit = (config: ReplicatedConfig, index: number, patch: Record<string, unknown>): ReplicatedConfig => {
      const pool = config.pools['web']!;
      const edited = [...pool.backends];
      edited[index] = { ...edited[index]!, ...patch };
      return { routes: config.routes, pools: { ...config.pools, web: { ...pool, backends: edited } } };
    };
    let builds = 0;
    let retains = 0;
    const dataPlane = new DataPlane(
      { clock: new FakeClock(), random: seededRandom(1), metrics: { ...noopMetrics, retain: () => retains++ }, logger: memoryLogger('warn') },
      (poolConfig, previous, deps, tls) => {
        builds++;
        return PoolRuntime.create(poolConfig, previous, deps, tls);
      },
    );
    try {
      dataPlane.apply(1, first.config);
      expect([builds, retains]).toEqual([2, 1]);
      const web = dataPlane.table.pools.get('web')!;
      const heavier = edit(first.config, 500, { weight: 7 });
      dataPlane.apply(2, heavier);
      expect([builds, retains]).toEqual([2, 1]);
      expect(dataPlane.table.version).toBe(2);
      expect(dataPlane.table.config).toBe(heavier);
      expect(dataPlane.table.pools.get('web')).toBe(web);
      expect(web.pool.config).toBe(heavier.pools['web']);
      expect(web.pool.get('b500')!.config.weight).toBe(7);
      const drained = edit(heavier, 500, { drain: true });
      dataPlane.apply(3, drained);
      expect(builds).toBe(2);
      expect(web.pool.get('b500')!.state).toBe('draining');
      expect(web.pool.status().backends[500]).toMatchObject({ id: 'b500', weight: 7, state: 'draining' });
      const picked = new Set(Array.from({ length: 2000 }, () => web.pool.pick()!.id));
      expect(picked.has('b500')).toBe(false);
      expect(picked.size).toBe(999);
      // Anything else is a rebuild of that pool only, and the data plane drops what no pool uses any more.
      dataPlane.apply(4, edit(drained, 3, { url: 'http://127.0.0.1:1' }));
      expect([builds, retains]).toEqual([3, 2]);
      expect(dataPlane.table.pools.get('web')).not.toBe(web);
      expect(dataPlane.table.pools.get('web')!.pool.get('b500')!.state).toBe('draining');
    } finally {
      dataPlane.stop();
    }
  });

  it('takes an in-place edit only when the whole new table swaps in: a pool that fails to build leaves it as it was', () => {
    const dataPlane = localDataPlane();
    try {
      dataPlane.apply(1, config(1));
      const running = dataPlane.table;
      // A weight edit of web beside a new pool whose tls.ca cannot be read: the whole apply fails.
      const base = config(1);
      const web = base.pools['web']!;
      const api = base.pools['api']!;
      const heavier: ReplicatedConfig = {
        routes: base.routes,
        pools: { ...base.pools, web: { ...web, backends: [{ ...web.backends[0]!, weight: 9 }, web.backends[1]!] }, bad: { ...api, name: 'bad', tls: { ...api.tls, ca: '/nonexistent/ca.pem' } } },
      };
      expect(() => dataPlane.apply(3, heavier)).toThrow('/nonexistent/ca.pem');
      expect(dataPlane.table).toBe(running);
      expect(running.pools.get('web')!.pool.get('a')!.config.weight).toBe(1);
      expect(running.pools.get('web')!.pool.config).toBe(running.config.pools['web']);
    } finally {
      dataPlane.stop();
    }
  });
});
