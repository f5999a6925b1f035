// Owns the live routing table: builds pools from each applied config and swaps them in atomically, in the primary and in workers alike.

import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { PoolConfig, ReplicatedConfig } from '../config/schema.js';
import type { Clock, Random } from '../clock.js';
import type { Logger } from '../log.js';
import type { BackendConnections, Metrics } from '../metrics/types.js';
import type { BackendStateChange, PoolDeps, PoolRuntime } from '../balancer/pool.js';
import { inPlaceChanges } from '../config/in-place.js';
import type { UpstreamTlsMaterial } from '../balancer/upstream-tls.js';
import { readUpstreamTls, upstreamTlsFiles } from './upstream-tls-files.js';
import { errorMessage } from '../errors.js';
import { compileRoutes, lookupRoute, routeLabel, type CompiledRoute, type RouteLookup, type RouteRequest } from './router.js';
import type { ForwardPool, PoolEntry } from './forward-types.js';
import { UpstreamRegistry } from './upstream.js';
import { RateLimiters, poolScope, routeScope } from './rate-limit.js';
import { DnsDiscovery, type DiscoveryStatusView } from '../discovery/dns-discovery.js';
import type { DnsLookup } from '../discovery/dns-lookup.js';

/** A pool as the data plane holds it: what the forwarder uses, and what swapping it in and out of the table needs. */
export interface ServedPool extends ForwardPool {
  readonly backends: ReadonlyArray<{ readonly id: string }>;
  /** What the pool's TLS files held when it was built. */
  readonly tls: UpstreamTlsMaterial;
  /** Makes it the live pool: it takes over the backends kept from the one it replaces. Idempotent. */
  start(): void;
  /** It left the table (replaced or removed): its timers stop; requests on it still finish. */
  stop(): void;
  /**
   * Takes a config that differs from its own only in the weight, drain or backup flag of the backends at `changed`
   * (inPlaceChanges) while it serves, instead of a new pool being built. A pool without it is rebuilt for such a change.
   */
  reconfigure?(config: PoolConfig, changed: readonly number[]): void;
}

/**
 * Builds the pool of a new config from the one it replaces (undefined for a new pool), with what its TLS files hold.
 * What differs by process is here: PoolRuntime.create keeps health in this process (checks, outlier detection); a
 * worker's pools take it from the primary's snapshots and report their requests' outcomes to it.
 */
export type PoolBuilder<P extends ServedPool> = (config: PoolConfig, previous: P | undefined, deps: PoolDeps, tls: UpstreamTlsMaterial) => P;

export interface DataPlanePool<P extends ServedPool = PoolRuntime> extends PoolEntry {
  readonly pool: P;
}

/** Immutable once built: a request sees one table from start to end, even if a new config lands meanwhile. */
export interface RoutingTable<P extends ServedPool = PoolRuntime> {
  readonly version: number;
  /** The config this table was built from (paths resolved), with what DNS told this node: discovered backends, resolved addresses. */
  readonly config: ReplicatedConfig;
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, DataPlanePool<P>>;
  /** With no routes and exactly one pool, all traffic goes there. */
  readonly fallback: DataPlanePool<P> | null;
}

export interface DataPlaneDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Replaces the real DNS lookup (tests). */
  readonly dnsLookup?: DnsLookup;
  /**
   * A worker process: its configs come from the primary already expanded with the primary's DNS answers, and again
   * (naming the pools to rebuild) when a pool's TLS files change; it neither resolves names nor watches files itself.
   */
  readonly fedByPrimary?: boolean;
}

/** Told of every table swapped in: its version and config, and the pools rebuilt because their TLS files changed. */
export type AppliedListener = (version: number, config: ReplicatedConfig, tlsReloaded: readonly string[]) => void;

export class DataPlane<P extends ServedPool = PoolRuntime> {
  private current: RoutingTable<P> = { version: 0, config: { routes: [], pools: {} }, routes: [], pools: new Map(), fallback: null };
  private readonly upstreams = new UpstreamRegistry();
  private readonly limiters: RateLimiters;
  /** Null in a worker (its configs arrive expanded). */
  private readonly discovery: DnsDiscovery | null;
  /** The last config applied, as replicated (before DNS): what DNS answers and TLS file changes rebuild from. */
  private replicated: { readonly version: number; readonly config: ReplicatedConfig } | null = null;
  private readonly deps: PoolDeps;
  private applied = false;
  private waitingReason: () => string = () => 'this node has no config applied yet';
  private readonly appliedListeners = new Set<AppliedListener>();

  private readonly stateListeners = new Set<(change: BackendStateChange) => void>();
  /** False in a worker (the primary watches the files and names the pools to rebuild). */
  private readonly watchesTlsFiles: boolean;
  /** The pools' TLS files (tls.ca, tls.cert, tls.key) being watched, each with its change listener. */
  private readonly watchedTlsFiles = new Map<string, (current: Stats, previous: Stats) => void>();

