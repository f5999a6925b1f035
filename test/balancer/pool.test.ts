// PoolRuntime on a fake clock: drain, ejection and its cap, panic mode, slow start, retry budget, carry-over, checks.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { PoolRuntime, type BackendStateChange, type PoolDeps } from '../../src/balancer/pool.js';
import { retryBudgetAllows, retryBudgetLimit } from '../../src/balancer/retry-budget.js';
import type { PoolConfig } from '../../src/config/schema.js';
import { memoryLogger } from '../../src/log.js';
import type { Probe, ProbeTarget } from '../../src/health/probe.js';
import { backend, flush, healthCheck, poolConfig, recordingMetrics, scriptedProbe } from './pool-fixtures.js';

function setup(config: PoolConfig, extra: Partial<PoolDeps> = {}) {
  const clock = new FakeClock();
  const logger = memoryLogger('info');
  const metrics = recordingMetrics();
  const probe = scriptedProbe();
  const changes: BackendStateChange[] = [];
  const deps: PoolDeps = {
    clock,
    random: seededRandom(1),
    metrics,
    logger,
    probe,
    onStateChange: (change) => changes.push(change),
    ...extra,
  };
  const pool = PoolRuntime.create(config, undefined, deps);
  // Pools with active checks are started by the test once the probe is scripted.
  if (config.healthCheck === null) pool.start();
  return { clock, logger, metrics, probe, changes, deps, pool };
}

function picks(pool: PoolRuntime, count: number, excluded?: ReadonlySet<string>): string[] {
  return Array.from({ length: count }, () => pool.pick(excluded)?.id ?? '-');
}

function failRequests(pool: PoolRuntime, id: string, count: number): void {
  const target = pool.get(id)!;
  for (let i = 0; i < count; i++) {
    target.requestStarted();
    target.requestFinished('gateway-failure');
  }
}

describe('PoolRuntime picking', () => {
  it('builds backends from config, all up, with metrics up=true', () => {
    const { pool, metrics } = setup(poolConfig());
    expect(pool.backends.map((b) => [b.id, b.state, b.available])).toEqual([
      ['a', 'up', true],
      ['b', 'up', true],
      ['c', 'up', true],
    ]);
    expect(pool.backends[0]!.url.port).toBe(String(9000 + 'a'.charCodeAt(0)));
    expect(metrics.records.get('web/a')?.up).toEqual([true]);
  });

  it('never picks a draining backend, and reports it as draining / not up', () => {
    const { pool, metrics } = setup(poolConfig({ backends: [backend('a'), backend('b', { drain: true }), backend('c')] }));
    expect(pool.get('b')?.state).toBe('draining');
    expect(picks(pool, 6)).toEqual(['a', 'c', 'a', 'c', 'a', 'c']);
    expect(metrics.records.get('web/b')?.up).toEqual([false]);
  });

  it('returns undefined when everything is draining or excluded', () => {
    const { pool } = setup(poolConfig({ backends: [backend('a', { drain: true }), backend('b')] }));
    expect(pool.pick(new Set(['b']))).toBeUndefined();
  });

  it('tracks in-flight requests through requestStarted/requestFinished', () => {
    const { pool } = setup(poolConfig({ strategy: 'least-request' }));
    const a = pool.get('a')!;
    a.requestStarted();
    a.requestStarted();
    expect(a.inflight).toBe(2);
    a.requestFinished('success');
    a.requestFinished('aborted');
    a.requestFinished('success'); // an extra finish never drives the count negative
    expect(a.inflight).toBe(0);
  });
});

