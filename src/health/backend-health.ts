// The health state machine of one backend: active-check rise/fall, passive outlier ejection with backoff, slow start.
//
// Pure apart from reading the injected Clock: no timers, no I/O. The owner (PoolRuntime) schedules the
// end of an ejection at `ejectedUntil` and calls endEjectionIfDue(); everything else is driven by the
// calls below, so every rule here is testable on a FakeClock.

import type { Clock } from '../clock.js';
import type { OutlierDetectionConfig } from '../config/schema.js';

export type HealthState = 'up' | 'down' | 'ejected';

/** What the data plane learned from one proxied request. */
export type RequestOutcome = 'success' | 'http-5xx' | 'gateway-failure' | 'aborted';

export interface HealthTransition {
  readonly from: HealthState;
  readonly to: HealthState;
  readonly reason: string;
  readonly at: number;
}

export interface CheckRecord {
  readonly ok: boolean;
  readonly at: number;
  readonly detail: string;
}

export interface BackendHealthOptions {
  /** Consecutive passing checks that bring a down backend up. */
  readonly rise: number;
  /** Consecutive failing checks that take an up backend down. */
  readonly fall: number;
  /** False when the pool has no active checks: nothing could bring a down backend back, so none is ever down. */
  readonly activeChecks: boolean;
  readonly outlier: OutlierDetectionConfig;
  readonly slowStartMs: number;
}

/** Share of the configured weight a backend gets the moment it becomes available (Envoy's min_weight_percent). */
export const SLOW_START_FLOOR = 0.1;

/** Linear ramp from SLOW_START_FLOOR to 1 over slowStartMs; 1 when slow start is off or over. */
export function slowStartFactor(elapsedMs: number, slowStartMs: number): number {
  if (slowStartMs <= 0 || elapsedMs >= slowStartMs) return 1;
  if (elapsedMs <= 0) return SLOW_START_FLOOR;
  return SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * (elapsedMs / slowStartMs);
}

/** Envoy's rule: base x number of ejections, never above max (nor below base when max < base). */
export function ejectionDurationMs(multiplier: number, outlier: OutlierDetectionConfig): number {
  return Math.min(outlier.baseEjectionTimeMs * multiplier, Math.max(outlier.maxEjectionTimeMs, outlier.baseEjectionTimeMs));
}

export class BackendHealth {
  private readonly clock: Clock;
  private options: BackendHealthOptions;
  private current: HealthState = 'up';
  /**
   * Start-up rule: a backend begins `up` and its very first check result decides at once; rise/fall
   * apply from then on. Starting down would make every restart of the gateway an outage of
   * rise x interval even when all backends are fine; starting up costs at most one interval of
   * routing to a dead backend, and those requests fail on connect and are retried elsewhere.
   */
  private firstCheckPending = true;
  private checkSuccesses = 0;
  private checkFailures = 0;
  private gatewayFailures = 0;
  private consecutive5xx = 0;
  /** Grows by one per ejection and decays while healthy; sets the next ejection's length. */
  private multiplier = 0;
  /** When the multiplier last changed or the backend last returned, the origin for decay. */
  private multiplierSince = 0;
  private totalEjections = 0;
  private ejectedUntilMs: number | null = null;
  /** When the current ejection began and why (the detector's words), for the reason shown when it ends. */
  private ejectionStartedAt = 0;
  private ejectionCause = '';
  /** How long the last ejection lasted when a passing active check ended it; null when it ran its time (or none yet). */
  private lastEjectionEndedByCheckAfterMs: number | null = null;
  /** Start of the current slow-start ramp, null when at full weight. */
  private rampStart: number | null = null;
  private last: CheckRecord | undefined;
  private lastReason = 'initial state: up until the first check';

  constructor(clock: Clock, options: BackendHealthOptions, init: { slowStart?: boolean } = {}) {
    this.clock = clock;
    this.options = options;
    if (!options.activeChecks) this.lastReason = 'no active health check';
    if (init.slowStart === true && options.slowStartMs > 0) this.rampStart = clock.now();
  }

