// The per-backend health state machine on a fake clock: rise/fall, ejection backoff, slow start, initial state.

import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { DEFAULTS, type OutlierDetectionConfig } from '../../src/config/schema.js';
import {
  BackendHealth,
  ejectionDurationMs,
  slowStartFactor,
  SLOW_START_FLOOR,
  type BackendHealthOptions,
} from '../../src/health/backend-health.js';

const outlier: OutlierDetectionConfig = {
  enabled: true,
  consecutiveGatewayFailures: 3,
  consecutive5xx: 4,
  baseEjectionTimeMs: 10_000,
  maxEjectionTimeMs: 35_000,
  maxEjectionPercent: DEFAULTS.outlierDetection.maxEjectionPercent,
  activeCheckUnejects: true,
};

function options(overrides: Partial<BackendHealthOptions> = {}): BackendHealthOptions {
  return { rise: 2, fall: 3, activeChecks: true, outlier, slowStartMs: 0, ...overrides };
}

const always = () => true;

function failChecks(health: BackendHealth, count: number) {
  return Array.from({ length: count }, () => health.recordCheck(false, 'HTTP 500'));
}

describe('initial state', () => {
  it('starts up, and the first failed check takes it down at once', () => {
    const health = new BackendHealth(new FakeClock(), options({ fall: 3 }));
    expect(health.state).toBe('up');
    const transition = health.recordCheck(false, 'connect ECONNREFUSED');
    expect(transition).toMatchObject({ from: 'up', to: 'down', reason: 'first check failed: connect ECONNREFUSED' });
  });

  it('stays up on a first passing check, and then needs `fall` failures', () => {
    const health = new BackendHealth(new FakeClock(), options({ fall: 3 }));
    expect(health.recordCheck(true, 'HTTP 200')).toBeUndefined();
    expect(failChecks(health, 2)).toEqual([undefined, undefined]);
    expect(health.state).toBe('up');
    expect(health.recordCheck(false, 'HTTP 500')).toMatchObject({
      to: 'down',
      reason: '3 consecutive failed checks: HTTP 500',
    });
  });
});

describe('rise and fall', () => {
  it('needs `rise` consecutive passes to come back, and a failure resets the count', () => {
    const health = new BackendHealth(new FakeClock(), options({ rise: 3 }));
    health.recordCheck(false, 'HTTP 500');
    expect(health.state).toBe('down');
    health.recordCheck(true, 'HTTP 200');
    health.recordCheck(true, 'HTTP 200');
    health.recordCheck(false, 'HTTP 503');
    health.recordCheck(true, 'HTTP 200');
    health.recordCheck(true, 'HTTP 200');
    expect(health.state).toBe('down');
    expect(health.recordCheck(true, 'HTTP 200')).toMatchObject({ from: 'down', to: 'up', reason: '3 consecutive passing checks' });
  });

  it('a pass in between resets the failure streak', () => {
    const health = new BackendHealth(new FakeClock(), options({ fall: 2 }));
    health.recordCheck(true, 'ok');
    health.recordCheck(false, 'x');
    health.recordCheck(true, 'ok');
    health.recordCheck(false, 'x');
    expect(health.state).toBe('up');
    health.recordCheck(false, 'x');
    expect(health.state).toBe('down');
  });

  it('records the last check with its time', () => {
    const clock = new FakeClock(500);
    const health = new BackendHealth(clock, options());
    health.recordCheck(true, 'HTTP 204');
    expect(health.lastCheck).toEqual({ ok: true, at: 500, detail: 'HTTP 204' });
  });

  it('brings a down backend up when active checks are removed from the config', () => {
    const health = new BackendHealth(new FakeClock(), options());
    health.recordCheck(false, 'x');
    expect(health.reconfigure(options({ activeChecks: false }))).toMatchObject({ from: 'down', to: 'up' });
  });
});

