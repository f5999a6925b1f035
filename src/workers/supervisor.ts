// The primary's side of worker mode: forks data-plane workers, feeds them config and health, collects their failures and metrics, restarts the dead.

import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import type { PrometheusMetrics } from '../metrics/metrics.js';
import { MonotonicClamp, RetiredWorkerCounts, mergeWorkerMetrics, renderMerged, type MetricFamilySnapshot } from '../metrics/worker-metrics.js';
import type { DataPlane } from '../proxy/data-plane.js';
import type { FromWorker, LiveListenerSettings, OutcomeRuns, PoolHealthView, ToWorker, WorkerSettings } from './protocol.js';

export interface SupervisorOptions {
  readonly count: number;
  readonly settings: WorkerSettings;
  readonly dataPlane: DataPlane;
  readonly metrics: PrometheusMetrics;
  readonly logger: Logger;
}

/** Health is re-sent this often even without a state change, so slow-start ramps reach the workers. */
const HEALTH_REFRESH_MS = 250;
const RESTART_BACKOFF_MS = { initial: 100, max: 5_000 };
/** A worker that lived this long resets the restart backoff. */
const STABLE_AFTER_MS = 10_000;
const METRICS_TIMEOUT_MS = 2_000;
/**
 * Each worker's metrics are fetched this often besides scrapes, so a worker killed between two scrapes loses
 * at most this much of its counts (its last snapshot is what stays folded in after it dies).
 */
const METRICS_SNAPSHOT_MS = 2_000;

interface WorkerState {
  readonly worker: Worker;
  readonly startedAt: number;
  /** Its message handler is up; messages sent before that are lost. */
  ready: boolean;
  inflight: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Its latest metrics snapshot, folded into the retired counts when it dies. */
  metrics: MetricFamilySnapshot[] | null;
}

export class WorkerSupervisor {
  private readonly options: SupervisorOptions;
  private readonly workers = new Map<number, WorkerState>();
  private stopping = false;
  private backoffMs = RESTART_BACKOFF_MS.initial;
  private healthTimer: NodeJS.Timeout | null = null;
  private healthQueued = false;
  private metricsTimer: NodeJS.Timeout | null = null;
  private metricsRequestId = 0;
  /** Metrics requests awaiting an answer, by request id: the worker asked, and what to do with the answer (null: none came). */
  private readonly pendingMetrics = new Map<number, { readonly workerId: number; readonly settle: (metrics: MetricFamilySnapshot[] | null) => void }>();
  /** Counts of workers that died, so summed counters never go down when a worker is replaced. */
  private readonly retired = new RetiredWorkerCounts();
  private readonly monotonic = new MonotonicClamp();
  private readonly unsubscribe: Array<() => void> = [];
  private bound: ReadonlyMap<string, AddressInfo> = new Map();
  /** The file's at start, with live edits since: what a worker started now gets. */
  private settings: WorkerSettings;

  constructor(options: SupervisorOptions) {
    this.options = options;
    this.settings = options.settings;
  }

  /** Live settings edited in the file, for the running workers now and any started later. */
  updateSettings(settings: LiveListenerSettings): void {
    this.settings = { ...this.settings, ...settings };
    this.broadcast({ type: 'settings', settings });
  }