  get state(): HealthState {
    return this.current;
  }
  get ejectedUntil(): number | null {
    return this.ejectedUntilMs;
  }
  get ejections(): number {
    return this.totalEjections;
  }
  /** Consecutive failures of whichever kind is currently counting towards a transition. */
  get consecutiveFailures(): number {
    return Math.max(this.checkFailures, this.gatewayFailures, this.consecutive5xx);
  }
  get consecutiveCheckSuccesses(): number {
    return this.checkSuccesses;
  }
  get lastCheck(): CheckRecord | undefined {
    return this.last;
  }
  get reason(): string {
    return this.lastReason;
  }

  /** The ejection multiplier after decay, as the next ejection would see it. */
  currentMultiplier(): number {
    this.decay();
    return this.multiplier;
  }

  /** New thresholds after a config change; counters and state are kept. */
  reconfigure(options: BackendHealthOptions): HealthTransition | undefined {
    this.options = options;
    if (options.slowStartMs <= 0) this.rampStart = null;
    if (!options.activeChecks) {
      this.checkFailures = 0;
      this.checkSuccesses = 0;
      if (this.current === 'down') return this.move('up', 'active health check removed from config');
    }
    if (!options.outlier.enabled && this.current === 'ejected') {
      return this.returnFromEjection('outlier detection disabled in config');
    }
    return undefined;
  }

  /** Slow-start multiplier for the configured weight at the current time. */
  weightFactor(): number {
    if (this.rampStart === null) return 1;
    const factor = slowStartFactor(this.clock.now() - this.rampStart, this.options.slowStartMs);
    if (factor >= 1) this.rampStart = null;
    return factor;
  }

  recordCheck(ok: boolean, detail: string): HealthTransition | undefined {
    const now = this.clock.now();
    this.last = { ok, at: now, detail };
    const first = this.firstCheckPending;
    this.firstCheckPending = false;
    if (ok) {
      this.checkFailures = 0;
      this.checkSuccesses++;
      if (this.current === 'down') {
        if (this.checkSuccesses >= this.options.rise) {
          return this.becomeAvailable(`${this.checkSuccesses} consecutive passing checks`);
        }
        return undefined;
      }
      // Envoy's default: an active check that passes ends a passive ejection early (activeCheckUnejects).
      if (this.current === 'ejected' && this.activeCheckEndsEjection()) {
        const afterMs = Math.round(now - this.ejectionStartedAt);
        this.lastEjectionEndedByCheckAfterMs = afterMs;
        return this.returnFromEjection(`active check passed: ${detail}; ended after ${afterMs}ms an ejection for ${this.ejectionCause}`);
      }
      // Status shows why a backend is up; "until the first check" stops being true once it ran.
      if (first && this.current === 'up') this.lastReason = 'first check passed';
      return undefined;
    }
    this.checkSuccesses = 0;
    this.checkFailures++;
    if (this.current === 'down') return undefined;
    if (first) return this.goDown(`first check failed: ${detail}`);
    if (this.checkFailures >= this.options.fall) {
      return this.goDown(`${this.checkFailures} consecutive failed checks: ${detail}`);
    }
    return undefined;
  }

  /**
   * Passive signal from a finished request. `mayEject` asks the pool whether maxEjectionPercent
   * leaves room; it is only consulted when a threshold is reached.
   */
  recordRequest(outcome: RequestOutcome, mayEject: () => boolean): HealthTransition | undefined {
    switch (outcome) {
      case 'aborted':
        // The client went away: says nothing about the backend.
        return undefined;
      case 'success':
        this.gatewayFailures = 0;
        this.consecutive5xx = 0;
        return undefined;
      case 'http-5xx':
        // A 5xx is an answer, so the connection-level streak is broken (Envoy counts them apart).
        this.gatewayFailures = 0;
        this.consecutive5xx++;
        break;
      case 'gateway-failure':
        // Envoy maps local connection failures to 5xx too, so they count towards both streaks.
        this.gatewayFailures++;
        this.consecutive5xx++;
        break;
    }
    const outlier = this.options.outlier;
    if (!outlier.enabled || this.current !== 'up') return undefined;
    let reason: string | undefined;
    if (outlier.consecutiveGatewayFailures > 0 && this.gatewayFailures >= outlier.consecutiveGatewayFailures) {
      reason = `${this.gatewayFailures} consecutive gateway failures`;
    } else if (outlier.consecutive5xx > 0 && this.consecutive5xx >= outlier.consecutive5xx) {
      reason = `${this.consecutive5xx} consecutive 5xx responses`;
    }
    if (reason === undefined || !mayEject()) return undefined;
    return this.eject(reason);
  }

