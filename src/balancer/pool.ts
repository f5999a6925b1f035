// The live state of one pool: backends with health, ejection, drain, slow start and in-flight counts; picking; retry budget.
//
// A PoolRuntime is fixed in shape (its backends, their ids and URLs, and the pool's settings never change); a config
// change builds a new one with PoolRuntime.create(config, previous, deps). State that must survive the swap (health,
// ejections, in-flight counts, retries in flight) lives in objects shared by both generations, so a
// request started on the old pool and finishing after the swap still reports into the right counters.
// The one exception is a change of backends' weight, drain or backup flags alone (config/in-place.ts): the running pool
// takes it with reconfigure(), so the commonest edit of a large pool costs the edited backends, not the pool.

import type { Clock, Random, TimerHandle } from '../clock.js';
import type { BackendConfig, PoolConfig } from '../config/schema.js';
import { editedBackend } from '../config/in-place.js';
import { errorMessage } from '../errors.js';
import { BackendHealth, type BackendHealthOptions, type HealthTransition, type RequestOutcome } from '../health/backend-health.js';
import { HealthChecker } from '../health/checker.js';
import { createProbe, type Probe, type ProbeResult } from '../health/probe.js';
import type { Logger } from '../log.js';
import { parsedUrl } from '../net-address.js';
import type { BackendMetrics, Metrics } from '../metrics/types.js';
import { pickWithAffinity, type PickRequest } from './affinity.js';
import { LatencyEwma, type LatencyEwmaOptions } from './latency-ewma.js';
import { RetriesInFlight } from './retry-budget.js';
import { StickyTable } from './sticky.js';
import { NO_UPSTREAM_TLS, type UpstreamTlsMaterial } from './upstream-tls.js';
import { createStrategy, type Candidate, type Strategy } from './strategy.js';
import { discoveredServerName } from '../discovery/dns-discovery.js';
import type { BackendStateName, BackendStatus, PoolStatusView } from './pool-status.js';

export interface BackendStateChange {
  readonly pool: string;
  readonly backend: string;
  readonly from: BackendStateName;
  readonly to: BackendStateName;
  readonly reason: string;
  /** Clock time (ms) of the change. */
  readonly at: number;
}

export type StateChangeListener = (change: BackendStateChange) => void;

export interface PoolDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Told of every backend state change of this pool and of the pools built from it (the app passes the same one each time). */
  readonly onStateChange?: StateChangeListener;
  /** Replaces the real HTTP/TCP probe (tests). */
  readonly probe?: Probe;
}

/** What outlives a pool rebuild for one backend (same id and URL). */
class BackendLive {
  readonly health: BackendHealth;
  readonly latency: LatencyEwma;
  inflight = 0;
  ejectionTimer: TimerHandle | undefined;
  /** The BackendRuntime of the newest started pool holding this backend; its pool handles transitions. */
  current!: BackendRuntime;

  constructor(health: BackendHealth, latency: LatencyEwma) {
    this.health = health;
    this.latency = latency;
  }
}

export class BackendRuntime implements Candidate {
  readonly id: string;
  /** Replaced only by the pool's reconfigure(), by a config that differs in weight, drain or backup alone. */
  config: BackendConfig;
  readonly url: Readonly<URL>;
  readonly metrics: BackendMetrics;
  /** @internal shared with the same backend in newer/older pool generations. */
  readonly live: BackendLive;
  /** @internal the pool generation this runtime belongs to. */
  readonly pool: PoolRuntime;

  /** @internal built by PoolRuntime.create */
  constructor(pool: PoolRuntime, config: BackendConfig, url: Readonly<URL>, metrics: BackendMetrics, live: BackendLive) {
    this.pool = pool;
    this.id = config.id;
    this.config = config;
    this.url = url;
    this.metrics = metrics;
    this.live = live;
  }

  get inflight(): number {
    return this.live.inflight;
  }

  get state(): BackendStateName {
    return this.config.drain ? 'draining' : this.live.health.state;
  }

  /**
   * Eligible for new requests: in the tier that serves (primaries, or backups while no primary is up), not draining,
   * and up, or anything of that tier not draining in panic mode.
   */
  get available(): boolean {
    return !this.config.drain && this.config.backup === this.pool.backupsServing && (this.live.health.state === 'up' || this.pool.panic);
  }

  /** The configured weight: what consistent-hash tables are built from. */
  get weight(): number {
    return this.config.weight;
  }

