// The dashboard's per-second history: rates per pool, backend states, config markers, in rings that never grow.

import { describe, expect, it } from 'vitest';
import { MetricsHistory } from '../../src/admin/history.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createFakeControl } from './fake-control.js';

describe('MetricsHistory', () => {
  it('keeps per-second rates, 5xx ratio, p50/p99, states and config changes, and no more than its window', async () => {
    const control = createFakeControl();
    const metrics = createMetrics({ collectDefault: false });
    const history = new MetricsHistory({ requestFamilies: () => metrics.renderRequestFamilies(), status: () => control.status(), changes: () => control.historyEntries }, 5);
    const b = metrics.backend('web', 'web-1');
    let now = 1_000_000;
    await history.sample(now);
    for (let second = 1; second <= 12; second++) {
      for (let i = 0; i < 10; i++) b.requestFinished(i === 0 ? '5xx' : '2xx', 0.004);
      if (second === 8) control.setBackend('web', 'web-2', { state: 'down' });
      if (second === 10) {
        control.version += 1;
        control.historyEntries = [{ ...control.historyEntries[0]!, version: control.version, change: 'remove backend web/web-2', source: { kind: 'api', node: 'n1' } }, ...control.historyEntries];
      }
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
    expect(snapshot.configChanges).toEqual([{ at: 1_010_000, version: control.version, source: { kind: 'api', node: 'n1' }, change: 'remove backend web/web-2' }]);
  });

  it('reads the counters directly when it is given them, and renders and parses no text', async () => {
    const control = createFakeControl();
    const metrics = createMetrics({ collectDefault: false });
    const textReads = { count: 0 };
    const fromText = new MetricsHistory({ requestFamilies: () => metrics.renderRequestFamilies(), status: () => control.status(), changes: () => control.historyEntries }, 5);
    const direct = new MetricsHistory(
      {
        requestFamilies: () => {
          textReads.count++;
          return metrics.renderRequestFamilies();
        },
        requestCounters: () => metrics.requestCounters(),
        status: () => control.status(),
        changes: () => control.historyEntries,
      },
      5,
    );
    const b = metrics.backend('web', 'web-1');
    let now = 1_000_000;
    for (let second = 0; second <= 6; second++) {
      for (let i = 0; i < 5 * second; i++) b.requestFinished(i % 4 === 0 ? '5xx' : '2xx', 0.001 * (i + 1), i % 2 === 0 ? 'api' : '');
      if (second === 3) metrics.pool('web').requestWithoutBackend('5xx');
      await fromText.sample(now);
      await direct.sample(now);
      now += 1_000;
    }
    expect(textReads.count).toBe(0);
    const snapshot = direct.snapshot();
    expect(snapshot).toEqual(fromText.snapshot());
    expect(snapshot.pools.find((p) => p.name === 'web')!.requestsPerSecond).toEqual([10, 16, 20, 25, 30]);
  });

  it('marks every version made between two samples with its own source, and a version the history no longer holds without one', async () => {
    const control = createFakeControl();
    const metrics = createMetrics({ collectDefault: false });
    const history = new MetricsHistory({ requestFamilies: () => metrics.renderRequestFamilies(), status: () => control.status(), changes: () => control.historyEntries }, 5);
    await history.sample(1_000);
    const entry = control.historyEntries[0]!;
    control.historyEntries = [
      { ...entry, version: 5, change: 'set config', source: { kind: 'rollback', node: 'n2', via: 'cli', rollbackOf: 3 } },
      { ...entry, version: 4, change: 'file edit', source: { kind: 'file', node: 'n1', file: '/etc/balancer/balancer.yaml' } },
      ...control.historyEntries,
    ];
    control.version = 5;
    await history.sample(2_000);
    // Version 7 with a history that stops at 5 (bounded, or not replicated here yet): marked, with no source.
    control.version = 7;
    await history.sample(3_000);
    expect(history.snapshot().configChanges).toEqual([
      { at: 2_000, version: 4, source: { kind: 'file', node: 'n1', file: '/etc/balancer/balancer.yaml' }, change: 'file edit' },
      { at: 2_000, version: 5, source: { kind: 'rollback', node: 'n2', via: 'cli', rollbackOf: 3 }, change: 'set config' },
      { at: 3_000, version: 7, source: null, change: null },
    ]);
  });
});
