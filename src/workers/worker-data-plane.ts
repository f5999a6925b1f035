// A worker's data plane: routes and pools built from the primary's config, availability and weights from its health snapshots.

import { LatencyEwma } from '../balancer/latency-ewma.js';
import { pickWithAffinity, type PickRequest } from '../balancer/affinity.js';
import { latencyOptions } from '../balancer/pool.js';
import { StickyTable } from '../balancer/sticky.js';
import { readUpstreamTls } from '../balancer/upstream-tls.js';
import { createStrategy, type Strategy } from '../balancer/strategy.js';
import { retryBudgetAllows } from '../balancer/retry-budget.js';
import type { Clock, Random } from '../clock.js';
import type { PoolConfig, ReplicatedConfig } from '../config/schema.js';
import type { Metrics, BackendMetrics } from '../metrics/types.js';
import type { ForwardBackend, ForwardPool, PoolEntry, RequestOutcome } from '../proxy/forward-types.js';
import { compileRoutes, lookupRoute, routeLabel, type CompiledRoute, type RouteRequest } from '../proxy/router.js';
import type { RouteDecision, RouteSource } from '../proxy/listener.js';
import { UpstreamRegistry } from '../proxy/upstream.js';
import { RateLimiters, poolScope, routeScope } from '../proxy/rate-limit.js';
import type { PoolHealthView } from './protocol.js';

export type OutcomeSink = (pool: string, backend: string, outcome: RequestOutcome, latencyMs: number | undefined) => void;

/**
 * In-flight counts and the latency estimate outlive config versions, like the primary's, so a swap never loses a
 * running request or what was measured. The estimate is this worker's own: its strategy picks by what its own
 * requests measured, at once; the primary's (status, metrics) is fed the same samples through the outcome reports.
 */
interface BackendCounters {
  inflight: number;
  readonly latency: LatencyEwma;
}

class RemoteBackend implements ForwardBackend {
  available: boolean;
  effectiveWeight: number;

  constructor(
    readonly id: string,
    readonly url: string,
    readonly metrics: BackendMetrics,
    private readonly pool: string,
    private readonly counters: BackendCounters,
    private readonly sink: OutcomeSink,
    drain: boolean,
    readonly weight: number,
    backup: boolean,
  ) {
    // Until the first health snapshot arrives, the primary's start-up rule holds: primaries up unless draining.
    this.available = !drain && !backup;
    this.effectiveWeight = weight;
  }

  get inflight(): number {
    return this.counters.inflight;
  }

  get latency(): LatencyEwma {
    return this.counters.latency;
  }

  requestStarted(): void {
    this.counters.inflight++;
  }

  requestFinished(outcome: RequestOutcome, latencyMs?: number): void {
    if (this.counters.inflight > 0) this.counters.inflight--;
    if (outcome !== 'aborted') this.counters.latency.record(outcome, latencyMs);
    this.sink(this.pool, this.id, outcome, latencyMs);
  }
}

class RemotePool implements ForwardPool {
  readonly backends: RemoteBackend[];
  readonly sticky: StickyTable | null;
  private readonly strategy: Strategy;
  private readonly byId: ReadonlyMap<string, RemoteBackend>;
  private retriesInFlight = 0;
  private retryAfter = 1;

  constructor(
    readonly config: PoolConfig,
    backends: RemoteBackend[],
    random: Random,
  ) {
    this.backends = backends;
    this.byId = new Map(backends.map((backend) => [backend.id, backend]));
    // Built from the same config as the primary's, so the hash tables and cookie values are the primary's.
    this.strategy = createStrategy(config.strategy, random, { ringSize: config.ringSize });
    this.sticky = config.sticky === null ? null : new StickyTable(config.sticky, config.name, backends.map((backend) => backend.id));
  }

  get name(): string {
    return this.config.name;
  }

  pick(excluded?: ReadonlySet<string>, request?: PickRequest): RemoteBackend | undefined {
    return pickWithAffinity(this.strategy, this.backends, this.sticky, this.byId, excluded, request);
  }

  tryStartRetry(): boolean {
    let active = 0;
    for (const backend of this.backends) active += backend.inflight;
    if (!retryBudgetAllows(this.retriesInFlight, active, this.config.retryBudget)) return false;
    this.retriesInFlight++;
    return true;
  }