  get effectiveWeight(): number {
    return this.config.weight * this.live.health.weightFactor();
  }

  get latency(): LatencyEwma {
    return this.live.latency;
  }

  /** The forwarder calls this when it sends a request (or retry) to this backend. */
  requestStarted(): void {
    this.live.inflight++;
  }

  /**
   * Exactly once per requestStarted(), when the exchange ends. 'gateway-failure' is a connect failure,
   * connect/response timeout or reset; 'http-5xx' a 5xx answer; 'aborted' a client that went away.
   * `latencyMs` is how long the attempt took (a success without it, e.g. a WebSocket, is not a latency sample).
   * Request metrics (status class, duration) stay with the forwarder; this feeds in-flight counts, the
   * latency estimate and outlier detection.
   */
  requestFinished(outcome: RequestOutcome, latencyMs?: number): void {
    const live = this.live;
    if (live.inflight > 0) live.inflight--;
    if (outcome === 'aborted') return;
    live.latency.record(outcome, latencyMs);
    live.current.pool.recordOutcome(live.current, outcome);
  }
}

export class PoolRuntime {
  readonly name: string;
  /** Replaced only by reconfigure(), by a config that differs in backends' weight, drain or backup flags alone. */
  config: PoolConfig;
  readonly backends: readonly BackendRuntime[];
  /** The pool's tls.ca, tls.cert and tls.key as read for this build; the forwarder uses the same for its connections. */
  readonly tls: UpstreamTlsMaterial;
  private readonly deps: PoolDeps;
  private readonly strategy: Strategy;
  /** The pool's sticky cookie values, when it has sticky sessions. */
  readonly sticky: StickyTable | null;
  private readonly byId = new Map<string, BackendRuntime>();
  private readonly listeners = new Set<StateChangeListener>();
  /** Shared across generations so retries started before a swap still count against the budget. */
  private readonly retries: RetriesInFlight;
  private panicMode = false;
  /** No primary backend is up and a backup is: the backups serve. */
  private servingBackups = false;
  private started = false;
  private stopped = false;
  private checker: HealthChecker | undefined;
  /** Whose recordCheck the checker's results go to: the newest pool that took the checker over. */
  private checkerOwner: { pool: PoolRuntime } | undefined;
  /** The previous pool, when its checker checks exactly what this one would (see sameChecks): start() takes it over. */
  private checkerFrom: PoolRuntime | undefined;
  /** Backends whose ejection was refused by maxEjectionPercent, so the refusal is logged once, not per request. */
  private readonly ejectionRefusalLogged = new Set<string>();
  /** Backends kept from the previous pool, taken over in start(). */
  private readonly carried: ReadonlyArray<{ runtime: BackendRuntime; before: BackendStateName }>;
  private readonly healthOptions: BackendHealthOptions;
  private readonly latencyOptions: LatencyEwmaOptions;

  /**
   * Builds the runtime for `config`. Backends of `previous` with the same id and URL share its health,
   * ejection and in-flight state; new ones start `up` (see BackendHealth) and, when `previous` exists,
   * ramp up under slow start. Building has no effect on `previous`, so a half-built set of pools can be
   * dropped: the takeover happens in start(). Then stop `previous`.
   * `tls` is what the pool's tls.ca, tls.cert and tls.key hold (the data plane reads them); its health checks use it.
   */
  static create(config: PoolConfig, previous: PoolRuntime | undefined, deps: PoolDeps, tls: UpstreamTlsMaterial = NO_UPSTREAM_TLS): PoolRuntime {
    return new PoolRuntime(config, previous, deps, tls);
  }

