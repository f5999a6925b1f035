// A worker's pools for the one DataPlane: availability and weights from the primary's health snapshots, outcomes reported back to it.

import { LatencyEwma } from '../balancer/latency-ewma.js';
import { pickWithAffinity, type PickRequest } from '../balancer/affinity.js';
import { latencyOptions, type PoolDeps } from '../balancer/pool.js';
import { StickyTable } from '../balancer/sticky.js';
import { createStrategy, type Strategy } from '../balancer/strategy.js';
import { RetriesInFlight } from '../balancer/retry-budget.js';
import type { UpstreamTlsMaterial } from '../balancer/upstream-tls.js';
import type { PoolConfig } from '../config/schema.js';
import { editedBackend } from '../config/in-place.js';
import type { BackendMetrics } from '../metrics/types.js';
import type { ForwardBackend, RequestOutcome } from '../proxy/forward-types.js';
import type { PoolBuilder, RoutingTable } from '../proxy/data-plane.js';
import type { PoolHealthView } from './protocol.js';

export type OutcomeSink = (pool: string, backend: string, outcome: RequestOutcome, latencyMs: number | undefined) => void;

/**
 * In-flight counts and the latency estimate outlive pool rebuilds (same id and URL), like the primary's, so a swap never
 * loses a running request or what was measured. The estimate is this worker's own: its strategy picks by what its own
 * requests measured, at once; the primary's (status, metrics) is fed the same samples through the outcome reports.
 */
interface BackendCounters {
  inflight: number;
  readonly latency: LatencyEwma;
}

class RemoteBackend implements ForwardBackend {
  available = false;
  effectiveWeight = 0;

  constructor(
    readonly id: string,
    readonly url: string,
    readonly metrics: BackendMetrics,
    private readonly pool: string,
    readonly counters: BackendCounters,
    private readonly sink: OutcomeSink,
    drain: boolean,
    /** The configured weight (hash tables are built from it); set anew only by the pool's reconfigure(). */
    public weight: number,
    backup: boolean,
  ) {
    this.assumeFromConfig(drain, backup);
  }

  /** Until a health snapshot says otherwise, the primary's start-up rule holds: primaries up unless draining. */
  assumeFromConfig(drain: boolean, backup: boolean): void {
    this.available = !drain && !backup;
    this.effectiveWeight = this.weight;
  }

  /** What the primary's snapshot says of this backend. */
  takeHealth(health: { readonly available: boolean; readonly effectiveWeight: number }): void {
    this.available = health.available;
    this.effectiveWeight = health.effectiveWeight;
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

/** A pool whose health is the primary's: it picks and budgets retries like the primary's PoolRuntime, and judges nothing itself. */
export class RemotePool {
  readonly backends: RemoteBackend[];
  readonly sticky: StickyTable | null;
  private readonly strategy: Strategy;
  private readonly byId: ReadonlyMap<string, RemoteBackend>;
  /** Shared with the pool this one replaced, so retries started before a swap still count against the budget. */
  private readonly retries: RetriesInFlight;
  private retryAfter = 1;
  /** The primary's last snapshot of this pool: what a backend edited in place takes its availability from, as a rebuilt pool would. */
  private health: PoolHealthView | undefined;

  constructor(
    /** Replaced only by reconfigure(), by a config that differs in backends' weight, drain or backup flags alone. */
    public config: PoolConfig,
    previous: RemotePool | undefined,
    deps: PoolDeps,
    readonly tls: UpstreamTlsMaterial,
    sink: OutcomeSink,
  ) {
    const latency = latencyOptions(config);
    this.backends = config.backends.map((backend) => {
      const old = previous?.byId.get(backend.id);
      let counters: BackendCounters;
      if (old !== undefined && old.url === backend.url) {
        counters = old.counters;
        counters.latency.reconfigure(latency);
      } else counters = { inflight: 0, latency: new LatencyEwma(deps.clock, latency) };
      return new RemoteBackend(backend.id, backend.url, deps.metrics.backend(config.name, backend.id), config.name, counters, sink, backend.drain, backend.weight, backend.backup);
    });
    this.byId = new Map(this.backends.map((backend) => [backend.id, backend]));
    this.retries = previous?.retries ?? new RetriesInFlight();
    // Built from the same config as the primary's, so the hash tables and cookie values are the primary's.
    this.strategy = createStrategy(config.strategy, deps.random, { ringSize: config.ringSize });
    this.sticky = config.sticky === null ? null : new StickyTable(config.sticky, config.name, this.backends.map((backend) => backend.id));
  }

  get name(): string {
    return this.config.name;
  }

  pick(excluded?: ReadonlySet<string>, request?: PickRequest): RemoteBackend | undefined {
    return pickWithAffinity(this.strategy, this.backends, this.sticky, this.byId, excluded, request);
  }

  tryStartRetry(): boolean {
    return this.retries.tryStart(this.backends, this.config.retryBudget);
  }

  finishRetry(): void {
    this.retries.finish();
  }

  retryAfterSeconds(): number {
    return this.retryAfter;
  }

  /** Nothing to start or stop: health checks and ejection timers run in the primary. */
  start(): void {}

  stop(): void {}

  applyHealth(view: PoolHealthView): void {
    this.health = view;
    this.retryAfter = view.retryAfterSeconds;
    for (const backend of this.backends) {
      const health = view.backends[backend.id];
      if (health !== undefined) backend.takeHealth(health);
    }
  }

  /**
   * Takes `config`, which differs from this pool's only in the weight, drain or backup flag of the backends at `changed`
   * (inPlaceChanges), without a rebuild: each edited backend is what a rebuilt pool would make of it (the start-up rule,
   * then the primary's last snapshot), and hash tables are built again for new weights. Counters and retries stay.
   */
  reconfigure(config: PoolConfig, changed: readonly number[]): void {
    let reweighted = false;
    for (const index of changed) {
      const backend = this.backends[index]!;
      const next = editedBackend(config, index, backend.id);
      if (next.weight !== backend.weight) reweighted = true;
      backend.weight = next.weight;
      backend.assumeFromConfig(next.drain, next.backup);
      const health = this.health?.backends[backend.id];
      if (health !== undefined) backend.takeHealth(health);
    }
    this.config = config;
    if (reweighted) this.strategy.reweighted?.();
  }
}

/**
 * Builds a worker's pools for its DataPlane (the primary's code, fed by the primary) and keeps them on the primary's
 * latest health snapshot, including pools built after it arrived.
 */
export class PrimaryFedPools {
  private lastHealth: Readonly<Record<string, PoolHealthView>> = {};

  constructor(private readonly sink: OutcomeSink) {}

  readonly build: PoolBuilder<RemotePool> = (config, previous, deps, tls) => {
    const pool = new RemotePool(config, previous, deps, tls, this.sink);
    const health = this.lastHealth[config.name];
    if (health !== undefined) pool.applyHealth(health);
    return pool;
  };

  applyHealth(table: RoutingTable<RemotePool>, pools: Readonly<Record<string, PoolHealthView>>): void {
    this.lastHealth = pools;
    for (const [name, view] of Object.entries(pools)) table.pools.get(name)?.pool.applyHealth(view);
  }
}

/** pool -> backend -> requests in flight in this worker, for the primary's status view. */
export function inflightByBackend(table: RoutingTable<RemotePool>): Record<string, Record<string, number>> {
  const result: Record<string, Record<string, number>> = {};
  for (const [name, entry] of table.pools) {
    const byBackend: Record<string, number> = {};
    for (const backend of entry.pool.backends) byBackend[backend.id] = backend.inflight;
    result[name] = byBackend;
  }
  return result;
}
