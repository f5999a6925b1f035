// Owns the live routing table: builds pool runtimes from each applied config and swaps them in atomically.

import type { ReplicatedConfig } from '../config/schema.js';
import type { Clock, Random } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import { PoolRuntime } from '../balancer/pool.js';
import { compileRoutes, matchRoute, type CompiledRoute } from './router.js';
import type { PoolEntry } from './forward.js';
import { UpstreamRegistry } from './upstream.js';

export interface DataPlanePool extends PoolEntry {
  readonly pool: PoolRuntime;
}

/** Immutable once built: a request sees one table from start to end, even if a new config lands meanwhile. */
export interface RoutingTable {
  readonly version: number;
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, DataPlanePool>;
  /** With no routes and exactly one pool, all traffic goes there. */
  readonly fallback: DataPlanePool | null;
}

export interface RouteDecision {
  readonly entry: DataPlanePool;
  readonly maxBodySize: number;
}

export interface DataPlaneDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

const EMPTY: RoutingTable = { version: 0, routes: [], pools: new Map(), fallback: null };

export class DataPlane {
  private current: RoutingTable = EMPTY;
  private readonly upstreams = new UpstreamRegistry();
  private readonly deps: DataPlaneDeps;
  private applied = false;

  constructor(deps: DataPlaneDeps) {
    this.deps = deps;
  }

  get table(): RoutingTable {
    return this.current;
  }

  /** True once any config has been applied. */
  get ready(): boolean {
    return this.applied;
  }

  route(host: string, path: string): RouteDecision | undefined {
    const table = this.current;
    if (table.fallback !== null) return { entry: table.fallback, maxBodySize: 0 };
    const route = matchRoute(table.routes, host, path);
    if (route === undefined) return undefined;
    const entry = table.pools.get(route.pool);
    return entry === undefined ? undefined : { entry, maxBodySize: route.maxBodySize };
  }

  /** Builds the new table next to the old one, then swaps; the old pools stop their health checks. */
  apply(version: number, config: ReplicatedConfig): void {
    const previous = this.current;
    const pools = new Map<string, DataPlanePool>();
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      const runtime = PoolRuntime.create(poolConfig, previous.pools.get(name)?.pool, this.deps);
      pools.set(name, { pool: runtime, upstreams: this.upstreams.forPool(poolConfig), metrics: this.deps.metrics.pool(name) });
    }
    const only = pools.size === 1 ? [...pools.values()][0]! : null;
    this.current = {
      version,
      routes: compileRoutes(config.routes),
      pools,
      fallback: config.routes.length === 0 ? only : null,
    };
    this.applied = true;
    for (const entry of pools.values()) entry.pool.start();
    for (const entry of previous.pools.values()) entry.pool.stop();
    this.upstreams.retain([...pools.values()].map((entry) => entry.upstreams));
    this.deps.metrics.retain([...pools.values()].map((entry) => ({ pool: entry.pool.name, backends: entry.pool.backends.map((b) => b.id) })));
    this.deps.metrics.setConfigVersion(version);
  }

  stop(): void {
    for (const entry of this.current.pools.values()) entry.pool.stop();
    this.upstreams.closeAll();
  }
}
