// Envoy's retry budget: how many retries may be in flight for a pool, given its active requests.

import type { RetryBudgetConfig } from '../config/schema.js';

/** The ceiling on concurrent retries: percent of active requests, but never below minConcurrent. */
export function retryBudgetLimit(activeRequests: number, budget: RetryBudgetConfig): number {
  return Math.max(budget.minConcurrent, (activeRequests * budget.percent) / 100);
}

/** Whether one more retry may start while `retriesInFlight` are already running. */
export function retryBudgetAllows(retriesInFlight: number, activeRequests: number, budget: RetryBudgetConfig): boolean {
  return retriesInFlight + 1 <= retryBudgetLimit(activeRequests, budget);
}

/**
 * The retries in flight for one pool, held by every generation of it (a config swap must not reset what the budget
 * counts) and shared by the primary's pools and a worker's alike.
 */
export class RetriesInFlight {
  private running = 0;

  get count(): number {
    return this.running;
  }

  /** Claims a slot when the budget allows one more retry beside the backends' active requests; pair every true with finish(). */
  tryStart(backends: Iterable<{ readonly inflight: number }>, budget: RetryBudgetConfig): boolean {
    let active = 0;
    for (const backend of backends) active += backend.inflight;
    if (!retryBudgetAllows(this.running, active, budget)) return false;
    this.running++;
    return true;
  }

  finish(): void {
    if (this.running > 0) this.running--;
  }
}
