// What the forwarder needs of pools and backends, and what it tells them; the pool runtime and the worker's data plane provide these.

import type { PickRequest } from '../balancer/affinity.js';
import type { StickyTable } from '../balancer/sticky.js';
import type { PoolConfig } from '../config/schema.js';
import type { BackendMetrics, PoolMetrics } from '../metrics/types.js';
import type { Upstream } from './upstream.js';
import type { RateLimiter } from './rate-limit.js';

export type { RequestOutcome } from '../health/backend-health.js';
import type { RequestOutcome } from '../health/backend-health.js';

/** What the forwarder needs of a backend; the pool runtime's backends provide it. */
export interface ForwardBackend {
  readonly id: string;
  /** Requests in flight to this backend, across config versions. */
  readonly inflight: number;
  readonly metrics: BackendMetrics;
  requestStarted(): void;
  /** `latencyMs`: how long the attempt took, from pick to the end of the response (the latency estimate's sample). */
  requestFinished(outcome: RequestOutcome, latencyMs?: number): void;
}

/** What the forwarder needs of a pool; the pool runtime provides it. */
export interface ForwardPool {
  readonly name: string;
  readonly config: PoolConfig;
  /** The pool's sticky cookie values when it has sticky sessions: the forwarder sets the cookie on answers. */
  readonly sticky: StickyTable | null;
  pick(excluded?: ReadonlySet<string>, request?: PickRequest): ForwardBackend | undefined;
  tryStartRetry(): boolean;
  finishRetry(): void;
  retryAfterSeconds(): number;
}

/** One pool as the data plane serves it: its runtime, its upstreams by backend id, its metric children. */
export interface PoolEntry {
  readonly pool: ForwardPool;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly metrics: PoolMetrics;
  /** The pool's per-client limit in this process; absent or null: none. */
  readonly rateLimit?: RateLimiter | null;
}
