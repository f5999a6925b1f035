// DataPlane.apply: a new config swaps in a new table; pools and routes that did not change are carried over, not rebuilt.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import { validateReplicated } from '../../src/config/validate.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { DataPlane } from '../../src/proxy/data-plane.js';

function config(webWeight: number, apiPrefix = '/api'): ReplicatedConfig {
  const result = validateReplicated({
    routes: [{ match: { pathPrefix: apiPrefix }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
    pools: {
      web: { backends: [{ url: 'http://127.0.0.1:9001', id: 'a', weight: webWeight }, { url: 'http://127.0.0.1:9002', id: 'b' }] },
      api: { backends: [{ url: 'http://127.0.0.1:9003', id: 'c' }] },
    },
  });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

const request = (path: string) => ({ host: 'x', path, query: '', method: 'GET', headers: {}, listener: 'default' });

describe('DataPlane.apply', () => {
  it('rebuilds what changed and carries over the pools and routes that did not', () => {
    const dataPlane = new DataPlane({ clock: new FakeClock(), random: seededRandom(1), metrics: noopMetrics, logger: memoryLogger('warn') });
    try {
      dataPlane.apply(1, config(1));
      const before = dataPlane.table;
      dataPlane.apply(2, config(3));
      const after = dataPlane.table;
      expect(after.version).toBe(2);
      expect(after.pools.get('api')).toBe(before.pools.get('api'));
      expect(after.pools.get('web')).not.toBe(before.pools.get('web'));
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
});