  /** `buildPool` decides where the pools' health comes from: PoolRuntime.create in the primary (or a single process). */
  constructor(
    deps: DataPlaneDeps,
    private readonly buildPool: PoolBuilder<P>,
  ) {
    // Every pool built from here reports backend state changes to whoever listens (worker health snapshots).
    this.deps = { ...deps, onStateChange: (change) => this.stateListeners.forEach((listener) => listener(change)) };
    this.limiters = new RateLimiters(deps.clock, (route) => deps.metrics.rateLimited(route));
    deps.metrics.backendConnections?.(() => this.openConnections());
    this.watchesTlsFiles = deps.fedByPrimary !== true;
    this.discovery =
      deps.fedByPrimary === true
        ? null
        : new DnsDiscovery({
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

  get table(): RoutingTable<P> {
    return this.current;
  }

  /** True once any config has been applied. */
  get ready(): boolean {
    return this.applied;
  }

  route(request: RouteRequest): RouteLookup<DataPlanePool<P>> | undefined {
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
   * config did not change is carried over as it is (its health checks keep their schedule), unless named in
   * `tlsReloaded` (its TLS files changed: a worker is told so by the primary): a change to one pool of a large
   * config costs that pool's rebuild, not every pool's. A pool whose backends changed only in weight, drain or
   * backup flags is carried over too and takes the change in place at the swap (ServedPool.reconfigure): that
   * costs the edited backends, not the pool's. Throws (the running table stays) when a rebuilt pool's TLS files
   * cannot be read.
   */
  apply(version: number, config: ReplicatedConfig, tlsReloaded: ReadonlySet<string> | null = null): void {
    this.replicated = { version, config };
    this.discovery?.update(config);
    this.build(version, config, tlsReloaded);
  }

  /** Whether this node found the backend in DNS (it is not in the replicated config: only drain applies to it). */
  isDiscovered(pool: string, id: string): boolean {
    return this.current.pools.get(pool)?.pool.config.backends.some((backend) => backend.id === id && backend.discovered === true) === true;
  }

  /** What DNS last told this node for the pool's discovery name; null without discovery. */
  discoveryStatus(pool: string): DiscoveryStatusView | null {
    const config = this.replicated?.config.pools[pool];
    return config === undefined || this.discovery === null ? null : this.discovery.status(config);
  }

  /** Resolves once the DNS names of the config applied have had a first answer (or failed), or after `timeoutMs`. */
  dnsSettled(timeoutMs: number): Promise<void> {
    return this.discovery?.settled(timeoutMs) ?? Promise.resolve();
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
    const config = this.discovery?.expand(replicated) ?? replicated;
    const previous = this.current;
    const pools = new Map<string, DataPlanePool<P>>();
    const rebuilt: string[] = [];
    /** Pools carried over that take their new config in place at the swap (not before: a later pool may fail to build). */
    const reconfigured: Array<{ pool: P; config: PoolConfig; changed: readonly number[] }> = [];
    let carried = 0;
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      const unchanged = previous.pools.get(name);
      const filesChanged = rebuild?.has(name) === true;
      const changed = unchanged === undefined || filesChanged ? null : inPlaceChanges(unchanged.pool.config, poolConfig);
      if (unchanged !== undefined && changed !== null && (changed.length === 0 || unchanged.pool.reconfigure !== undefined)) {
        if (changed.length > 0) reconfigured.push({ pool: unchanged.pool, config: poolConfig, changed });
        pools.set(name, unchanged);
        carried++;
        continue;
      }
      if (filesChanged) rebuilt.push(name);
      // The pool's TLS files are read here, where its config is applied: the pool itself does no I/O.
      const tls = readUpstreamTls(poolConfig);
      const pool = this.buildPool(poolConfig, unchanged?.pool, this.deps, tls);
      pools.set(name, {
        pool,
        upstreams: this.upstreams.forPool(poolConfig, tls, unchanged === undefined ? undefined : { config: unchanged.pool.config, tls: unchanged.pool.tls, upstreams: unchanged.upstreams }),
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
    for (const { pool, config: poolConfig, changed } of reconfigured) pool.reconfigure!(poolConfig, changed);
    for (const entry of pools.values()) entry.pool.start();
    for (const [name, entry] of previous.pools) if (pools.get(name) !== entry) entry.pool.stop();
    // The same pools (none built, none gone) and routes: the same upstreams and metric series are live as before.
    const samePools = carried === pools.size && pools.size === previous.pools.size;
    if (!samePools || routes !== previous.routes) {
      this.upstreams.retain([...pools.values()].map((entry) => entry.upstreams));
      this.deps.metrics.retain([...pools.values()].map((entry) => ({ pool: entry.pool.name, backends: entry.pool.backends.map((b) => b.id) })), config.routes.map(routeLabel));
    }
    this.deps.metrics.setConfigVersion(version);
    this.watchTlsFiles(config);
    for (const listener of this.appliedListeners) listener(version, config, rebuilt);
  }

  /** The connections each backend of each pool has open in this process, for /metrics. */
  private *openConnections(): Iterable<BackendConnections> {
    for (const [pool, entry] of this.current.pools) {
      for (const [backend, upstream] of entry.upstreams) yield { pool, backend, connections: upstream.openConnections() };
    }
  }

  /**
   * Watches the pools' TLS files: when one changes (a renewed client certificate, a new CA), the pools that use it are
   * rebuilt from the same config, so new backend connections use the new files while requests on the old ones finish
   * (workers get the config again and read the files themselves). Files that do not read or do not fit keep the pools
   * as they were.
   */
  private watchTlsFiles(config: ReplicatedConfig): void {
    if (!this.watchesTlsFiles) return;
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
  onApplied(listener: AppliedListener): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  stop(): void {
    this.discovery?.stop();
    for (const [file, listener] of this.watchedTlsFiles) unwatchFile(file, listener);
    this.watchedTlsFiles.clear();
    for (const entry of this.current.pools.values()) entry.pool.stop();
    this.upstreams.closeAll();
  }
}