describe('outlier ejection', () => {
  it('ejects after consecutive gateway failures, for the base time, then returns', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options());
    expect(health.recordRequest('gateway-failure', always)).toBeUndefined();
    expect(health.recordRequest('gateway-failure', always)).toBeUndefined();
    const ejected = health.recordRequest('gateway-failure', always);
    expect(ejected).toMatchObject({ from: 'up', to: 'ejected' });
    expect(ejected?.reason).toContain('3 consecutive gateway failures');
    expect(health.ejectedUntil).toBe(10_000);
    clock.advance(9_999);
    expect(health.endEjectionIfDue()).toBeUndefined();
    clock.advance(1);
    expect(health.endEjectionIfDue()).toMatchObject({ from: 'ejected', to: 'up' });
    expect(health.ejections).toBe(1);
  });

  it('a success breaks the streak; an aborted request does not count either way', () => {
    const health = new BackendHealth(new FakeClock(), options());
    health.recordRequest('gateway-failure', always);
    health.recordRequest('gateway-failure', always);
    health.recordRequest('aborted', always);
    health.recordRequest('success', always);
    health.recordRequest('gateway-failure', always);
    health.recordRequest('gateway-failure', always);
    expect(health.state).toBe('up');
    health.recordRequest('aborted', always);
    expect(health.recordRequest('gateway-failure', always)?.to).toBe('ejected');
  });

  it('ejects on consecutive 5xx; a 5xx breaks the gateway-failure streak but counts towards 5xx', () => {
    const health = new BackendHealth(new FakeClock(), options());
    health.recordRequest('gateway-failure', always);
    health.recordRequest('gateway-failure', always);
    health.recordRequest('http-5xx', always); // 3 in a row of 5xx-ish, gateway streak reset
    expect(health.state).toBe('up');
    const transition = health.recordRequest('http-5xx', always);
    expect(transition?.to).toBe('ejected');
    expect(transition?.reason).toContain('4 consecutive 5xx');
  });

  it('a threshold of 0 disables that detector, and enabled:false disables both', () => {
    const no5xx = new BackendHealth(new FakeClock(), options({ outlier: { ...outlier, consecutive5xx: 0 } }));
    for (let i = 0; i < 20; i++) no5xx.recordRequest('http-5xx', always);
    expect(no5xx.state).toBe('up');
    const off = new BackendHealth(new FakeClock(), options({ outlier: { ...outlier, enabled: false } }));
    for (let i = 0; i < 20; i++) off.recordRequest('gateway-failure', always);
    expect(off.state).toBe('up');
  });

  it('does not eject when the pool refuses (maxEjectionPercent), and retries on the next failure', () => {
    const health = new BackendHealth(new FakeClock(), options());
    let allow = false;
    const mayEject = () => allow;
    for (let i = 0; i < 5; i++) expect(health.recordRequest('gateway-failure', mayEject)).toBeUndefined();
    allow = true;
    expect(health.recordRequest('gateway-failure', mayEject)?.to).toBe('ejected');
  });

  it('grows the ejection time with each ejection and caps it at maxEjectionTime', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options());
    const durations: number[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3; i++) health.recordRequest('gateway-failure', always);
      expect(health.state).toBe('ejected');
      durations.push(health.ejectedUntil! - clock.now());
      clock.advance(health.ejectedUntil! - clock.now());
      health.endEjectionIfDue();
      clock.advance(1_000); // fails again soon after returning: no decay
    }
    expect(durations).toEqual([10_000, 20_000, 30_000, 35_000, 35_000]);
    expect(health.ejections).toBe(5);
  });

  it('decays the multiplier by one per base ejection time spent healthy', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options());
    const ejectNow = () => {
      for (let i = 0; i < 3; i++) health.recordRequest('gateway-failure', always);
      const duration = health.ejectedUntil! - clock.now();
      clock.advance(duration);
      health.endEjectionIfDue();
      return duration;
    };
    expect([ejectNow(), ejectNow(), ejectNow()]).toEqual([10_000, 20_000, 30_000]);
    expect(health.currentMultiplier()).toBe(3);
    clock.advance(19_999);
    expect(health.currentMultiplier()).toBe(2);
    clock.advance(1);
    expect(health.currentMultiplier()).toBe(1);
    expect(ejectNow()).toBe(20_000);
    clock.advance(100_000);
    expect(health.currentMultiplier()).toBe(0);
    expect(ejectNow()).toBe(10_000);
  });

  it('a passing active check ends an ejection early', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options());
    for (let i = 0; i < 3; i++) health.recordRequest('gateway-failure', always);
    clock.advance(2_000);
    const transition = health.recordCheck(true, 'HTTP 200');
    expect(transition).toMatchObject({
      from: 'ejected',
      to: 'up',
      reason: 'active check passed: HTTP 200; ended after 2000ms an ejection for 3 consecutive gateway failures',
    });
    expect(health.ejectedUntil).toBeNull();
    expect(health.endEjectionIfDue()).toBeUndefined();
  });

  it('says an ejection lasts until the next passing check when one will end it, and points at activeCheckUnejects when it flaps', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options());
    health.recordCheck(true, 'HTTP 200');
    let ejected: ReturnType<BackendHealth['recordRequest']>;
    for (let i = 0; i < 4; i++) ejected = health.recordRequest('http-5xx', always);
    expect(ejected!.reason).toBe('4 consecutive 5xx responses; ejected until the next passing active check, at most 10000ms (ejection #1)');
    clock.advance(800);
    expect(health.recordCheck(true, 'HTTP 200')?.to).toBe('up');
    // Live requests still fail: ejected again, and this time the reason says what the operator can do about it.
    for (let i = 0; i < 4; i++) ejected = health.recordRequest('http-5xx', always);
    expect(ejected!.reason).toBe(
      '4 consecutive 5xx responses; ejected until the next passing active check, at most 20000ms (ejection #2); ' +
        'a passing active check ended the previous ejection after 800ms while live requests kept failing: ' +
        'set outlierDetection.activeCheckUnejects: false to keep it out for the whole ejection time',
    );
    expect(health.reason).toBe(ejected!.reason);
  });

  it('with activeCheckUnejects false, passing checks leave an ejected backend out until its ejection time is up', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options({ outlier: { ...outlier, activeCheckUnejects: false } }));
    health.recordCheck(true, 'HTTP 200');
    let ejected: ReturnType<BackendHealth['recordRequest']>;
    for (let i = 0; i < 4; i++) ejected = health.recordRequest('http-5xx', always);
    expect(ejected!.reason).toBe('4 consecutive 5xx responses; ejected for 10000ms (ejection #1)');
    for (let second = 1; second < 10; second++) {
      clock.advance(1_000);
      expect(health.recordCheck(true, 'HTTP 200')).toBeUndefined();
      expect(health.state).toBe('ejected');
      expect(health.reason).toBe(ejected!.reason);
    }
    clock.advance(999);
    expect(health.endEjectionIfDue()).toBeUndefined();
    clock.advance(1);
    expect(health.endEjectionIfDue()).toMatchObject({
      from: 'ejected',
      to: 'up',
      reason: 'ejection time (10000ms) elapsed, back on trial; it was ejected for 4 consecutive 5xx responses',
    });
    // Failing checks still take it down while ejected: down is the stronger verdict.
    for (let i = 0; i < 4; i++) health.recordRequest('http-5xx', always);
    for (let i = 0; i < 3; i++) health.recordCheck(false, 'HTTP 500');
    expect(health.state).toBe('down');
  });

  it('says "ejected for" when the pool has no active checks, whatever activeCheckUnejects says', () => {
    const health = new BackendHealth(new FakeClock(), options({ activeChecks: false }));
    let ejected: ReturnType<BackendHealth['recordRequest']>;
    for (let i = 0; i < 3; i++) ejected = health.recordRequest('gateway-failure', always);
    expect(ejected!.reason).toBe('3 consecutive gateway failures; ejected for 10000ms (ejection #1)');
  });

  it('failing checks take an ejected backend down, which supersedes the ejection', () => {
    const health = new BackendHealth(new FakeClock(), options({ fall: 2 }));
    health.recordCheck(true, 'ok');
    for (let i = 0; i < 3; i++) health.recordRequest('gateway-failure', always);
    health.recordCheck(false, 'x');
    expect(health.state).toBe('ejected');
    expect(health.recordCheck(false, 'x')).toMatchObject({ from: 'ejected', to: 'down' });
    expect(health.endEjectionIfDue()).toBeUndefined();
  });

  it('never ejects a backend that is down (panic-mode traffic to it says nothing new)', () => {
    const health = new BackendHealth(new FakeClock(), options());
    health.recordCheck(false, 'x');
    for (let i = 0; i < 10; i++) expect(health.recordRequest('gateway-failure', always)).toBeUndefined();
    expect(health.state).toBe('down');
  });

  it('caps at base when maxEjectionTime is below it', () => {
    expect(ejectionDurationMs(3, { ...outlier, baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 1_000 })).toBe(10_000);
  });
});