describe('outlier ejection in the pool', () => {
  it('ejects, logs, records metrics and events, and returns the backend after the ejection time', () => {
    const { pool, clock, logger, metrics, changes } = setup(poolConfig());
    failRequests(pool, 'b', 3);
    expect(pool.get('b')?.state).toBe('ejected');
    expect(picks(pool, 4)).not.toContain('b');
    expect(metrics.records.get('web/b')).toMatchObject({ ejections: 1, up: [true, false] });
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ pool: 'web', backend: 'b', from: 'up', to: 'ejected' });
    const line = logger.lines.find((l) => l['msg'] === 'backend state changed');
    expect(line).toMatchObject({ level: 'warn', pool: 'web', backend: 'b', from: 'up', to: 'ejected' });
    expect(String(line?.['reason'])).toContain('3 consecutive gateway failures');

    clock.advance(9_999);
    expect(pool.get('b')?.state).toBe('ejected');
    clock.advance(1);
    expect(pool.get('b')?.state).toBe('up');
    expect(changes[1]).toMatchObject({ from: 'ejected', to: 'up', reason: 'ejection time (10000ms) elapsed, back on trial; it was ejected for 3 consecutive gateway failures' });
    expect(logger.lines.at(-1)).toMatchObject({ level: 'info', to: 'up' });
    expect(metrics.records.get('web/b')?.up.at(-1)).toBe(true);
  });

  it('a flapping backend is ejected for growing periods', () => {
    const { pool, clock } = setup(poolConfig());
    const periods: number[] = [];
    for (let round = 0; round < 4; round++) {
      failRequests(pool, 'a', 3);
      const start = clock.now();
      let waited = 0;
      while (pool.get('a')!.state === 'ejected' && waited < 200) {
        clock.advance(1_000);
        waited++;
      }
      periods.push(clock.now() - start);
    }
    expect(periods).toEqual([10_000, 20_000, 30_000, 40_000]);
  });

  it('maxEjectionPercent caps ejections, but one is always allowed', () => {
    const ten = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'].map((n) => backend(`b${n}`));
    const { pool, logger } = setup(
      poolConfig({ backends: ten, outlierDetection: { ...poolConfig().outlierDetection, maxEjectionPercent: 20 } }),
    );
    for (const b of ten) failRequests(pool, b.id, 3);
    expect(pool.backends.filter((b) => b.state === 'ejected').map((b) => b.id)).toEqual(['b0', 'b1']);
    const refusals = logger.lines.filter((l) => String(l['msg']).startsWith('outlier ejection refused'));
    expect(refusals).toHaveLength(8); // once per refused backend, not once per failure
    failRequests(pool, 'b2', 3);
    expect(logger.lines.filter((l) => String(l['msg']).startsWith('outlier ejection refused'))).toHaveLength(8);

    const small = setup(poolConfig({ outlierDetection: { ...poolConfig().outlierDetection, maxEjectionPercent: 10 } }));
    failRequests(small.pool, 'a', 3);
    failRequests(small.pool, 'b', 3);
    expect(small.pool.backends.map((b) => b.state)).toEqual(['ejected', 'up', 'up']);
  });

  it('retryAfterSeconds is the time until the soonest ejection ends, at least 1', () => {
    const { pool, clock } = setup(poolConfig({ backends: [backend('a'), backend('b')] }));
    expect(pool.retryAfterSeconds()).toBe(1);
    failRequests(pool, 'a', 3);
    clock.advance(2_500);
    expect(pool.retryAfterSeconds()).toBe(8);
    clock.advance(7_400);
    expect(pool.retryAfterSeconds()).toBe(1);
  });
});