  /** Called by the owner's timer; a no-op when the ejection was already ended (or extended) meanwhile. */
  endEjectionIfDue(): HealthTransition | undefined {
    if (this.current !== 'ejected' || this.ejectedUntilMs === null) return undefined;
    const now = this.clock.now();
    if (now < this.ejectedUntilMs) return undefined;
    this.lastEjectionEndedByCheckAfterMs = null;
    return this.returnFromEjection(`ejection time (${Math.round(now - this.ejectionStartedAt)}ms) elapsed, back on trial; it was ejected for ${this.ejectionCause}`);
  }

  /** Whether a passing active check brings this backend back before its ejection time is up. */
  private activeCheckEndsEjection(): boolean {
    return this.options.activeChecks && this.options.outlier.activeCheckUnejects;
  }

  private eject(cause: string): HealthTransition {
    const now = this.clock.now();
    this.decay();
    this.multiplier++;
    this.multiplierSince = now;
    this.totalEjections++;
    const duration = ejectionDurationMs(this.multiplier, this.options.outlier);
    this.ejectedUntilMs = now + duration;
    this.ejectionStartedAt = now;
    this.ejectionCause = cause;
    this.gatewayFailures = 0;
    this.consecutive5xx = 0;
    // Say how the ejection will really end: with activeCheckUnejects the next passing check usually ends it long before the time.
    let reason = this.activeCheckEndsEjection()
      ? `${cause}; ejected until the next passing active check, at most ${duration}ms (ejection #${this.totalEjections})`
      : `${cause}; ejected for ${duration}ms (ejection #${this.totalEjections})`;
    const endedByCheckAfter = this.lastEjectionEndedByCheckAfterMs;
    if (endedByCheckAfter !== null && this.activeCheckEndsEjection()) {
      reason +=
        `; a passing active check ended the previous ejection after ${endedByCheckAfter}ms while live requests kept failing:` +
        ' set outlierDetection.activeCheckUnejects: false to keep it out for the whole ejection time';
    }
    return this.move('ejected', reason);
  }

  /**
   * The multiplier drops by one for every full baseEjectionTime the backend has spent available since
   * it last returned (or was last ejected), so a backend that flapped once is not punished forever,
   * while one that keeps failing soon after returning climbs towards maxEjectionTime.
   */
  private decay(): void {
    if (this.multiplier === 0 || this.current === 'ejected') return;
    const base = this.options.outlier.baseEjectionTimeMs;
    if (base <= 0) return;
    const periods = Math.floor((this.clock.now() - this.multiplierSince) / base);
    if (periods <= 0) return;
    this.multiplier = Math.max(0, this.multiplier - periods);
    this.multiplierSince += periods * base;
  }

  private returnFromEjection(reason: string): HealthTransition {
    this.ejectedUntilMs = null;
    this.multiplierSince = this.clock.now();
    return this.becomeAvailable(reason);
  }

  private goDown(reason: string): HealthTransition {
    // Down is the stronger verdict: it supersedes an ejection (the multiplier is kept for next time).
    if (this.current === 'ejected') {
      this.ejectedUntilMs = null;
      this.multiplierSince = this.clock.now();
    }
    this.checkSuccesses = 0;
    this.rampStart = null;
    return this.move('down', reason);
  }

  private becomeAvailable(reason: string): HealthTransition {
    this.checkFailures = 0;
    this.gatewayFailures = 0;
    this.consecutive5xx = 0;
    if (this.options.slowStartMs > 0) this.rampStart = this.clock.now();
    return this.move('up', reason);
  }

  private move(to: HealthState, reason: string): HealthTransition {
    const transition: HealthTransition = { from: this.current, to, reason, at: this.clock.now() };
    this.current = to;
    this.lastReason = reason;
    return transition;
  }
}
