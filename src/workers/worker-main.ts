// Entry point of a data-plane worker process: serves proxy traffic from the config and health the primary sends.

import { systemClock, systemRandom } from '../clock.js';
import { createLogger, type Logger } from '../log.js';
import { createMetrics } from '../metrics/metrics.js';
import { Forwarder } from '../proxy/forward.js';
import type { RequestOutcome } from '../proxy/forward-types.js';
import { TrustedProxies } from '../proxy/headers.js';
import { ListenerSet } from '../proxy/listener-set.js';
import { AccessLog } from '../proxy/access-log.js';
import { DataPlane } from '../proxy/data-plane.js';
import { PrimaryFedPools, inflightByBackend, type RemotePool } from './primary-fed-pools.js';
import { errorMessage } from '../errors.js';
import type { FromWorker, OutcomeRuns, ToWorker, WorkerSettings } from './protocol.js';

/** Successes are batched; a failure is reported at once so ejection is as quick as in one process. */
const REPORT_INTERVAL_MS = 100;

function send(message: FromWorker): void {
  process.send?.(message);
}

class OutcomeReporter {
  private outcomes: Record<string, Record<string, OutcomeRuns>> = {};
  private dirty = false;
  private urgent = false;

  constructor(private readonly inflight: () => Record<string, Record<string, number>>) {
    setInterval(() => this.flush(), REPORT_INTERVAL_MS).unref();
  }

  record(pool: string, backend: string, outcome: RequestOutcome, latencyMs: number | undefined): void {
    const byBackend = (this.outcomes[pool] ??= {});
    const runs = (byBackend[backend] ??= []);
    const last = runs[runs.length - 1];
    // Successes with a duration and outcomes without one never share a run, so every count matches its sum.
    const sampled = outcome === 'success' && latencyMs !== undefined;
    if (last !== undefined && last[0] === outcome && (last.length === 4) === sampled) {
      last[1] += 1;
      if (last.length === 4) {
        last[2] += latencyMs!;
        last[3] = Math.max(last[3], latencyMs!);
      }
    } else runs.push(sampled ? [outcome, 1, latencyMs!, latencyMs!] : [outcome, 1]);
    this.dirty = true;
    if (outcome !== 'success' && outcome !== 'aborted' && !this.urgent) {
      this.urgent = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.urgent = false;
    if (!this.dirty) return;
    const outcomes = this.outcomes;
    this.outcomes = {};
    this.dirty = false;
    send({ type: 'report', outcomes, inflight: this.inflight() });
  }
}

function runWorker(): void {
  let logger: Logger = createLogger();
  let listener: ListenerSet | null = null;
  let listening: Promise<void> | null = null;
  let settings: WorkerSettings | null = null;
  const metrics = createMetrics();
  let reporter: OutcomeReporter | null = null;
  const pools = new PrimaryFedPools((pool, backend, outcome, latencyMs) => reporter?.record(pool, backend, outcome, latencyMs));
  // The primary's DataPlane code, fed by the primary; made at `init`, with the logger the settings call for.
  let dataPlane: DataPlane<RemotePool> | null = null;
  reporter = new OutcomeReporter(() => (dataPlane === null ? {} : inflightByBackend(dataPlane.table)));

  const startListening = (): void => {
    if (listening !== null || settings === null || dataPlane === null) return;
    const forwarder = new Forwarder({ logger, trustedProxies: new TrustedProxies(settings.trustedProxies) });
    // Every worker appends to the same file: O_APPEND keeps each line whole.
    const accessLog = settings.accessLog ? AccessLog.open(settings.accessFile) : null;
    const proxy = new ListenerSet(settings.listeners, { limits: settings.limits, routes: dataPlane, forwarder, logger, metrics, accessLog });
    listener = proxy;
    listening = proxy.start().then(
      () => send({ type: 'listening', addresses: [...proxy.addresses] }),
      (error: unknown) => {
        send({ type: 'fatal', message: `cannot listen: ${(error as Error).message}` });
        process.exit(1);
      },
    );
  };

  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'init':
        settings = message.settings;
        logger = createLogger({ level: settings.logLevel, fields: { worker: process.pid } });
        dataPlane ??= new DataPlane({ clock: systemClock, random: systemRandom, metrics, logger, fedByPrimary: true }, pools.build);
        return;
      case 'settings':
        if (settings !== null) settings = { ...settings, ...message.settings };
        logger.setLevel(message.settings.logLevel);
        if (listener !== null) {
          const proxy = listener;
          void proxy.updateSettings(message.settings).then(() => send({ type: 'listening', addresses: [...proxy.addresses] }));
        }
        return;
      case 'config':
        if (dataPlane === null) return;
        pools.applyHealth(dataPlane.table, message.health);
        try {
          dataPlane.apply(message.version, message.config, new Set(message.tlsReloaded));
        } catch (error) {
          // A TLS file the primary read a moment ago cannot be read here. With a table, it keeps serving; without
          // one, the worker fails like any that cannot start (the primary says why and replaces it).
          if (!dataPlane.ready) throw error;
          logger.error('config could not be applied in this worker; the previous one keeps serving', { version: message.version, err: errorMessage(error) });
        }
        // Listening only once a config is in, so no request meets an empty routing table.
        startListening();
        return;
      case 'health':
        if (dataPlane !== null) pools.applyHealth(dataPlane.table, message.pools);
        return;
      case 'reopen-access-log':
        listener?.reopenAccessLog();
        return;
      case 'metrics-request':
        void metrics.registry.getMetricsAsJSON().then((json) => send({ type: 'metrics', id: message.id, metrics: json }));
        return;
      case 'shutdown':
        reporter?.flush();
        void (listener?.close(message.drainMs) ?? Promise.resolve()).finally(() => {
          dataPlane?.stop();
          process.exit(0);
        });
        return;
    }
  });
  // `systemctl kill -s USR1` signals every process of the unit: a worker reopens its access log too (and Node's
  // debugger does not start on it).
  process.on('SIGUSR1', () => listener?.reopenAccessLog());
  send({ type: 'ready' });
  // The primary is gone: nobody feeds health or config any more, so stop serving rather than serve blind.
  process.on('disconnect', () => process.exit(0));
  process.on('uncaughtException', (error) => {
    logger.error('worker crashed', { err: error });
    send({ type: 'fatal', message: error.message });
    process.exit(1);
  });
}

runWorker();