describe('slow start', () => {
  it('ramps linearly from the floor to full weight', () => {
    expect(slowStartFactor(0, 10_000)).toBe(SLOW_START_FLOOR);
    expect(slowStartFactor(5_000, 10_000)).toBeCloseTo(0.55);
    expect(slowStartFactor(2_500, 10_000)).toBeCloseTo(0.325);
    expect(slowStartFactor(10_000, 10_000)).toBe(1);
    expect(slowStartFactor(123, 0)).toBe(1);
  });

  it('applies after coming back up, at the given times', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options({ rise: 1, slowStartMs: 10_000 }));
    expect(health.weightFactor()).toBe(1);
    health.recordCheck(false, 'x');
    clock.advance(3_000);
    health.recordCheck(true, 'ok');
    expect(health.weightFactor()).toBeCloseTo(0.1);
    clock.advance(4_000);
    expect(health.weightFactor()).toBeCloseTo(0.46);
    clock.advance(6_000);
    expect(health.weightFactor()).toBe(1);
  });

  it('applies after an ejection ends, and from creation when asked (backend added to a running pool)', () => {
    const clock = new FakeClock();
    const health = new BackendHealth(clock, options({ slowStartMs: 1_000 }));
    for (let i = 0; i < 3; i++) health.recordRequest('gateway-failure', always);
    clock.advance(10_000);
    health.endEjectionIfDue();
    expect(health.weightFactor()).toBeCloseTo(0.1);
    const added = new BackendHealth(clock, options({ slowStartMs: 1_000 }), { slowStart: true });
    clock.advance(500);
    expect(added.weightFactor()).toBeCloseTo(0.55);
  });
});
