// One backend's peak-EWMA latency estimate: jumps up at once on a slow answer, moves down with time, not request count.
//
// Pure apart from reading the injected Clock. The rules, in the order they apply to a sample taken at time t,
// when the previous sample was taken at t0 (elapsed = t - t0) and the estimate is e:
// - no sample yet: the estimate is `initial`, and the first sample replaces it;
// - a latency above e replaces it at once (the "peak": a backend turning slow loses traffic on its first slow answer);
// - anything else moves e towards the sample by min(1, elapsed / decay): at a steady stream of answers this is an
//   exponential moving average with time constant `decay`, whatever the request rate, and a sample arriving
//   `decay` or more after the previous one replaces the estimate (what was known that long ago is stale);
// - a failure is a sample of `penalty` latency that moves e like a lower sample would (never as a peak, so one
//   reset on a busy backend costs it a few milliseconds of estimate, while a backend failing every request climbs
//   past its peers within a few requests) and never lowers the estimate.
// Between samples the estimate does not change: a slow backend that gets no traffic keeps looking slow until a
// probe (see `dueForProbe`) tells otherwise, and status pages show the last thing actually measured.

import type { Clock } from '../clock.js';
import type { RequestOutcome } from '../health/backend-health.js';

/** Milliseconds. */
export interface LatencyEwmaOptions {
  /** Time constant of the moving average; also how long a sample stays current. */
  readonly decayMs: number;
  /** The estimate of a backend with no sample yet. */
  readonly initialMs: number;
  /** The latency a failed attempt counts as. */
  readonly penaltyMs: number;
}

export class LatencyEwma {
  private readonly clock: Clock;
  private options: LatencyEwmaOptions;
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

  /** The current estimate in milliseconds. */
  estimateMs(): number {
    return this.estimate;
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

  /** A successful answer that took `latencyMs`. */
  observe(latencyMs: number): void {
    // A clock bug upstream (NaN, negative) must not poison the estimate.
    const sample = latencyMs >= 0 && latencyMs < Infinity ? latencyMs : 0;
    const weight = this.weightNow();
    if (weight === 1 || sample > this.estimate) this.estimate = sample;
    else this.estimate += (sample - this.estimate) * weight;
  }

  /** A failed attempt (connect failure, reset, timeout, 5xx): counts as `penalty` latency. */
  penalize(): void {
    const penalty = Math.max(this.options.penaltyMs, this.estimate);
    const weight = this.weightNow();
    this.estimate += (penalty - this.estimate) * weight;
  }

  /** The weight of a sample taken now, and the bookkeeping of taking it. */
  private weightNow(): number {
    const now = this.clock.now();
    const previous = this.sampledAt;
    this.sampledAt = now;
    this.count++;
    if (previous === null) return 1;
    const decay = this.options.decayMs;
    return decay <= 0 ? 1 : Math.min(1, Math.max(0, now - previous) / decay);
  }
}
