import { describe, expect, it, vi } from 'vitest';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createMetrics, NO_BACKEND_LABEL, REQUEST_DURATION_BUCKETS } from '../../src/metrics/metrics.js';
import type { ChangeKind, HistoryEntry } from '../../src/control/history.js';

const CONTRACT_FAMILIES = [
  'balancer_requests_total',
  'balancer_request_duration_seconds',
  'balancer_backend_up',
  'balancer_backend_active_requests',
  'balancer_backend_draining',
  'balancer_retries_total',
  'balancer_upstream_errors_total',
  'balancer_health_checks_total',
  'balancer_outlier_ejections_total',
  'balancer_config_version',
  'balancer_config_reloads_total',
  'balancer_raft_term',
  'balancer_raft_commit_index',
  'balancer_raft_applied_index',
  'balancer_raft_is_leader',
  'balancer_raft_leader_changes_total',
  'balancer_raft_proposals_total',
  'balancer_raft_peer_reachable',
  'balancer_raft_peer_messages_rejected_total',
  'balancer_raft_failed',
];

function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const brace = line.indexOf('{');
    const labelText = brace === -1 ? '' : line.slice(brace + 1, line.lastIndexOf('}'));
    const got: Record<string, string> = {};
    for (const m of labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[m[1]!] = m[2]!;
    const nameEnd = brace === -1 ? line.indexOf(' ') : brace;
    if (line.slice(0, nameEnd) !== name) continue;
    if (Object.keys(labels).every((k) => got[k] === labels[k]) && Object.keys(got).length === Object.keys(labels).length) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

describe('createMetrics', () => {
  it('exports every contract family plus default process metrics', async () => {
    const metrics = createMetrics();
    metrics.backend('web', 'web-1');
    const text = await metrics.render();
    for (const family of CONTRACT_FAMILIES) expect(text).toContain(`# TYPE ${family} `);
    expect(text).toContain('# TYPE process_cpu_user_seconds_total counter');
    expect(text).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('can leave out default metrics and register into an injected registry', async () => {
    const registry = new Registry();
    const metrics = createMetrics({ collectDefault: false, registry });
    expect(metrics.registry).toBe(registry);
    const text = await registry.metrics();
    expect(text).toContain('balancer_config_version');
    expect(text).not.toContain('process_cpu_user_seconds_total');
  });

  it('counts requests per status class and observes durations into buckets from 1 ms to 10 s', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const b = metrics.backend('web', 'web-1');
    b.requestStarted();
    b.requestStarted();
    b.requestFinished('2xx', 0.0008);
    b.requestFinished('5xx', 3);
    const text = await metrics.render();
    expect(sample(text, 'balancer_requests_total', { pool: 'web', backend: 'web-1', code: '2xx' })).toBe(1);
    expect(sample(text, 'balancer_requests_total', { pool: 'web', backend: 'web-1', code: '5xx' })).toBe(1);
    expect(sample(text, 'balancer_requests_total', { pool: 'web', backend: 'web-1', code: '4xx' })).toBe(0);
    expect(sample(text, 'balancer_backend_active_requests', { pool: 'web', backend: 'web-1' })).toBe(0);
    expect(sample(text, 'balancer_request_duration_seconds_bucket', { pool: 'web', backend: 'web-1', le: '0.001' })).toBe(1);
    expect(sample(text, 'balancer_request_duration_seconds_bucket', { pool: 'web', backend: 'web-1', le: '2.5' })).toBe(1);
    expect(sample(text, 'balancer_request_duration_seconds_bucket', { pool: 'web', backend: 'web-1', le: '5' })).toBe(2);
    expect(sample(text, 'balancer_request_duration_seconds_count', { pool: 'web', backend: 'web-1' })).toBe(2);
    expect(REQUEST_DURATION_BUCKETS[0]).toBe(0.001);
    expect(REQUEST_DURATION_BUCKETS[REQUEST_DURATION_BUCKETS.length - 1]).toBe(10);
  });

  it('records pool, health, ejection, config and raft metrics', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const b = metrics.backend('api', '10.0.0.1:80');
    b.setUp(true);
    b.setDraining!(true);
    b.healthCheck('pass');
    b.healthCheck('timeout');
    b.upstreamError('connect_refused');
    b.ejected();
    const pool = metrics.pool('api');
    pool.retry();
    pool.requestWithoutBackend('5xx');
    metrics.setConfigVersion(7);
    metrics.configReload('failure');
    metrics.raft.setTerm(4);
    metrics.raft.setIsLeader(true);
    metrics.raft.leaderChanged();
    metrics.raft.electionsStarted(3);
    metrics.raft.ticked();
    metrics.raft.ticked();
    metrics.raft.proposal('committed');
    metrics.raft.setPeerReachable('n2', false);
    metrics.raft.peerMessageRejected('bad_mac');
    metrics.raft.setFailed(true);
    const t = await metrics.render();
    const l = { pool: 'api', backend: '10.0.0.1:80' };
    expect(sample(t, 'balancer_backend_up', l)).toBe(1);
    expect(sample(t, 'balancer_backend_draining', l)).toBe(1);
    expect(sample(t, 'balancer_health_checks_total', { ...l, result: 'timeout' })).toBe(1);
    expect(sample(t, 'balancer_upstream_errors_total', { ...l, reason: 'connect_refused' })).toBe(1);
    expect(sample(t, 'balancer_outlier_ejections_total', l)).toBe(1);
    expect(sample(t, 'balancer_retries_total', { pool: 'api' })).toBe(1);
    expect(sample(t, 'balancer_requests_total', { pool: 'api', backend: NO_BACKEND_LABEL, code: '5xx' })).toBe(1);
    expect(sample(t, 'balancer_config_version', {})).toBe(7);
    expect(sample(t, 'balancer_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(sample(t, 'balancer_config_reloads_total', { result: 'success' })).toBe(0);
    expect(sample(t, 'balancer_raft_term', {})).toBe(4);
    expect(sample(t, 'balancer_raft_is_leader', {})).toBe(1);
    expect(sample(t, 'balancer_raft_leader_changes_total', {})).toBe(1);
    expect(sample(t, 'balancer_raft_elections_started_total', {})).toBe(3);
    expect(sample(t, 'balancer_raft_ticks_total', {})).toBe(2);
    expect(sample(t, 'balancer_raft_proposals_total', { result: 'committed' })).toBe(1);
    expect(sample(t, 'balancer_raft_proposals_total', { result: 'timeout' })).toBe(0);
    expect(sample(t, 'balancer_raft_peer_reachable', { peer: 'n2' })).toBe(0);
    expect(sample(t, 'balancer_raft_peer_messages_rejected_total', { reason: 'bad_mac' })).toBe(1);
    expect(sample(t, 'balancer_raft_failed', {})).toBe(1);
  });

  it('counts config changes by source from the config history, from the first version served on', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const entry = (version: number, kind: ChangeKind): HistoryEntry => ({ version, requestId: `r${version}`, change: 'set config', at: null, source: { kind }, config: { routes: [], pools: {} } });
    // A cluster node before its first commit: the version it first serves is where counting starts.
    let served = { version: 0, changes: [] as HistoryEntry[] };
    metrics.countConfigChanges(() => served);
    const counts = async (): Promise<Record<string, number>> => {
      const family = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'balancer_config_changes_total')!;
      return Object.fromEntries(family.values.map((value) => [String(value.labels['source']), value.value]));
    };
    expect(await counts()).toEqual({ file: 0, seed: 0, api: 0, cli: 0, rollback: 0, unknown: 0 });
    served = { version: 7, changes: [entry(7, 'seed')] };
    expect((await counts())['seed']).toBe(0);
    served = { version: 9, changes: [entry(9, 'cli'), entry(8, 'api'), entry(7, 'seed')] };
    expect(await counts()).toEqual({ file: 0, seed: 0, api: 1, cli: 1, rollback: 0, unknown: 0 });
    // Versions the bounded history no longer holds still count, as unknown.
    served = { version: 12, changes: [entry(12, 'rollback')] };
    expect(await counts()).toEqual({ file: 0, seed: 0, api: 1, cli: 1, rollback: 1, unknown: 2 });
  });

  it('returns the same cached children for a backend, and the hot path never resolves labels', () => {
    const labelSpies = [
      vi.spyOn(Counter.prototype, 'labels'),
      vi.spyOn(Gauge.prototype, 'labels'),
      vi.spyOn(Histogram.prototype, 'labels'),
    ];
    try {
      const metrics = createMetrics({ collectDefault: false });
      const b = metrics.backend('web', 'web-1');
      expect(metrics.backend('web', 'web-1')).toBe(b);
      b.upstreamError('reset');
      b.healthCheck('pass');
      const pool = metrics.pool('web');
      for (const spy of labelSpies) spy.mockClear();
      for (let i = 0; i < 1000; i++) {
        b.requestStarted();
        b.requestFinished(i % 7 === 0 ? '5xx' : '2xx', i / 10_000);
        b.upstreamError('reset');
        b.healthCheck('pass');
        pool.retry();
        pool.requestWithoutBackend('5xx');
      }
      for (const spy of labelSpies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of labelSpies) spy.mockRestore();
    }
  });

  it("sets a backend's up and draining gauges only when their value changes (every pool rebuild publishes every backend)", async () => {
    const metrics = createMetrics({ collectDefault: false });
    // prom-client's label children set through a function of their own: count the calls on the children made for `a`.
    const set = vi.fn();
    const labels = Gauge.prototype.labels;
    const spy = vi.spyOn(Gauge.prototype, 'labels').mockImplementation(function (this: Gauge, ...args: Parameters<Gauge['labels']>) {
      const child = labels.apply(this, args);
      const original = child.set.bind(child);
      child.set = (value: number) => {
        set(value);
        original(value);
      };
      return child;
    });
    const b = metrics.backend('web', 'a');
    spy.mockRestore();
    set.mockClear();
    try {
      b.setUp(true);
      b.setUp(true);
      b.setDraining!(false);
      expect(set).toHaveBeenCalledTimes(1);
      b.setUp(false);
      b.setDraining!(true);
      b.setDraining!(true);
      b.setUp(false);
      expect(set).toHaveBeenCalledTimes(3);
    } finally {
      vi.restoreAllMocks();
    }
    const t = await metrics.render();
    expect(sample(t, 'balancer_backend_up', { pool: 'web', backend: 'a' })).toBe(0);
    expect(sample(t, 'balancer_backend_draining', { pool: 'web', backend: 'a' })).toBe(1);
  });

  it('retain() drops every series of removed backends and pools and keeps the rest', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.backend('web', 'a').requestFinished('2xx', 0.01);
    const gone = metrics.backend('web', 'b');
    gone.requestFinished('2xx', 0.01);
    gone.upstreamError('reset');
    gone.healthCheck('fail');
    gone.setUp(false);
    metrics.backend('old', 'c').setUp(true);
    metrics.pool('old').retry();
    metrics.pool('web').retry();

    metrics.retain([{ pool: 'web', backends: ['a'] }]);
    const t = await metrics.render();
    expect(t).toContain('backend="a"');
    expect(t).not.toContain('backend="b"');
    expect(t).not.toContain('pool="old"');
    expect(sample(t, 'balancer_retries_total', { pool: 'web' })).toBe(1);

    // A backend that comes back starts from zero rather than resurrecting stale counts.
    metrics.backend('web', 'b');
    const again = await metrics.render();
    expect(sample(again, 'balancer_requests_total', { pool: 'web', backend: 'b', code: '2xx' })).toBe(0);
  });

  it('keeps a NaN or negative duration from poisoning the histogram sum', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const b = metrics.backend('web', 'web-1');
    b.requestFinished('2xx', Number.NaN);
    b.requestFinished('2xx', -1);
    b.requestFinished('2xx', 0.5);
    const t = await metrics.render();
    expect(sample(t, 'balancer_request_duration_seconds_sum', { pool: 'web', backend: 'web-1' })).toBe(0.5);
    expect(sample(t, 'balancer_request_duration_seconds_bucket', { pool: 'web', backend: 'web-1', le: '0.001' })).toBe(2);
  });

  it('exports JSON that an AggregatorRegistry can sum across worker processes', async () => {
    const workers = [createMetrics({ collectDefault: false }), createMetrics({ collectDefault: false })];
    workers[0]!.backend('web', 'web-1').requestFinished('2xx', 0.003);
    workers[1]!.backend('web', 'web-1').requestFinished('2xx', 0.2);
    workers[1]!.backend('web', 'web-1').requestFinished('5xx', 0.2);
    const merged = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.registry.getMetricsAsJSON())));
    const t = await merged.metrics();
    expect(sample(t, 'balancer_requests_total', { pool: 'web', backend: 'web-1', code: '2xx' })).toBe(2);
    expect(sample(t, 'balancer_requests_total', { pool: 'web', backend: 'web-1', code: '5xx' })).toBe(1);
    expect(sample(t, 'balancer_request_duration_seconds_bucket', { pool: 'web', backend: 'web-1', le: '0.005' })).toBe(1);
    expect(sample(t, 'balancer_request_duration_seconds_count', { pool: 'web', backend: 'web-1' })).toBe(3);
  });

  it('counts requests per listener by client protocol, all three from zero, summed across workers', async () => {
    const workers = [createMetrics({ collectDefault: false }), createMetrics({ collectDefault: false })];
    const http = workers[0]!.listener('http');
    expect(workers[0]!.listener('http')).toBe(http);
    http.request('http1');
    http.request('h2');
    workers[1]!.listener('http').request('h2');
    workers[1]!.listener('grpc').request('grpc');
    const own = await workers[0]!.render();
    expect(sample(own, 'balancer_listener_requests_total', { listener: 'http', protocol: 'grpc' })).toBe(0);
    const t = await AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.registry.getMetricsAsJSON()))).metrics();
    expect(sample(t, 'balancer_listener_requests_total', { listener: 'http', protocol: 'http1' })).toBe(1);
    expect(sample(t, 'balancer_listener_requests_total', { listener: 'http', protocol: 'h2' })).toBe(2);
    expect(sample(t, 'balancer_listener_requests_total', { listener: 'grpc', protocol: 'grpc' })).toBe(1);
    expect(sample(t, 'balancer_listener_requests_total', { listener: 'grpc', protocol: 'http1' })).toBe(0);
  });
});
