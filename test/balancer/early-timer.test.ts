// Regression: Node timers run on the event loop's millisecond clock and can fire a fraction of a millisecond
// before the precise clock says the ejection is over; the backend must still come back.

import { expect, it } from 'vitest';
import { FakeClock, seededRandom, type Clock, type TimerHandle } from '../../src/clock.js';
import { PoolRuntime } from '../../src/balancer/pool.js';
import { silentLogger } from '../../src/log.js';
import { poolConfig, recordingMetrics } from './pool-fixtures.js';

/** Fires every timer 0.5 ms before it is due, as libuv's cached loop time can. */
class EarlyClock implements Clock {
  readonly inner = new FakeClock();
  now(): number {
    return this.inner.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.inner.setTimeout(fn, Math.max(0, ms - 0.5));
  }
  clearTimeout(handle: TimerHandle): void {
    this.inner.clearTimeout(handle);
  }
}

it('returns an ejected backend even when its timer fires slightly early', () => {
  const clock = new EarlyClock();
  const pool = PoolRuntime.create(
    poolConfig({
      outlierDetection: { enabled: true, consecutiveGatewayFailures: 2, consecutive5xx: 0, baseEjectionTimeMs: 400, maxEjectionTimeMs: 60_000, maxEjectionPercent: 100, activeCheckUnejects: true },
    }),
    undefined,
    { clock, random: seededRandom(1), metrics: recordingMetrics(), logger: silentLogger },
  );
  pool.start();
  const target = pool.get('a')!;
  for (let i = 0; i < 2; i++) {
    target.requestStarted();
    target.requestFinished('gateway-failure');
  }
  expect(target.state).toBe('ejected');
  clock.inner.advance(399.6);
  expect(target.state).toBe('ejected');
  clock.inner.advance(1);
  expect(target.state).toBe('up');
  pool.stop();
});