  private constructor(config: PoolConfig, previous: PoolRuntime | undefined, deps: PoolDeps, tls: UpstreamTlsMaterial) {
    this.name = config.name;
    this.config = config;
    this.deps = deps;
    this.tls = tls;
    this.strategy = createStrategy(config.strategy, deps.random, { ringSize: config.ringSize });
    this.retries = previous?.retries ?? new RetriesInFlight();
    if (deps.onStateChange !== undefined) this.listeners.add(deps.onStateChange);

    const options = healthOptions(config);
    this.healthOptions = options;
    this.latencyOptions = latencyOptions(config);
    const backends: BackendRuntime[] = [];
    const carried: Array<{ runtime: BackendRuntime; before: BackendStateName }> = [];
    for (const backendConfig of config.backends) {
      const url = parsedUrl(backendConfig.url);
      const old = previous?.byId.get(backendConfig.id);
      let live: BackendLive;
      const kept = old !== undefined && old.url.href === url.href;
      if (kept) {
        live = old.live;
      } else {
        // Joining a pool that already serves traffic warrants slow start; the first pool of the process does not.
        live = new BackendLive(new BackendHealth(deps.clock, options, { slowStart: previous !== undefined }), new LatencyEwma(deps.clock, this.latencyOptions));
      }
      const runtime = new BackendRuntime(this, backendConfig, url, deps.metrics.backend(config.name, backendConfig.id), live);
      if (kept) carried.push({ runtime, before: old.state });
      else live.current = runtime;
      backends.push(runtime);
      this.byId.set(runtime.id, runtime);
    }
    this.backends = backends;
    // From the backends the pool holds, not only those the config lists, so any backend it serves can be stuck to.
    this.sticky = config.sticky === null ? null : new StickyTable(config.sticky, config.name, backends.map((backend) => backend.id));
    this.carried = carried;
    this.checkerFrom = previous !== undefined && sameChecks(previous, this) ? previous : undefined;
    this.panicMode = previous?.panicMode ?? false;
    this.servingBackups = previous?.servingBackups ?? false;
    this.updatePanic();
  }

  get panic(): boolean {
    return this.panicMode;
  }

  /** Whether the backup backends serve (no primary is up) rather than the primaries. */
  get backupsServing(): boolean {
    return this.servingBackups;
  }

  /**
   * Picks a backend for a new request (or a retry, with the backends already tried in `excluded`); `request` carries
   * its hash key and sticky cookie when the pool uses them.
   */
  pick(excluded?: ReadonlySet<string>, request?: PickRequest): BackendRuntime | undefined {
    // Drain, health, ejection, backups and panic are all folded into each backend's `available`, and slow start into
    // its effectiveWeight, so the strategy walks the pool's own array: no copy per pick.
    return pickWithAffinity(this.strategy, this.backends, this.sticky, this.byId, excluded, request);
  }

  get(id: string): BackendRuntime | undefined {
    return this.byId.get(id);
  }

  /** Claims a slot in the retry budget; pair every true with one finishRetry(). */
  tryStartRetry(): boolean {
    return this.retries.tryStart(this.backends, this.config.retryBudget);
  }

  finishRetry(): void {
    this.retries.finish();
  }

  get retriesInFlight(): number {
    return this.retries.count;
  }

  /**
   * For Retry-After on a 503 when nothing is available: seconds until something may change, i.e. the
   * soonest ejection end or next check of a down backend; at least 1.
   */
  retryAfterSeconds(): number {
    const now = this.deps.clock.now();
    let soonest = Infinity;
    for (const backend of this.backends) {
      if (backend.config.drain) continue;
      const health = backend.live.health;
      if (health.state === 'ejected' && health.ejectedUntil !== null) soonest = Math.min(soonest, health.ejectedUntil - now);
      if (health.state === 'down') {
        const next = this.checker?.nextCheckAt(backend.id);
        soonest = Math.min(soonest, next === undefined ? this.config.healthCheck?.unhealthyIntervalMs ?? Infinity : next - now);
      }
    }
    if (!Number.isFinite(soonest)) return 1;
    return Math.max(1, Math.ceil(soonest / 1000));
  }