  /** Forks the workers and resolves with the address they share once every one listens. */
  async start(): Promise<AddressInfo> {
    cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)), args: [] });
    this.unsubscribe.push(
      this.options.dataPlane.onApplied((version, config, tlsReloaded) =>
        this.broadcast({ type: 'config', version, config, health: this.healthSnapshot(), tlsReloaded }),
      ),
      this.options.dataPlane.onBackendStateChange(() => this.queueHealth()),
    );
    this.healthTimer = setInterval(() => this.sendHealth(), HEALTH_REFRESH_MS);
    this.healthTimer.unref();
    this.metricsTimer = setInterval(() => void this.refreshWorkerMetrics(), METRICS_SNAPSHOT_MS);
    this.metricsTimer.unref();
    const listening = Array.from({ length: this.options.count }, () => this.fork());
    const addresses = await Promise.all(listening);
    this.bound = new Map(addresses[0]!);
    this.options.logger.info('data-plane workers started', { workers: this.options.count });
    return [...this.bound.values()][0]!;
  }

  /** Where each listener is bound, by name (every worker shares the same sockets). */
  get addresses(): ReadonlyMap<string, AddressInfo> {
    return this.bound;
  }

  private fork(): Promise<ReadonlyArray<readonly [string, AddressInfo]>> {
    const worker = cluster.fork();
    const state: WorkerState = { worker, startedAt: Date.now(), ready: false, inflight: {}, metrics: null };
    this.workers.set(worker.id, state);
    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          state.ready = true;
          if (this.stopping) {
            this.send(worker, { type: 'shutdown', drainMs: 0 });
            return;
          }
          this.send(worker, { type: 'init', settings: this.settings });
          const table = this.options.dataPlane.table;
          if (this.options.dataPlane.ready) {
            this.send(worker, { type: 'config', version: table.version, config: table.config, health: this.healthSnapshot(), tlsReloaded: [] });
          }
          return;
        }
        if (message.type === 'listening' && !listening) {
          listening = true;
          resolve(message.addresses);
          return;
        }
        this.onMessage(state, message);
      });
      worker.on('error', (error) => this.options.logger.warn('worker IPC error', { worker: worker.id, err: error }));
      worker.on('exit', (code, signal) => {
        this.workers.delete(worker.id);
        if (state.metrics !== null) this.retired.fold(state.metrics);
        for (const pending of this.pendingMetrics.values()) if (pending.workerId === worker.id) pending.settle(null);
        if (!listening) reject(new Error(`worker ${worker.id} exited before listening (code ${code}, signal ${signal})`));
        this.onExit(state, code, signal);
      });
    });
  }

  private onExit(state: WorkerState, code: number | null, signal: string | null): void {
    if (this.stopping) return;
    const lived = Date.now() - state.startedAt;
    if (lived > STABLE_AFTER_MS) this.backoffMs = RESTART_BACKOFF_MS.initial;
    this.options.logger.error('data-plane worker died; restarting it', { worker: state.worker.id, code, signal, restartInMs: this.backoffMs });
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, RESTART_BACKOFF_MS.max);
    setTimeout(() => {
      if (this.stopping) return;
      this.fork().then(
        () => this.options.logger.info('data-plane worker restarted', { previous: state.worker.id }),
        (error: unknown) => this.options.logger.error('worker restart failed', { err: error }),
      );
    }, delay).unref();
  }

  private onMessage(state: WorkerState, message: FromWorker): void {
    switch (message.type) {
      case 'report':
        state.inflight = message.inflight;
        this.replayOutcomes(message.outcomes);
        return;
      case 'metrics':
        this.pendingMetrics.get(message.id)?.settle(message.metrics);
        return;
      case 'fatal':
        this.options.logger.error('data-plane worker reported a fatal error', { worker: state.worker.id, message: message.message });
        return;
      case 'listening':
        // After a listeners edit: the worker's listeners as they are bound now (every worker shares them).
        this.bound = new Map(message.addresses);
        return;
      case 'ready':
        return;
    }
  }

  /**
   * Passive signals from the workers drive the primary's outlier detection and latency estimates, in the order
   * each worker saw them. A run of timed successes is replayed within microseconds, so only its first sample
   * moves the average (by the time since the previous report) and the others can only raise it as a peak: the
   * first ones carry the run's mean and the last its longest, which gives "moved towards the mean, or up to the peak".
   */
  private replayOutcomes(outcomes: Readonly<Record<string, Readonly<Record<string, OutcomeRuns>>>>): void {
    const pools = this.options.dataPlane.table.pools;
    for (const [poolName, byBackend] of Object.entries(outcomes)) {
      const pool = pools.get(poolName)?.pool;
      if (pool === undefined) continue;
      for (const [id, runs] of Object.entries(byBackend)) {
        const backend = pool.get(id);
        if (backend === undefined) continue;
        for (const run of runs) {
          const [outcome, count] = run;
          const mean = run.length === 4 ? run[2] / count : undefined;
          for (let i = 0; i < count; i++) {
            backend.requestStarted();
            backend.requestFinished(outcome, run.length === 4 && i === count - 1 && count > 1 ? run[3] : mean);
          }
        }
      }
    }
  }

  /** Requests in flight to a backend across all workers, for status and the dashboard. */
  inflight(pool: string, backend: string): number {
    let total = 0;
    for (const state of this.workers.values()) total += state.inflight[pool]?.[backend] ?? 0;
    return total;
  }

  private healthSnapshot(): Record<string, PoolHealthView> {
    const snapshot: Record<string, PoolHealthView> = {};
    for (const [name, entry] of this.options.dataPlane.table.pools) {
      const backends: Record<string, { available: boolean; effectiveWeight: number }> = {};
      for (const backend of entry.pool.backends) backends[backend.id] = { available: backend.available, effectiveWeight: backend.effectiveWeight };
      snapshot[name] = { retryAfterSeconds: entry.pool.retryAfterSeconds(), backends };
    }
    return snapshot;
  }

  private queueHealth(): void {
    if (this.healthQueued) return;
    this.healthQueued = true;
    setImmediate(() => {
      this.healthQueued = false;
      this.sendHealth();
    });
  }

  private sendHealth(): void {
    if (this.workers.size === 0) return;
    this.broadcast({ type: 'health', pools: this.healthSnapshot() });
  }

  private broadcast(message: ToWorker): void {
    for (const state of this.workers.values()) this.send(state.worker, message);
  }

  private send(worker: Worker, message: ToWorker): void {
    if (!worker.isConnected()) return;
    worker.send(message, (error: Error | null) => {
      if (error !== null && !this.stopping) this.options.logger.warn('cannot reach a data-plane worker', { worker: worker.id, err: error });
    });
  }

  /**
   * The primary's own families merged with every live worker's latest snapshot and the counts of workers that
   * died: counters and histograms summed (so they never go down when a worker is replaced), gauges combined by
   * their meaning (worker-metrics.ts). A worker that does not answer in time counts with its previous snapshot.
   */
  async renderMetrics(): Promise<string> {
    await this.refreshWorkerMetrics();
    const own = (await this.options.metrics.registry.getMetricsAsJSON()) as MetricFamilySnapshot[];
    this.retired.prune(own);
    const live = [...this.workers.values()].flatMap((state) => (state.metrics === null ? [] : [state.metrics]));
    return renderMerged(this.monotonic.apply(mergeWorkerMetrics(own, live, this.retired.snapshot())));
  }

  /** Asks every live worker for its metrics and keeps each answer as that worker's latest snapshot. */
  private async refreshWorkerMetrics(): Promise<void> {
    await Promise.all(
      [...this.workers.values()].map(async (state) => {
        const metrics = await this.workerMetrics(state.worker);
        // Answers come back in the order asked (one IPC channel), so a later answer is never older.
        if (metrics !== null && this.workers.get(state.worker.id) === state) state.metrics = metrics;
      }),
    );
  }

  private workerMetrics(worker: Worker): Promise<MetricFamilySnapshot[] | null> {
    const id = ++this.metricsRequestId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(null), METRICS_TIMEOUT_MS);
      const settle = (metrics: MetricFamilySnapshot[] | null): void => {
        clearTimeout(timer);
        this.pendingMetrics.delete(id);
        resolve(metrics);
      };
      this.pendingMetrics.set(id, { workerId: worker.id, settle });
      this.send(worker, { type: 'metrics-request', id });
    });
  }

  /** Workers stop accepting and drain; any still running at the deadline are killed. */
  reopenAccessLog(): void {
    this.broadcast({ type: 'reopen-access-log' });
  }

  async close(drainMs: number): Promise<void> {
    this.stopping = true;
    if (this.healthTimer !== null) clearInterval(this.healthTimer);
    if (this.metricsTimer !== null) clearInterval(this.metricsTimer);
    for (const off of this.unsubscribe) off();
    const exits = [...this.workers.values()].map((state) => new Promise<void>((resolve) => state.worker.once('exit', () => resolve())));
    for (const state of this.workers.values()) {
      // A worker still starting has no listener and would miss the message: it is simply stopped.
      if (state.ready) this.send(state.worker, { type: 'shutdown', drainMs });
      else state.worker.process.kill('SIGTERM');
    }
    const deadline = setTimeout(() => {
      for (const state of this.workers.values()) state.worker.process.kill('SIGKILL');
    }, drainMs + 2_000);
    await Promise.all(exits);
    clearTimeout(deadline);
  }
}
