// DataPlane.apply: a new config swaps in a new table; pools whose config did not change are carried over, not rebuilt.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { DataPlane } from '../../src/proxy/data-plane.js';
import { backend, poolConfig } from '../balancer/pool-fixtures.js';

function config(webWeight: number): ReplicatedConfig {
  return {
    routes: [],
    pools: {
      web: poolConfig({ name: 'web', backends: [backend('a', { weight: webWeight }), backend('b')] }),
      api: poolConfig({ name: 'api', backends: [backend('c')] }),
    },
  };
}

describe('DataPlane.apply', () => {
  it('rebuilds the pool that changed and carries over the one that did not', () => {
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
      // An identical config rebuilds nothing.
      dataPlane.apply(3, config(3));
      expect(dataPlane.table.pools.get('web')).toBe(after.pools.get('web'));
    } finally {
      dataPlane.stop();
    }
  });
});