  /**
   * Makes this pool the live one: takes over the backends kept from the previous pool (their passive
   * signals, ejection timers and state-change events now come here, and the new thresholds apply), then
   * starts active health checks when the pool has them. Idempotent.
   */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.takeOver();
    const check = this.config.healthCheck;
    if (check === null) return;
    const from = this.checkerFrom;
    this.checkerFrom = undefined;
    if (from !== undefined && !from.stopped && from.checker !== undefined && from.checkerOwner !== undefined) {
      // A weight or drain change: the same checks of the same backends go on, on their schedule and kept connections;
      // a new checker would close those connections and open new ones at the next checks, at every change.
      this.checker = from.checker;
      this.checkerOwner = from.checkerOwner;
      this.checkerOwner.pool = this;
      from.checker = undefined;
      from.checkerOwner = undefined;
      return;
    }
    const deps = this.deps;
    const owner = { pool: this as PoolRuntime };
    this.checkerOwner = owner;
    this.checker = new HealthChecker({
      config: check,
      clock: deps.clock,
      random: deps.random,
      probe: deps.probe ?? createProbe(deps.clock),
      tls: this.tls,
      serverName: this.config.tls.serverName,
      onResult: (id, result) => owner.pool.recordCheck(id, result),
      onError: (id, error) =>
        deps.logger.error('health check result handling failed', { pool: this.name, backend: id, error: errorMessage(error) }),
    });
    this.checker.start(
      this.backends.map((backend) => ({
        id: backend.id,
        url: backend.url,
        ...(backend.config.addresses === undefined ? {} : { addresses: backend.config.addresses }),
        ...discoveredServerNameOf(this.config, backend.config),
        isDown: () => backend.live.health.state === 'down',
        lastCheckedAt: () => backend.live.health.lastCheck?.at,
      })),
    );
  }

  /**
   * Stops checks and the ejection timers of backends no newer pool has taken over. In-flight requests
   * on this pool's backends still finish and report (into the newer pool when it kept the backend).
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.checker?.stop();
    for (const backend of this.backends) {
      const live = backend.live;
      if (live.current === backend && live.ejectionTimer !== undefined) {
        this.deps.clock.clearTimeout(live.ejectionTimer);
        live.ejectionTimer = undefined;
      }
    }
  }

  /**
   * Takes `config`, which differs from the running one only in the weight, drain or backup flag of the backends at
   * `changed` (see inPlaceChanges in config/in-place.ts), without a rebuild: the backends, their health, checks, connections and the
   * strategy's state stay; what the flags feed is brought up to date as a rebuild would (state-change events and
   * gauges of a drain, the serving tier and panic mode, hash tables built from weights). In-flight requests go on.
   */
  reconfigure(config: PoolConfig, changed: readonly number[]): void {
    let reweighted = false;
    for (const index of changed) {
      const runtime = this.backends[index]!;
      const next = editedBackend(config, index, runtime.id);
      const before = runtime.state;
      if (next.weight !== runtime.config.weight) reweighted = true;
      runtime.config = next;
      if (before !== runtime.state) this.announce(runtime, before, runtime.state, runtime.config.drain ? 'drain set in config' : 'drain cleared in config');
      publishState(runtime);
    }
    this.config = config;
    if (reweighted) this.strategy.reweighted?.();
    this.updatePanic();
  }

  private takeOver(): void {
    for (const { runtime, before } of this.carried) {
      const live = runtime.live;
      live.current = runtime;
      live.latency.reconfigure(this.latencyOptions);
      // The previous pool may have been stopped first and cancelled the timer: an ejection must still end.
      if (live.health.state === 'ejected' && live.ejectionTimer === undefined) this.scheduleEjectionEnd(live);
      const reconfigured = live.health.reconfigure(this.healthOptions);
      if (reconfigured !== undefined) {
        this.afterHealthTransition(runtime, reconfigured);
      } else if (before !== runtime.state) {
        const reason = runtime.config.drain ? 'drain set in config' : 'drain cleared in config';
        this.announce(runtime, before, runtime.state, reason);
      }
    }
    for (const runtime of this.backends) {
      publishState(runtime);
      const latency = runtime.live.latency;
      runtime.metrics.latencyEstimate?.(() => latency.estimateMs() / 1000);
    }
    this.updatePanic();
  }

  /** Subscribes to backend state changes of this pool; returns the unsubscribe function. */
  onStateChange(listener: StateChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): PoolStatusView {
    const now = this.deps.clock.now();
    return {
      name: this.name,
      strategy: this.config.strategy,
      ...(this.config.hashOn === null ? {} : { hashOn: this.config.hashOn }),
      ...(this.config.sticky === null ? {} : { stickyCookie: this.config.sticky.cookie }),
      panic: this.panicMode,
      backupsServing: this.servingBackups,
      backends: this.backends.map((backend): BackendStatus => {
        const health = backend.live.health;
        const last = health.lastCheck;
        const ejectedUntil = health.state === 'ejected' ? health.ejectedUntil : null;
        return {
          id: backend.id,
          url: backend.config.url,
          weight: backend.config.weight,
          effectiveWeight: backend.effectiveWeight,
          backup: backend.config.backup,
          state: backend.state,
          inflight: backend.inflight,
          latencyEwmaMs: backend.latency.estimateMs(),
          latencyMeasured: backend.latency.samples > 0,
          consecutiveFailures: health.consecutiveFailures,
          ejections: health.ejections,
          ...(ejectedUntil !== null ? { ejectedUntil } : {}),
          ...(last !== undefined ? { lastCheck: { ok: last.ok, at: last.at, ageMs: now - last.at, detail: last.detail } } : {}),
          reason: backend.config.drain ? 'drain set in config' : health.reason,
          ...(backend.config.discovered === true ? { discovered: true } : {}),
          ...(backend.config.addresses === undefined ? {} : { address: backend.config.addresses.join(', ') }),
        };
      }),
    };
  }

  /** @internal from BackendRuntime.requestFinished, on the newest pool holding the backend. */
  recordOutcome(backend: BackendRuntime, outcome: RequestOutcome): void {
    // A pool that was stopped and not superseded for this backend (it was removed): nothing to protect any more.
    if (this.stopped) return;
    const transition = backend.live.health.recordRequest(outcome, () => this.mayEject(backend));
    if (transition !== undefined) this.afterHealthTransition(backend, transition);
  }

  private recordCheck(id: string, result: ProbeResult): void {
    const backend = this.byId.get(id);
    // Between a newer pool's start() and this one's stop(), both check: only the owner's results count.
    if (backend === undefined || this.stopped || backend.live.current !== backend) return;
    backend.metrics.healthCheck(result.result);
    const transition = backend.live.health.recordCheck(result.result === 'pass', result.detail);
    if (transition !== undefined) this.afterHealthTransition(backend, transition);
  }

  /** Envoy's cap: eject only while fewer than maxEjectionPercent are ejected, but always allow one. */
  private mayEject(backend: BackendRuntime): boolean {
    let ejected = 0;
    for (const other of this.backends) if (other.live.health.state === 'ejected') ejected++;
    const allowed = Math.max(1, Math.floor((this.backends.length * this.config.outlierDetection.maxEjectionPercent) / 100));
    if (ejected < allowed) {
      this.ejectionRefusalLogged.delete(backend.id);
      return true;
    }
    if (!this.ejectionRefusalLogged.has(backend.id)) {
      this.ejectionRefusalLogged.add(backend.id);
      this.deps.logger.warn('outlier ejection refused: maxEjectionPercent reached', {
        pool: this.name,
        backend: backend.id,
        ejected,
        allowed,
        maxEjectionPercent: this.config.outlierDetection.maxEjectionPercent,
      });
    }
    return false;
  }

  private afterHealthTransition(backend: BackendRuntime, transition: HealthTransition): void {
    const live = backend.live;
    if (transition.from === 'ejected' && live.ejectionTimer !== undefined) {
      this.deps.clock.clearTimeout(live.ejectionTimer);
      live.ejectionTimer = undefined;
    }
    if (transition.to === 'ejected') {
      backend.metrics.ejected();
      this.scheduleEjectionEnd(live);
    }
    publishState(backend);
    // Reported as health states even while draining (state stays 'draining'): it tells the operator what they will get back.
    this.announce(backend, transition.from, transition.to, transition.reason);
    this.updatePanic();
  }

  private scheduleEjectionEnd(live: BackendLive): void {
    const until = live.health.ejectedUntil;
    if (until === null) return;
    const clock = this.deps.clock;
    if (live.ejectionTimer !== undefined) clock.clearTimeout(live.ejectionTimer);
    live.ejectionTimer = clock.setTimeout(() => {
      live.ejectionTimer = undefined;
      // Whichever pool holds the backend when the time is up announces its return.
      const current = live.current;
      const ended = live.health.endEjectionIfDue();
      if (ended !== undefined) current.pool.afterHealthTransition(current, ended);
      // Timers run on the event loop's millisecond clock and may fire a fraction early by the precise clock: try again.
      else if (live.health.state === 'ejected') current.pool.scheduleEjectionEnd(live);
    }, Math.max(0, Math.ceil(until - clock.now())));
  }

  private announce(backend: BackendRuntime, from: BackendStateName, to: BackendStateName, reason: string): void {
    const change: BackendStateChange = { pool: this.name, backend: backend.id, from, to, reason, at: this.deps.clock.now() };
    const fields = { pool: change.pool, backend: change.backend, from, to, reason };
    if (to === 'up') this.deps.logger.info('backend state changed', fields);
    else this.deps.logger.warn('backend state changed', fields);
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.deps.logger.error('state change listener failed', { pool: this.name, error: errorMessage(error) });
      }
    }
  }

  /**
   * Which tier serves, and whether in Envoy's panic mode. The primaries serve while any of them is up; when none is,
   * the backups that are up take over (HAProxy's backup servers); only when no backup is up either does panic mode
   * spread traffic over the primaries that are down. Panic is judged within the serving tier: below the threshold
   * share of healthy backends, traffic spreads over all of that tier's non-draining ones.
   */
  private updatePanic(): void {
    const threshold = this.config.panicThresholdPercent;
    let primaries = 0;
    let primariesUp = 0;
    let backups = 0;
    let backupsUp = 0;
    for (const backend of this.backends) {
      if (backend.config.drain) continue;
      const up = backend.live.health.state === 'up';
      if (backend.config.backup) {
        backups++;
        if (up) backupsUp++;
      } else {
        primaries++;
        if (up) primariesUp++;
      }
    }
    // A pool of backups only (or whose primaries all drain) is served by its backups.
    const useBackups = primariesUp === 0 && (backupsUp > 0 || primaries === 0);
    if (useBackups !== this.servingBackups) {
      this.servingBackups = useBackups;
      const fields = { pool: this.name, primariesUp, primaries, backupsUp, backups };
      if (useBackups) this.deps.logger.warn('no primary backend is up: the backup backends serve', fields);
      else this.deps.logger.info('a primary backend is up: the primaries serve again', fields);
    }
    const serving = useBackups ? backups : primaries;
    const healthy = useBackups ? backupsUp : primariesUp;
    const panic = threshold > 0 && serving > 0 && healthy * 100 < threshold * serving;
    if (panic === this.panicMode) return;
    this.panicMode = panic;
    const fields = { pool: this.name, healthy, total: serving, panicThresholdPercent: threshold };
    if (panic) this.deps.logger.warn('pool entered panic mode: routing to all non-draining backends', fields);
    else this.deps.logger.info('pool left panic mode', fields);
  }
}