  finishRetry(): void {
    if (this.retriesInFlight > 0) this.retriesInFlight--;
  }

  retryAfterSeconds(): number {
    return this.retryAfter;
  }

  applyHealth(view: PoolHealthView): void {
    this.retryAfter = view.retryAfterSeconds;
    for (const backend of this.backends) {
      const health = view.backends[backend.id];
      if (health === undefined) continue;
      backend.available = health.available;
      backend.effectiveWeight = health.effectiveWeight;
    }
  }
}

interface Table {
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, PoolEntry & { readonly pool: RemotePool }>;
  readonly fallback: (PoolEntry & { readonly pool: RemotePool }) | null;
}

export class WorkerDataPlane implements RouteSource {
  private table: Table = { routes: [], pools: new Map(), fallback: null };
  private applied = false;
  private readonly counters = new Map<string, BackendCounters>();
  private readonly upstreams = new UpstreamRegistry();
  private lastHealth: Readonly<Record<string, PoolHealthView>> = {};
  /** Each worker keeps its own buckets: a client gets the limit in every worker it reaches (see docs/operations.md). */
  private readonly limiters: RateLimiters;

  constructor(
    private readonly metrics: Metrics,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly sink: OutcomeSink,
  ) {
    this.limiters = new RateLimiters(clock, (route) => metrics.rateLimited(route));
  }

  route(request: RouteRequest): RouteDecision | undefined {
    return lookupRoute(this.table, request);
  }

  notServingReason(): string | null {
    return this.applied ? null : 'this node has no config applied yet';
  }

  apply(config: ReplicatedConfig): void {
    const pools = new Map<string, PoolEntry & { pool: RemotePool }>();
    const liveKeys = new Set<string>();
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      const latency = latencyOptions(poolConfig);
      const backends = poolConfig.backends.map((backend) => {
        const key = `${name}\u0000${backend.id}\u0000${backend.url}`;
        liveKeys.add(key);
        let counters = this.counters.get(key);
        if (counters === undefined) {
          counters = { inflight: 0, latency: new LatencyEwma(this.clock, latency) };
          this.counters.set(key, counters);
        } else counters.latency.reconfigure(latency);
        return new RemoteBackend(backend.id, backend.url, this.metrics.backend(name, backend.id), name, counters, this.sink, backend.drain, backend.weight, backend.backup);
      });
      const pool = new RemotePool(poolConfig, backends, this.random);
      const health = this.lastHealth[name];
      if (health !== undefined) pool.applyHealth(health);
      pools.set(name, {
        pool,
        upstreams: this.upstreams.forPool(poolConfig, readUpstreamTls(poolConfig)),
        metrics: this.metrics.pool(name),
        rateLimit: this.limiters.get(poolScope(name), poolConfig.rateLimit ?? null),
      });
    }
    for (const key of this.counters.keys()) if (!liveKeys.has(key)) this.counters.delete(key);
    const only = pools.size === 1 ? [...pools.values()][0]! : null;
    const routes = compileRoutes(config.routes, (route, label) => this.limiters.get(routeScope(label), route.rateLimit ?? null));
    this.table = { routes, pools, fallback: config.routes.length === 0 ? only : null };
    this.limiters.retain([...routes.map((route) => route.rateLimit), ...[...pools.values()].map((entry) => entry.rateLimit ?? null)]);
    this.applied = true;
    this.upstreams.retain([...pools.values()].map((entry) => entry.upstreams));
    this.metrics.retain([...pools.values()].map((entry) => ({ pool: entry.pool.name, backends: entry.pool.backends.map((b) => b.id) })), config.routes.map(routeLabel));
  }

  applyHealth(pools: Readonly<Record<string, PoolHealthView>>): void {
    this.lastHealth = pools;
    for (const [name, view] of Object.entries(pools)) this.table.pools.get(name)?.pool.applyHealth(view);
  }

  /** pool -> backend -> in flight, for the primary's status view. */
  inflight(): Record<string, Record<string, number>> {
    const result: Record<string, Record<string, number>> = {};
    for (const [name, entry] of this.table.pools) {
      const byBackend: Record<string, number> = {};
      for (const backend of entry.pool.backends) byBackend[backend.id] = backend.inflight;
      result[name] = byBackend;
    }
    return result;
  }

  stop(): void {
    this.upstreams.closeAll();
  }
}
