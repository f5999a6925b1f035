// The dashboard's per-second history: rates per pool, backend states, config markers, in rings that never grow.

import { describe, expect, it } from 'vitest';
import { MetricsHistory } from '../../src/admin/history.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createFakeControl } from './fake-control.js';

describe('MetricsHistory', () => {
  it('keeps per-second rates, 5xx ratio, p50/p99, states and config changes, and no more than its window', async () => {
    const control = createFakeControl();
    const metrics = createMetrics({ collectDefault: false });
    const history = new MetricsHistory({ render: () => metrics.render(), status: () => control.status() }, 5);
    const b = metrics.backend('web', 'web-1');
    let now = 1_000_000;
    await history.sample(now);
    for (let second = 1; second <= 12; second++) {
      for (let i = 0; i < 10; i++) b.requestFinished(i === 0 ? '5xx' : '2xx', 0.004);
      if (second === 8) control.setBackend('web', 'web-2', { state: 'down' });
      if (second === 10) control.version += 1;
      now += 1_000;
      await history.sample(now);
    }
    const snapshot = history.snapshot();
    expect(snapshot.at).toEqual([1_008_000, 1_009_000, 1_010_000, 1_011_000, 1_012_000]);
    const web = snapshot.pools.find((p) => p.name === 'web')!;
    expect(web.requestsPerSecond).toEqual([10, 10, 10, 10, 10]);
    for (const ratio of web.errorRatio) expect(ratio).toBeCloseTo(0.1, 10);
    for (const p99 of web.p99) expect(p99).toBeGreaterThan(0.0025);
    expect(web.backends.find((x) => x.id === 'web-2')?.states).toBe('ddddd');
    expect(web.backends.find((x) => x.id === 'web-1')?.states).toBe('uuuuu');
    // A pool without traffic has samples, with nothing to measure.
    expect(snapshot.pools.find((p) => p.name === 'api')!.p99).toEqual([null, null, null, null, null]);
    expect(snapshot.configChanges).toEqual([{ at: 1_010_000, version: control.version }]);
  });
});