/**
 * Whether `next`'s health checker would check exactly what `previous`'s does: the same check settings, TLS material and
 * server name, and the same backends (kept ones, which share their health state) with the same addresses, in order.
 */
function sameChecks(previous: PoolRuntime, next: PoolRuntime): boolean {
  const [a, b] = [previous.config, next.config];
  if (a.healthCheck === null || b.healthCheck === null || previous.backends.length !== next.backends.length) return false;
  if (a.healthCheck !== b.healthCheck && JSON.stringify(a.healthCheck) !== JSON.stringify(b.healthCheck)) return false;
  if (a.tls.serverName !== b.tls.serverName) return false;
  const [tlsA, tlsB] = [previous.tls, next.tls];
  if (tlsA !== tlsB && (tlsA.ca !== tlsB.ca || tlsA.cert !== tlsB.cert || tlsA.key !== tlsB.key || tlsA.digest !== tlsB.digest)) return false;
  return next.backends.every((backend, index) => {
    const before = previous.backends[index]!;
    return (
      backend.live === before.live &&
      backend.id === before.id &&
      backend.url.href === before.url.href &&
      JSON.stringify(backend.config.addresses) === JSON.stringify(before.config.addresses) &&
      discoveredServerNameOf(a, before.config).serverName === discoveredServerNameOf(b, backend.config).serverName
    );
  });
}

/** A check target's serverName when it differs from the pool's (a backend found by DNS, verified by the DNS name). */
function discoveredServerNameOf(pool: PoolConfig, backend: BackendConfig): { serverName?: string } {
  const name = pool.tls.serverName === null ? discoveredServerName(pool, backend) : null;
  return name === null ? {} : { serverName: name };
}

function healthOptions(config: PoolConfig): BackendHealthOptions {
  const check = config.healthCheck;
  return {
    rise: check?.rise ?? 1,
    fall: check?.fall ?? 1,
    activeChecks: check !== null,
    outlier: config.outlierDetection,
    slowStartMs: config.slowStartMs,
  };
}

/** A failed attempt counts as a request that ran into the response timeout: the worst a success could have been. */
export function latencyOptions(config: PoolConfig): LatencyEwmaOptions {
  return { decayMs: config.ewma.decayMs, initialMs: config.ewma.initialMs, penaltyMs: config.timeouts.responseMs };
}

/** backend_up and backend_draining together, so alerts can tell a drained backend from a dead one. */
function publishState(backend: BackendRuntime): void {
  backend.metrics.setUp(backend.state === 'up');
  backend.metrics.setDraining?.(backend.state === 'draining');
}