describe('panic mode', () => {
  const four = [backend('a'), backend('b'), backend('c'), backend('d')];

  it('enters below the threshold, routes to all non-draining backends, and leaves when health returns', () => {
    const { pool, clock, logger } = setup(poolConfig({ backends: [...four, backend('e', { drain: true })], panicThresholdPercent: 50 }));
    failRequests(pool, 'a', 3);
    failRequests(pool, 'b', 3);
    // 2 of 4 non-draining healthy: 50% is not below 50%.
    expect(pool.panic).toBe(false);
    expect(new Set(picks(pool, 8))).toEqual(new Set(['c', 'd']));
    failRequests(pool, 'c', 3);
    expect(pool.panic).toBe(true);
    expect(pool.status().panic).toBe(true);
    expect(new Set(picks(pool, 8))).toEqual(new Set(['a', 'b', 'c', 'd']));
    expect(logger.lines.find((l) => String(l['msg']).startsWith('pool entered panic mode'))).toMatchObject({
      level: 'warn',
      pool: 'web',
      healthy: 1,
      total: 4,
    });
    clock.advance(10_000);
    expect(pool.panic).toBe(false);
    expect(logger.lines.some((l) => l['msg'] === 'pool left panic mode')).toBe(true);
    expect(new Set(picks(pool, 8))).toEqual(new Set(['a', 'b', 'c', 'd']));
  });

  it('is disabled by a threshold of 0: nothing available means no pick', () => {
    const { pool } = setup(
      poolConfig({
        backends: [backend('a'), backend('b')],
        panicThresholdPercent: 0,
        outlierDetection: { ...poolConfig().outlierDetection, maxEjectionPercent: 100 },
      }),
    );
    failRequests(pool, 'a', 3);
    failRequests(pool, 'b', 3);
    expect(pool.panic).toBe(false);
    expect(pool.pick()).toBeUndefined();
  });

  it('still never routes to draining backends', () => {
    const { pool } = setup(
      poolConfig({ backends: [backend('a'), backend('b', { drain: true })], panicThresholdPercent: 100 }),
    );
    failRequests(pool, 'a', 3);
    expect(pool.panic).toBe(true);
    expect(picks(pool, 3)).toEqual(['a', 'a', 'a']);
  });
});

