// The active-check scheduler on a fake clock with a scripted probe: timing, jitter, no overlap, stop.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom, type Random } from '../../src/clock.js';
import { HealthChecker, type CheckTarget } from '../../src/health/checker.js';
import type { ProbeResult } from '../../src/health/probe.js';
import { flush, healthCheck, scriptedProbe } from '../balancer/pool-fixtures.js';
import { NO_UPSTREAM_TLS } from '../../src/balancer/upstream-tls.js';

function target(id: string, port: number, state: { down: boolean; last?: number } = { down: false }): CheckTarget {
  return { id, url: new URL(`http://127.0.0.1:${port}`), isDown: () => state.down, lastCheckedAt: () => state.last };
}

function makeChecker(overrides: Parameters<typeof healthCheck>[0] = {}, random: Random = seededRandom(3)) {
  const clock = new FakeClock();
  const probe = scriptedProbe();
  const results: Array<{ id: string; at: number; result: ProbeResult }> = [];
  const checker = new HealthChecker({
    config: healthCheck(overrides),
    clock,
    random,
    probe,
    tls: NO_UPSTREAM_TLS,
    serverName: null,
    onResult: (id, result) => results.push({ id, at: clock.now(), result }),
  });
  return { clock, probe, results, checker };
}

/** Advances the fake clock in small steps, letting probe promises settle between them. */
async function run(clock: FakeClock, ms: number, step = 10): Promise<void> {
  clock.advance(0);
  await flush();
  for (let elapsed = 0; elapsed < ms; elapsed += step) {
    clock.advance(Math.min(step, ms - elapsed));
    await flush();
  }
}

describe('HealthChecker', () => {
  it('checks at the interval, and at unhealthyInterval while the backend is down', async () => {
    const { clock, results, checker } = makeChecker({ intervalMs: 1_000, unhealthyIntervalMs: 250, jitter: 0 });
    const state = { down: false };
    checker.start([target('a', 1, state)]);
    await run(clock, 3_000);
    expect(results.map((r) => r.at)).toEqual([0, 1_000, 2_000, 3_000]);
    // The delay is chosen as each check completes, which is when a real transition happens.
    state.down = true;
    await run(clock, 1_750);
    expect(results.map((r) => r.at).slice(4)).toEqual([4_000, 4_250, 4_500, 4_750]);
    checker.stop();
  });

  it('jitters each interval within ±jitter and spreads first checks over jitter × interval', async () => {
    const { clock, results, checker } = makeChecker({ intervalMs: 1_000, jitter: 0.2 });
    checker.start([target('a', 1), target('b', 2), target('c', 3)]);
    await run(clock, 20_000, 5);
    const firsts = ['a', 'b', 'c'].map((id) => results.find((r) => r.id === id)!.at);
    for (const at of firsts) expect(at).toBeLessThanOrEqual(200);
    expect(new Set(firsts).size).toBeGreaterThan(1);
    const gaps: number[] = [];
    for (const id of ['a', 'b', 'c']) {
      const times = results.filter((r) => r.id === id).map((r) => r.at);
      for (let i = 1; i < times.length; i++) gaps.push(times[i]! - times[i - 1]!);
    }
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(800);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1_205); // + one 5 ms step of resolution
    expect(new Set(gaps).size).toBeGreaterThan(5);
    checker.stop();
  });

  it('never overlaps checks of one backend: the next is scheduled only after a slow one finishes', async () => {
    const { clock, probe, results, checker } = makeChecker({ intervalMs: 100, jitter: 0 });
    probe.hold = true;
    checker.start([target('a', 1)]);
    await run(clock, 1_000);
    expect(probe.calls).toHaveLength(1);
    probe.release();
    await flush();
    expect(results).toHaveLength(1);
    expect(checker.nextCheckAt('a')).toBe(1_100);
    await run(clock, 100);
    expect(probe.calls).toHaveLength(2);
    checker.stop();
  });

  it('continues from the last check time of a carried backend instead of probing at once', async () => {
    const { clock, results, checker } = makeChecker({ intervalMs: 1_000, jitter: 0 });
    clock.advance(10_000);
    checker.start([target('a', 1, { down: false, last: 9_700 })]);
    expect(checker.nextCheckAt('a')).toBe(10_700);
    await run(clock, 700);
    expect(results.map((r) => r.at)).toEqual([10_700]);
    checker.stop();
  });

  it('stop() cancels timers and drops the result of a probe still running', async () => {
    const { clock, probe, results, checker } = makeChecker({ intervalMs: 100, jitter: 0 });
    probe.hold = true;
    checker.start([target('a', 1)]);
    await run(clock, 10);
    checker.stop();
    probe.release();
    await flush();
    expect(results).toHaveLength(0);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('keeps checking when the result consumer throws', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const errors: unknown[] = [];
    const checker = new HealthChecker({
      config: healthCheck({ intervalMs: 100, jitter: 0 }),
      clock,
      random: seededRandom(1),
      probe: scriptedProbe(),
      tls: NO_UPSTREAM_TLS,
      serverName: null,
      onResult: () => {
        calls++;
        throw new Error('consumer bug');
      },
      onError: (_id, error) => errors.push(error),
    });
    checker.start([target('a', 1)]);
    await run(clock, 300);
    expect(calls).toBe(4);
    expect(errors).toHaveLength(4);
    checker.stop();
  });
});
