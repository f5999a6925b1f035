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
