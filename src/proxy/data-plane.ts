// Owns the live routing table: builds pool runtimes from each applied config and swaps them in atomically.

import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { ReplicatedConfig } from '../config/schema.js';
import type { Clock, Random } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import { PoolRuntime, type BackendStateChange, type PoolDeps } from '../balancer/pool.js';
import { upstreamTlsFiles } from '../balancer/upstream-tls.js';
import { errorMessage } from '../errors.js';
import { compileRoutes, lookupRoute, routeLabel, type CompiledRoute, type RouteLookup, type RouteRequest } from './router.js';
import type { PoolEntry } from './forward-types.js';
import { UpstreamRegistry } from './upstream.js';
import { RateLimiters, poolScope, routeScope } from './rate-limit.js';
import { DnsDiscovery, type DiscoveryStatusView } from '../discovery/dns-discovery.js';
import type { DnsLookup } from '../discovery/dns-lookup.js';

export interface DataPlanePool extends PoolEntry {
  readonly pool: PoolRuntime;
}

/** Immutable once built: a request sees one table from start to end, even if a new config lands meanwhile. */
export interface RoutingTable {
  readonly version: number;
  /** The config this table was built from (paths resolved), with what DNS told this node: discovered backends, resolved addresses. */
  readonly config: ReplicatedConfig;
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, DataPlanePool>;
  /** With no routes and exactly one pool, all traffic goes there. */
  readonly fallback: DataPlanePool | null;
}

export interface DataPlaneDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Replaces the real DNS lookup (tests). */
  readonly dnsLookup?: DnsLookup;
}

const EMPTY: RoutingTable = { version: 0, config: { routes: [], pools: {} }, routes: [], pools: new Map(), fallback: null };

export class DataPlane {
  private current: RoutingTable = EMPTY;
  private readonly upstreams = new UpstreamRegistry();
  private readonly limiters: RateLimiters;
  private readonly discovery: DnsDiscovery;
  /** The last config applied, as replicated (before DNS): what DNS answers and TLS file changes rebuild from. */
  private replicated: { readonly version: number; readonly config: ReplicatedConfig } | null = null;
  private readonly deps: PoolDeps;
  private applied = false;
  private waitingReason: () => string = () => 'this node has no config applied yet';
  private readonly appliedListeners = new Set<(version: number, config: ReplicatedConfig) => void>();

  private readonly stateListeners = new Set<(change: BackendStateChange) => void>();
  /** The pools' TLS files (tls.ca, tls.cert, tls.key) being watched, each with its change listener. */
  private readonly watchedTlsFiles = new Map<string, (current: Stats, previous: Stats) => void>();

  constructor(deps: DataPlaneDeps) {
    // Every pool built from here reports backend state changes to whoever listens (worker health snapshots).
    this.deps = { ...deps, onStateChange: (change) => this.stateListeners.forEach((listener) => listener(change)) };
    this.limiters = new RateLimiters(deps.clock, (route) => deps.metrics.rateLimited(route));
    this.discovery = new DnsDiscovery({
      clock: deps.clock,
      logger: deps.logger,
      onChange: () => this.onDnsChange(),
      ...(deps.dnsLookup === undefined ? {} : { lookup: deps.dnsLookup }),
    });
  }

  /** In worker mode requests are in flight in other processes; status asks this instead. */
  remoteInflight: ((pool: string, backend: string) => number) | null = null;

  setRemoteInflight(source: (pool: string, backend: string) => number): void {
    this.remoteInflight = source;
  }