describe('retry budget', () => {
  it('allows max(minConcurrent, percent of active requests) retries in flight', () => {
    const budget = { percent: 20, minConcurrent: 3 };
    expect(retryBudgetLimit(0, budget)).toBe(3);
    expect(retryBudgetLimit(100, budget)).toBe(20);
    expect(retryBudgetAllows(2, 0, budget)).toBe(true);
    expect(retryBudgetAllows(3, 0, budget)).toBe(false);
    expect(retryBudgetAllows(19, 100, budget)).toBe(true);
    expect(retryBudgetAllows(20, 100, budget)).toBe(false);
  });

  it('counts the pool’s in-flight requests and its running retries', () => {
    const { pool } = setup(poolConfig());
    expect([pool.tryStartRetry(), pool.tryStartRetry(), pool.tryStartRetry(), pool.tryStartRetry()]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    pool.finishRetry();
    expect(pool.tryStartRetry()).toBe(true);
    for (let i = 0; i < 30; i++) pool.get('a')!.requestStarted(); // 30 active: 20% = 6
    expect([pool.tryStartRetry(), pool.tryStartRetry(), pool.tryStartRetry(), pool.tryStartRetry()]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(pool.retriesInFlight).toBe(6);
  });
});

describe('slow start', () => {
  it('a backend returning from ejection ramps its effective weight, and the weighted strategy follows', () => {
    const { pool, clock } = setup(
      poolConfig({ strategy: 'weighted', slowStartMs: 10_000, backends: [backend('a', { weight: 10 }), backend('b', { weight: 10 })] }),
    );
    expect(pool.get('a')!.effectiveWeight).toBe(10);
    failRequests(pool, 'a', 3);
    clock.advance(10_000);
    expect(pool.get('a')!.state).toBe('up');
    expect(pool.get('a')!.effectiveWeight).toBeCloseTo(1);
    const early = picks(pool, 110).filter((id) => id === 'a').length;
    expect(early).toBeLessThanOrEqual(11);
    clock.advance(5_000);
    expect(pool.get('a')!.effectiveWeight).toBeCloseTo(5.5);
    expect(pool.status().backends[0]).toMatchObject({ weight: 10, effectiveWeight: 5.5 });
    clock.advance(5_000);
    expect(pool.get('a')!.effectiveWeight).toBe(10);
  });

  it('a backend added to a running pool starts slow; the first pool of the process does not', () => {
    const first = setup(poolConfig({ slowStartMs: 1_000 }));
    expect(first.pool.get('a')!.effectiveWeight).toBe(1);
    const next = PoolRuntime.create(poolConfig({ slowStartMs: 1_000, backends: [backend('a'), backend('d')] }), first.pool, first.deps);
    expect(next.get('a')!.effectiveWeight).toBe(1);
    expect(next.get('d')!.effectiveWeight).toBeCloseTo(0.1);
  });
});

describe('rebuild (config change)', () => {
  it('carries health, ejection and in-flight state for the same id and URL; resets a changed URL', () => {
    const { pool, deps, clock, changes } = setup(poolConfig());
    failRequests(pool, 'a', 3);
    failRequests(pool, 'b', 3);
    const c = pool.get('c')!;
    c.requestStarted();
    const next = PoolRuntime.create(
      poolConfig({ backends: [backend('a'), backend('b', { url: 'http://127.0.0.1:1' }), backend('c', { weight: 5 })] }),
      pool,
      deps,
    );
    next.start();
    pool.stop();
    expect(next.get('a')!.state).toBe('ejected');
    expect(next.get('b')!.state).toBe('up');
    expect(next.get('c')!.inflight).toBe(1);
    expect(next.get('c')!.config.weight).toBe(5);
    // The request started on the old pool finishes there and is seen by the new one.
    c.requestFinished('success');
    expect(next.get('c')!.inflight).toBe(0);
    // The carried ejection still ends on time, announced by the new pool.
    clock.advance(10_000);
    expect(next.get('a')!.state).toBe('up');
    expect(changes.at(-1)).toMatchObject({ backend: 'a', from: 'ejected', to: 'up' });
  });

  it('failures of requests started before the swap eject the backend in the new pool', () => {
    const { pool, deps } = setup(poolConfig());
    const old = pool.get('a')!;
    for (let i = 0; i < 3; i++) old.requestStarted();
    const next = PoolRuntime.create(poolConfig(), pool, deps);
    next.start();
    pool.stop();
    for (let i = 0; i < 3; i++) old.requestFinished('gateway-failure');
    expect(next.get('a')!.state).toBe('ejected');
    expect(next.pick()?.id).not.toBe('a');
  });

  it('announces drain set and cleared through config', () => {
    const { pool, deps, changes } = setup(poolConfig());
    const drained = PoolRuntime.create(poolConfig({ backends: [backend('a', { drain: true }), backend('b'), backend('c')] }), pool, deps);
    drained.start();
    pool.stop();
    expect(changes.at(-1)).toMatchObject({ backend: 'a', from: 'up', to: 'draining', reason: 'drain set in config' });
    const undrained = PoolRuntime.create(poolConfig(), drained, deps);
    undrained.start();
    drained.stop();
    expect(changes.at(-1)).toMatchObject({ backend: 'a', from: 'draining', to: 'up', reason: 'drain cleared in config' });
    expect(undrained.get('a')!.available).toBe(true);
  });

  it('shares the retry budget across the swap', () => {
    const { pool, deps } = setup(poolConfig());
    expect(pool.tryStartRetry()).toBe(true);
    const next = PoolRuntime.create(poolConfig(), pool, deps);
    next.start();
    expect(next.retriesInFlight).toBe(1);
    pool.finishRetry();
    expect(next.retriesInFlight).toBe(0);
  });

  it('building a pool has no effect on the previous one until start(): a dropped build is harmless', () => {
    const { pool, deps, changes } = setup(poolConfig());
    const dropped = PoolRuntime.create(poolConfig({ healthCheck: null, backends: [backend('a', { drain: true }), backend('b')] }), pool, deps);
    expect(dropped.get('a')!.state).toBe('draining');
    failRequests(pool, 'b', 3);
    // The live pool still handles its backends' transitions and events.
    expect(pool.get('b')!.state).toBe('ejected');
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ backend: 'b', to: 'ejected' });
  });

  it('a carried ejection still ends when the previous pool was stopped before the new one started', () => {
    const { pool, deps, clock } = setup(poolConfig());
    failRequests(pool, 'a', 3);
    const next = PoolRuntime.create(poolConfig(), pool, deps);
    pool.stop();
    next.start();
    clock.advance(10_000);
    expect(next.get('a')!.state).toBe('up');
  });

  it('a weight or drain change keeps the running health checks (same targets, kept connections); a change of the checks or a URL starts new ones', async () => {
    const targets: ProbeTarget[] = [];
    const probe: Probe = (target) => {
      targets.push(target);
      return Promise.resolve({ result: 'pass', detail: 'HTTP 200' });
    };
    const { pool, deps, clock, metrics } = setup(poolConfig({ healthCheck: healthCheck() }), { probe });
    pool.start();
    clock.advance(0);
    await flush();
    const first = new Map(targets.map((target) => [target.url.host, target]));
    expect(first.size).toBe(3);
    // An equal check config in another object (a config read again) counts as the same checks.
    const reweighted = PoolRuntime.create(poolConfig({ healthCheck: healthCheck(), backends: [backend('a'), backend('b', { weight: 5 }), backend('c', { drain: true })] }), pool, deps);
    reweighted.start();
    pool.stop();
    targets.length = 0;
    clock.advance(1_000);
    await flush();
    expect(targets).toHaveLength(3);
    for (const target of targets) expect(target).toBe(first.get(target.url.host));
    // Results reach the newest pool; the old one keeps no timers.
    expect(metrics.records.get('web/b')?.checks).toEqual(['pass', 'pass']);
    expect(reweighted.get('b')!.live.health.lastCheck?.at).toBe(clock.now());
    expect(reweighted.retryAfterSeconds()).toBe(1);

    const rechecked = PoolRuntime.create(poolConfig({ healthCheck: healthCheck({ path: '/ready' }), backends: reweighted.config.backends }), reweighted, deps);
    rechecked.start();
    reweighted.stop();
    targets.length = 0;
    clock.advance(1_000);
    await flush();
    expect(targets.map((target) => target.path)).toEqual(['/ready', '/ready', '/ready']);
    for (const target of targets) expect(target).not.toBe(first.get(target.url.host));

    const moved = PoolRuntime.create(poolConfig({ healthCheck: healthCheck({ path: '/ready' }), backends: [backend('a', { url: 'http://127.0.0.1:1' }), backend('b'), backend('c')] }), rechecked, deps);
    moved.start();
    rechecked.stop();
    targets.length = 0;
    clock.advance(0);
    await flush();
    expect(targets.map((target) => target.url.host)).toEqual(['127.0.0.1:1']);
    moved.stop();
    expect(clock.pendingTimers()).toBe(0);
  });

  it('stop() of the last pool leaves no timers behind', () => {
    const { pool, clock } = setup(poolConfig({ healthCheck: healthCheck() }));
    pool.start();
    failRequests(pool, 'a', 3);
    expect(clock.pendingTimers()).toBeGreaterThan(0);
    pool.stop();
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe('active checks through the pool', () => {
  it('the first failed check takes a backend down; rise passing checks at unhealthyInterval bring it back', async () => {
    const { pool, clock, probe, changes, metrics } = setup(
      poolConfig({ healthCheck: healthCheck({ rise: 2, fall: 3, intervalMs: 1_000, unhealthyIntervalMs: 300 }) }),
    );
    probe.answers.set(pool.get('b')!.url.host, { result: 'fail', detail: 'HTTP 500' });
    pool.start();
    clock.advance(0);
    await flush();
    expect(pool.get('b')!.state).toBe('down');
    expect(changes[0]).toMatchObject({ backend: 'b', from: 'up', to: 'down', reason: 'first check failed: HTTP 500' });
    expect(metrics.records.get('web/b')?.checks).toEqual(['fail']);
    expect(pool.retryAfterSeconds()).toBe(1);

    probe.answers.delete(pool.get('b')!.url.host);
    clock.advance(300);
    await flush();
    expect(pool.get('b')!.state).toBe('down');
    clock.advance(300);
    await flush();
    expect(pool.get('b')!.state).toBe('up');
    expect(changes[1]).toMatchObject({ backend: 'b', from: 'down', to: 'up', reason: '2 consecutive passing checks' });
    expect(pool.status().backends[1]).toMatchObject({ state: 'up', lastCheck: { ok: true, detail: 'HTTP 200', ageMs: 0 } });
    pool.stop();
  });

  it('a passing check ends an ejection early', async () => {
    const { pool, clock } = setup(poolConfig({ healthCheck: healthCheck({ intervalMs: 1_000 }) }));
    pool.start();
    clock.advance(0);
    await flush();
    failRequests(pool, 'a', 3);
    expect(pool.get('a')!.state).toBe('ejected');
    clock.advance(1_000);
    await flush();
    expect(pool.get('a')!.state).toBe('up');
    expect(pool.get('a')!.live.health.reason).toBe('active check passed: HTTP 200; ended after 1000ms an ejection for 3 consecutive gateway failures');
    pool.stop();
  });

  it('reports down backends’ next check for Retry-After', async () => {
    const { pool, clock, probe } = setup(
      poolConfig({ backends: [backend('a')], healthCheck: healthCheck({ unhealthyIntervalMs: 4_200 }) }),
    );
    probe.answers.set(pool.get('a')!.url.host, { result: 'error', detail: 'connect ECONNREFUSED' });
    pool.start();
    clock.advance(0);
    await flush();
    expect(pool.pick()).toBeUndefined();
    expect(pool.retryAfterSeconds()).toBe(5);
    pool.stop();
  });
});

describe('latency estimates through the pool', () => {
  it('feeds each finished attempt into the backend latency estimate, its status and its gauge', () => {
    const { pool, clock, metrics } = setup(poolConfig({ strategy: 'peak-ewma', ewma: { decayMs: 10_000, initialMs: 20 } }));
    expect(metrics.records.get('web/a')?.latency?.()).toBe(0.02);
    expect(pool.status().backends[0]).toMatchObject({ id: 'a', latencyEwmaMs: 20, latencyMeasured: false });
    const a = pool.get('a')!;
    a.requestStarted();
    a.requestFinished('success', 4);
    clock.advance(1_000);
    a.requestStarted();
    a.requestFinished('aborted', 1);
    a.requestStarted();
    a.requestFinished('success', 2);
    // A faster answer leaves the peak to decay: 4 ms, one second old.
    const decayed = 4 * Math.exp(-0.1);
    expect(a.latency.estimateMs()).toBeCloseTo(decayed, 10);
    expect(pool.status().backends[0]).toMatchObject({ latencyEwmaMs: a.latency.estimateMs(), latencyMeasured: true });
    expect(metrics.records.get('web/a')?.latency?.()).toBe(a.latency.estimateMs() / 1000);
    // A failure counts as the response timeout (default 60 s), weighted by the 1 s since the previous sample.
    clock.advance(1_000);
    a.requestStarted();
    a.requestFinished('http-5xx');
    const before = decayed * Math.exp(-0.1);
    expect(a.latency.estimateMs()).toBeCloseTo(before + (60_000 - before) * 0.1, 6);
  });

  it('keeps what it measured across a config change and applies the new ewma settings', () => {
    const first = setup(poolConfig({ strategy: 'peak-ewma' }));
    first.pool.get('a')!.requestStarted();
    first.pool.get('a')!.requestFinished('success', 7);
    const next = PoolRuntime.create(poolConfig({ strategy: 'peak-ewma', ewma: { decayMs: 500, initialMs: 3 } }), first.pool, first.deps);
    next.start();
    first.pool.stop();
    expect(next.get('a')!.latency.estimateMs()).toBe(7);
    expect(next.get('b')!.latency.estimateMs()).toBe(3);
    first.clock.advance(500);
    expect(next.get('a')!.latency.dueForProbe()).toBe(true);
  });

  it('steers a peak-ewma pool away from the backend that answers slowly', () => {
    const { pool, clock } = setup(poolConfig({ strategy: 'peak-ewma' }));
    const answer = { a: 1, b: 5, c: 50 } as const;
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 3_000; i++) {
      clock.advance(1);
      const picked = pool.pick()!;
      counts[picked.id]!++;
      picked.requestStarted();
      picked.requestFinished('success', answer[picked.id as keyof typeof answer]);
    }
    // c is measured once (its first pick), then only probed each 10 s: none in 3 s.
    expect(counts['c']).toBeLessThanOrEqual(2);
    expect(counts['a']!).toBeGreaterThan(counts['b']!);
  });
});
