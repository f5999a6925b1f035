// Merging the primary's and its workers' metrics: counters summed and kept across worker deaths, gauges by meaning.

import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import {
  GAUGE_AGGREGATION,
  MonotonicClamp,
  RetiredWorkerCounts,
  mergeWorkerMetrics,
  renderMerged,
  type MetricFamilySnapshot,
} from '../../src/metrics/worker-metrics.js';

type Values = Array<{ labels: Record<string, string>; value: number; metricName?: string }>;

function family(name: string, type: 'counter' | 'gauge' | 'histogram', values: Values): MetricFamilySnapshot {
  return { name, help: `${name} help`, type, aggregator: 'sum', values } as unknown as MetricFamilySnapshot;
}

function valueOf(families: readonly MetricFamilySnapshot[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = families.find((f) => f.name === name);
  return (found?.values as Values | undefined)?.find((v) => JSON.stringify(v.labels) === JSON.stringify(labels))?.value;
}

const web = { pool: 'web', backend: 'a' };

describe('GAUGE_AGGREGATION', () => {
  it('declares an aggregation for every gauge family a process exports (a new gauge must choose one)', async () => {
    const metrics = createMetrics();
    metrics.backend('web', 'a').setUp(true);
    const gauges = (await metrics.registry.getMetricsAsJSON()).filter((f) => String(f.type) === 'gauge').map((f) => f.name);
    expect(gauges.length).toBeGreaterThan(20);
    expect(gauges.filter((name) => GAUGE_AGGREGATION[name] === undefined)).toEqual([]);
  });
});

describe('mergeWorkerMetrics', () => {
  const primary = [
    family('balancer_requests_total', 'counter', [{ labels: { ...web, code: '2xx' }, value: 0 }]),
    family('process_max_fds', 'gauge', [{ labels: {}, value: 1024 }]),
    family('process_open_fds', 'gauge', [{ labels: {}, value: 20 }]),
    family('nodejs_eventloop_lag_min_seconds', 'gauge', [{ labels: {}, value: 0.01 }]),
    family('balancer_backend_up', 'gauge', [{ labels: web, value: 1 }]),
    family('balancer_backend_active_requests', 'gauge', [{ labels: web, value: 0 }]),
  ];
  const worker = (requests: number, active: number, lagMin: number) => [
    family('balancer_requests_total', 'counter', [{ labels: { ...web, code: '2xx' }, value: requests }]),
    family('process_max_fds', 'gauge', [{ labels: {}, value: 1024 }]),
    family('process_open_fds', 'gauge', [{ labels: {}, value: 30 }]),
    family('nodejs_eventloop_lag_min_seconds', 'gauge', [{ labels: {}, value: lagMin }]),
    // A worker's copy of state the primary keeps: stale, never counted.
    family('balancer_backend_up', 'gauge', [{ labels: web, value: 0 }]),
    family('balancer_backend_active_requests', 'gauge', [{ labels: web, value: active }]),
  ];

  it('sums counters and in-flight gauges, takes the limit once, the minimum lag, and state from the primary', () => {
    const merged = mergeWorkerMetrics(primary, [worker(100, 2, 0.002), worker(50, 3, 0.005)], []);
    expect(valueOf(merged, 'balancer_requests_total', { ...web, code: '2xx' })).toBe(150);
    expect(valueOf(merged, 'process_max_fds')).toBe(1024);
    expect(valueOf(merged, 'process_open_fds')).toBe(80);
    expect(valueOf(merged, 'nodejs_eventloop_lag_min_seconds')).toBe(0.002);
    expect(valueOf(merged, 'balancer_backend_up', web)).toBe(1);
    expect(valueOf(merged, 'balancer_backend_active_requests', web)).toBe(5);
  });

  it('keeps a dead worker\'s counts: the sum never goes down when it is replaced by a fresh one', () => {
    const retired = new RetiredWorkerCounts();
    const before = mergeWorkerMetrics(primary, [worker(100, 2, 0.002), worker(50, 3, 0.005)], retired.snapshot());
    retired.fold(worker(100, 2, 0.002));
    const replaced = mergeWorkerMetrics(primary, [worker(0, 0, 0.001), worker(50, 3, 0.005)], retired.snapshot());
    expect(valueOf(replaced, 'balancer_requests_total', { ...web, code: '2xx' })).toBe(valueOf(before, 'balancer_requests_total', { ...web, code: '2xx' }));
    // Its gauges died with it: open fds and in-flight requests are the live processes' only.
    expect(valueOf(replaced, 'process_open_fds')).toBe(80);
    expect(valueOf(replaced, 'balancer_backend_active_requests', web)).toBe(3);
  });

  it('sums histogram buckets, sums and counts, including a dead worker\'s', () => {
    const histogram = (count: number) =>
      family('balancer_request_duration_seconds', 'histogram', [
        { labels: { ...web, le: '0.1' }, value: count, metricName: 'balancer_request_duration_seconds_bucket' },
        { labels: web, value: count * 0.05, metricName: 'balancer_request_duration_seconds_sum' },
        { labels: web, value: count, metricName: 'balancer_request_duration_seconds_count' },
      ]);
    const retired = new RetiredWorkerCounts();
    retired.fold([histogram(7)]);
    const merged = mergeWorkerMetrics([histogram(0)], [[histogram(3)]], retired.snapshot());
    const values = merged.find((f) => f.name === 'balancer_request_duration_seconds')!.values as Values;
    expect(values.map((v) => [v.metricName, v.value])).toEqual([
      ['balancer_request_duration_seconds_bucket', 10],
      ['balancer_request_duration_seconds_sum', 0.5],
      ['balancer_request_duration_seconds_count', 10],
    ]);
  });

  it('drops a dead worker\'s series of a backend the primary no longer has, and keeps its pool\'s no-backend series', () => {
    const retired = new RetiredWorkerCounts();
    retired.fold([
      family('balancer_requests_total', 'counter', [
        { labels: { pool: 'web', backend: 'a', code: '2xx' }, value: 5 },
        { labels: { pool: 'web', backend: 'gone', code: '2xx' }, value: 6 },
        { labels: { pool: 'web', backend: '', code: '5xx' }, value: 7 },
        { labels: { pool: 'old', backend: 'x', code: '2xx' }, value: 8 },
      ]),
      family('process_cpu_seconds_total', 'counter', [{ labels: {}, value: 1.5 }]),
    ]);
    retired.prune(primary);
    const folded = retired.snapshot();
    expect((folded.find((f) => f.name === 'balancer_requests_total')!.values as Values).map((v) => v.value)).toEqual([5, 7]);
    expect(valueOf(folded, 'process_cpu_seconds_total')).toBe(1.5);
  });

  it('renders the merged families in the Prometheus text format', async () => {
    const text = await renderMerged(mergeWorkerMetrics(primary, [worker(100, 2, 0.002)], []));
    expect(text).toContain('# TYPE balancer_requests_total counter');
    expect(text).toContain('balancer_requests_total{pool="web",backend="a",code="2xx"} 100');
    expect(text).toContain('process_max_fds 1024');
  });
});

describe('MonotonicClamp', () => {
  it('never shows a counter lower than the last scrape did, though another summing order rounds it down', () => {
    const parts = [0.1, 0.2, 0.3];
    // The same three numbers summed in two orders differ in the last bit: what a worker's death does to the order.
    const before = parts[0]! + parts[1]! + parts[2]!;
    const after = parts[2]! + parts[1]! + parts[0]!;
    expect(after).toBeLessThan(before);
    const clamp = new MonotonicClamp();
    const first = clamp.apply([family('gc_seconds', 'counter', [{ labels: {}, value: before }]), family('up', 'gauge', [{ labels: {}, value: 5 }])]);
    expect(valueOf(first, 'gc_seconds')).toBe(before);
    const second = clamp.apply([family('gc_seconds', 'counter', [{ labels: {}, value: after }]), family('up', 'gauge', [{ labels: {}, value: 2 }])]);
    expect(valueOf(second, 'gc_seconds')).toBe(before);
    // Gauges go down freely; a counter that grows shows its new value.
    expect(valueOf(second, 'up')).toBe(2);
    expect(valueOf(clamp.apply([family('gc_seconds', 'counter', [{ labels: {}, value: 0.7 }])]), 'gc_seconds')).toBe(0.7);
  });
});
