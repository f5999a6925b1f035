// One backend's peak-EWMA latency estimate: jumps up at once on a slow answer, decays with time, not request count.
//
// Pure apart from reading the injected Clock. With e the estimate as of the newest sample, taken `age` ago:
// - no sample yet: the estimate is `initial`, and the first sample replaces it;
// - the estimate decays towards zero with time constant `decay` (Finagle's rule): e x exp(-age / decay). A backend
//   that lost its traffic to one slow answer, or to a stall of the whole proxy while it had a request in flight,
//   looks cheaper as time passes instead of staying at its peak;
// - a latency above the decayed estimate replaces it at once (the "peak": a backend turning slow loses traffic on
//   its first slow answer); a faster one changes nothing, the decay brings the estimate down to it. So the estimate
//   is the largest recent latency, discounted by e for every `decay` of its age, whatever the request rate;
// - a sample arriving `decay` or more after the previous one replaces the estimate, faster or not: what was known
//   that long ago is stale. The strategy probes a backend once its newest sample is that old (see `dueForProbe`),
//   so a recovered backend is measured within `decay` and is back at its true latency at once;
// - a failure moves the decayed estimate towards `penalty` by min(1, age / decay) and never lowers it: one reset
//   on a busy backend costs it a few milliseconds, a backend failing every request climbs past its peers within a
//   few requests, and a failure after a quiet spell counts in full.

import type { Clock } from '../clock.js';
import type { RequestOutcome } from '../health/backend-health.js';

/** Milliseconds. */
export interface LatencyEwmaOptions {
  /** Time constant of the decay; also how long a sample stays current. */
  readonly decayMs: number;
  /** The estimate of a backend with no sample yet. */
  readonly initialMs: number;
  /** The latency a failed attempt counts as. */
  readonly penaltyMs: number;
}

export class LatencyEwma {
  private readonly clock: Clock;
  private options: LatencyEwmaOptions;
  /** As of `sampledAt`. */
  private estimate: number;
  /** Clock time of the newest sample; null before the first. */
  private sampledAt: number | null = null;
  private count = 0;

  constructor(clock: Clock, options: LatencyEwmaOptions) {
    this.clock = clock;
    this.options = options;
    this.estimate = options.initialMs;
  }

  /** New decay, initial or penalty after a config change; what was measured is kept. */
  reconfigure(options: LatencyEwmaOptions): void {
    this.options = options;
    if (this.sampledAt === null) this.estimate = options.initialMs;
  }

  /** The current estimate in milliseconds, decayed to now. */
  estimateMs(): number {
    return this.estimateAt(this.clock.now());
  }

  /** The estimate decayed to clock time `now`. */
  private estimateAt(now: number): number {
    if (this.sampledAt === null) return this.estimate;
    const age = now - this.sampledAt;
    const decay = this.options.decayMs;
    return age <= 0 || decay <= 0 ? this.estimate : this.estimate * Math.exp(-age / decay);
  }

  /** Samples taken so far (successes and failures). */
  get samples(): number {
    return this.count;
  }

  /**
   * True once the newest sample is `decay` old: the estimate no longer describes the backend, so the
   * strategy sends it one request to find out. Never true before the first sample: a backend nobody has
   * measured competes with `initial`, like any other.
   */
  dueForProbe(): boolean {
    return this.sampledAt !== null && this.clock.now() - this.sampledAt >= this.options.decayMs;
  }

  /** What one finished attempt tells: a failure is a penalty, a success with a duration a sample, the rest nothing. */
  record(outcome: RequestOutcome, latencyMs: number | undefined): void {
    if (outcome === 'http-5xx' || outcome === 'gateway-failure') this.penalize();
    else if (outcome === 'success' && latencyMs !== undefined) this.observe(latencyMs);
  }

  /** A successful answer that took `latencyMs`. The clock is read once (it is read on every request). */
  observe(latencyMs: number): void {
    // A clock bug upstream (NaN, negative) must not poison the estimate.
    const sample = latencyMs >= 0 && latencyMs < Infinity ? latencyMs : 0;
    const now = this.clock.now();
    const current = this.estimateAt(now);
    this.estimate = this.stalenessAt(now) === 1 ? sample : Math.max(sample, current);
    this.sampled(now);
  }

  /** A failed attempt (connect failure, reset, timeout, 5xx): counts as `penalty` latency. */
  penalize(): void {
    const now = this.clock.now();
    const current = this.estimateAt(now);
    const penalty = Math.max(this.options.penaltyMs, current);
    this.estimate = current + (penalty - current) * this.stalenessAt(now);
    this.sampled(now);
  }

  /** How much of what is known is out of date at `now`: min(1, age / decay) of the newest sample; 1 before the first. */
  private stalenessAt(now: number): number {
    if (this.sampledAt === null) return 1;
    const decay = this.options.decayMs;
    return decay <= 0 ? 1 : Math.min(1, Math.max(0, now - this.sampledAt) / decay);
  }

  private sampled(now: number): void {
    this.sampledAt = now;
    this.count++;
  }
}