  onBackendStateChange(listener: (change: BackendStateChange) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  get table(): RoutingTable {
    return this.current;
  }

  /** True once any config has been applied. */
  get ready(): boolean {
    return this.applied;
  }

  route(request: RouteRequest): RouteLookup<DataPlanePool> | undefined {
    return lookupRoute(this.current, request);
  }

  notServingReason(): string | null {
    return this.applied ? null : this.waitingReason();
  }

  /** What requests are told before the first config (the cluster store knows whether it waits to be added or for a commit). */
  describeWaiting(reason: () => string): void {
    this.waitingReason = reason;
  }

  /**
   * Builds the new table next to the old one, then swaps; the old pools stop their health checks. A pool whose
   * config did not change is carried over as it is (its health checks keep their schedule): a change to one pool
   * of a large config costs that pool's rebuild, not every pool's.
   */
  apply(version: number, config: ReplicatedConfig): void {
    this.replicated = { version, config };
    this.discovery.update(config);
    this.build(version, config, null);
  }

  /** Whether this node found the backend in DNS (it is not in the replicated config: only drain applies to it). */
  isDiscovered(pool: string, id: string): boolean {
    return this.current.pools.get(pool)?.pool.get(id)?.config.discovered === true;
  }

  /** What DNS last told this node for the pool's discovery name; null without discovery. */
  discoveryStatus(pool: string): DiscoveryStatusView | null {
    const config = this.replicated?.config.pools[pool];
    return config === undefined ? null : this.discovery.status(config);
  }

  /** Resolves once the DNS names of the config applied have had a first answer (or failed), or after `timeoutMs`. */
  dnsSettled(timeoutMs: number): Promise<void> {
    return this.discovery.settled(timeoutMs);
  }

  /** A DNS answer changed: the pools it concerns are rebuilt (the others carried over as they run), under the same version. */
  private onDnsChange(): void {
    const applied = this.replicated;
    if (applied === null) return;
    try {
      this.build(applied.version, applied.config, null);
    } catch (error) {
      // Only a pool that cannot be built (its TLS files unreadable) gets here; the running table stays.
      this.deps.logger.error('pools could not be rebuilt with the new DNS answers; the previous ones keep serving', { err: errorMessage(error) });
    }
  }

  /**
   * apply(), rebuilding also the pools named in `rebuild` (whose TLS files changed) even if their config did not.
   * `replicated` is expanded with what DNS told this node first: an answer that changes a pool rebuilds that pool.
   */
  private build(version: number, replicated: ReplicatedConfig, rebuild: ReadonlySet<string> | null): void {
    const config = this.discovery.expand(replicated);
    const previous = this.current;
    const pools = new Map<string, DataPlanePool>();
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      const unchanged = previous.pools.get(name);
      if (unchanged !== undefined && rebuild?.has(name) !== true && isDeepStrictEqual(unchanged.pool.config, poolConfig)) {
        pools.set(name, unchanged);
        continue;
      }
      const runtime = PoolRuntime.create(poolConfig, previous.pools.get(name)?.pool, this.deps);
      pools.set(name, {
        pool: runtime,
        upstreams: this.upstreams.forPool(poolConfig, runtime.tls),
        metrics: this.deps.metrics.pool(name),
        rateLimit: this.limiters.get(poolScope(name), poolConfig.rateLimit ?? null),
      });
    }
    const only = pools.size === 1 ? [...pools.values()][0]! : null;
    // A backend edit carries the routes over as they were: their compiled matchers (regexes, header rules) and limiters too.
    const routes =
      isDeepStrictEqual(config.routes, previous.config.routes) && previous.routes.length === config.routes.length
        ? previous.routes
        : compileRoutes(config.routes, (route, label) => this.limiters.get(routeScope(label), route.rateLimit ?? null));
    this.current = {
      version,
      config,
      routes,
      pools,
      fallback: config.routes.length === 0 ? only : null,
    };
    this.limiters.retain([...routes.map((route) => route.rateLimit), ...[...pools.values()].map((entry) => entry.rateLimit ?? null)]);
    this.applied = true;
    for (const entry of pools.values()) entry.pool.start();
    for (const [name, entry] of previous.pools) if (pools.get(name) !== entry) entry.pool.stop();
    this.upstreams.retain([...pools.values()].map((entry) => entry.upstreams));
    this.deps.metrics.retain([...pools.values()].map((entry) => ({ pool: entry.pool.name, backends: entry.pool.backends.map((b) => b.id) })), config.routes.map(routeLabel));
    this.deps.metrics.setConfigVersion(version);
    this.watchTlsFiles(config);
    for (const listener of this.appliedListeners) listener(version, config);
  }

  /**
   * Watches the pools' TLS files: when one changes (a renewed client certificate, a new CA), the pools that use it are
   * rebuilt from the same config, so new backend connections use the new files while requests on the old ones finish
   * (workers get the config again and read the files themselves). Files that do not read or do not fit keep the pools
   * as they were.
   */
  private watchTlsFiles(config: ReplicatedConfig): void {
    const wanted = new Set(Object.values(config.pools).flatMap(upstreamTlsFiles));
    for (const [file, listener] of this.watchedTlsFiles) {
      if (wanted.has(file)) continue;
      unwatchFile(file, listener);
      this.watchedTlsFiles.delete(file);
    }
    for (const file of wanted) {
      if (this.watchedTlsFiles.has(file)) continue;
      const listener = (current: Stats, previous: Stats): void => {
        if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size) this.reloadTlsFiles(file);
      };
      watchFile(file, { interval: 1_000, persistent: false }, listener);
      this.watchedTlsFiles.set(file, listener);
    }
  }

  private reloadTlsFiles(file: string): void {
    if (this.replicated === null) return;
    const { version, config } = this.replicated;
    const affected = new Set(Object.values(config.pools).filter((pool) => upstreamTlsFiles(pool).includes(file)).map((pool) => pool.name));
    try {
      this.build(version, config, affected);
      this.deps.logger.info('pool TLS files reloaded', { file });
    } catch (error) {
      this.deps.logger.error('pool TLS files reload failed; keeping the previous ones', { file, error: errorMessage(error) });
    }
  }

  /** Told of every config applied from now on (worker processes get their copy this way). */
  onApplied(listener: (version: number, config: ReplicatedConfig) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  stop(): void {
    this.discovery.stop();
    for (const [file, listener] of this.watchedTlsFiles) unwatchFile(file, listener);
    this.watchedTlsFiles.clear();
    for (const entry of this.current.pools.values()) entry.pool.stop();
    this.upstreams.closeAll();
  }
}
