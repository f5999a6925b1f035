// Wires one balancer node together: config -> control plane -> data plane -> listener, admin API, file watcher; start() and stop().

import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { Server } from 'node:http';
import { systemClock, systemRandom } from './clock.js';
import { BalancerError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { loadConfigFile, readSecretFile, resolveConfigPath } from './config/load.js';
import type { Config, ListenerConfig } from './config/schema.js';
import { validateConfigText } from './config/validate.js';
import { hasReplicatedSections } from './config/safety.js';
import { localChanges, withLiveSettings } from './config/local-changes.js';
import { watchConfigFile } from './config/watch.js';
import { createMetrics, type PrometheusMetrics } from './metrics/metrics.js';
import type { RequestCounters } from './metrics/request-counters.js';
import { createAdminServer, type AdminServer } from './admin/api.js';
import { DataPlane } from './proxy/data-plane.js';
import { PoolRuntime } from './balancer/pool.js';
import { Forwarder } from './proxy/forward.js';
import { TrustedProxies } from './proxy/headers.js';
import { ListenerSet } from './proxy/listener-set.js';
import { AccessLog } from './proxy/access-log.js';
import type { LiveListenerSettings } from './workers/protocol.js';
import { checkTlsFiles } from './proxy/tls-certificates.js';
import { errorMessage } from './errors.js';
import { LocalStore } from './control/local-store.js';
import type { ClusterStore } from './cluster/store.js';
import { splitHostPort } from './net-address.js';
import { startDemoBackends, type DemoBackends } from './demo-backends.js';
import { readFile } from 'node:fs/promises';

/** How long start-up waits for the first DNS answers of the pools before it listens anyway. */
const FIRST_DNS_ANSWER_WAIT_MS = 3_000;

export interface AppOptions {
  readonly configPath: string;
  /** Start demo backends for the loopback backends of the config (npm start on a fresh machine). */
  readonly demoBackends?: boolean;
  /** Binds the Raft peer listener here instead of cluster.listen (tests pass 127.0.0.1:0 and read store.raft.port). */
  readonly clusterListen?: string;
  /** Replaces the logger the config asks for (tests). */
  readonly logger?: Logger;
  /** The admin token when the config names none: BALANCER_ADMIN_TOKEN in the CLI. */
  readonly envToken?: string;
}

/** What serves proxy traffic: listeners in this process, or a supervisor of worker processes. */
interface Frontend {
  /** Resolves with the first listener's address. */
  start(): Promise<AddressInfo>;
  /** Where each listener is bound, by name. */
  readonly addresses: ReadonlyMap<string, AddressInfo>;
  /** Listeners, limits, trusted proxies and log level edited in the file, for new connections and requests. */
  updateSettings(settings: LiveListenerSettings): void | Promise<void>;
  close(drainMs: number): Promise<void>;
  /** SIGUSR1: the access log file was moved away (logrotate); write to a new one at its path. */
  reopenAccessLog(): void;
}

export interface AppAddresses {
  readonly proxy: AddressInfo;
  readonly admin: AddressInfo;
}

export class App {
  private constructor(
    private running: Config,
    private readonly baseDir: string,
    readonly file: string,
    readonly logger: Logger,
    readonly metrics: PrometheusMetrics,
    readonly dataPlane: DataPlane,
    /** LocalStore without a cluster section; ClusterStore (Raft) with one. */
    readonly store: LocalStore | ClusterStore,
    private readonly frontend: Frontend,
    private readonly adminServer: AdminServer,
    private readonly closeWatcher: () => void,
    private readonly demo: DemoBackends | null,
    readonly addresses: AppAddresses,
    /** BALANCER_ADMIN_TOKEN: the token when the file names none. */
    private readonly envToken: string | null,
  ) {}

  static async start(options: AppOptions): Promise<App> {
    const loaded = await loadConfigFile(options.configPath);
    if (!loaded.ok) {
      throw new BalancerError('CONFIG_INVALID', `${loaded.file}: config is invalid`, { details: loaded.problems });
    }
    const config = loaded.config;
    const logger = options.logger ?? createLogger({ level: config.log.level });
    const metrics = createMetrics();
    const dataPlane = new DataPlane({ clock: systemClock, random: systemRandom, metrics, logger }, PoolRuntime.create);
    const demo = options.demoBackends === true ? await startDemoBackends(loaded.replicated, logger) : null;

    let watcher: { close(): void; noteOwnWrite(text: string): void } | null = null;
    const noteOwnWrite = (text: string): void => watcher?.noteOwnWrite(text);
    let store: LocalStore | ClusterStore;
    if (config.cluster === null) {
      store = new LocalStore({
        nodeName: 'standalone',
        file: loaded.file,
        baseDir: loaded.baseDir,
        initial: loaded.replicated,
        dataPlane,
        metrics,
        logger,
        noteOwnWrite,
      });
    } else {
      // The data plane serves only what the cluster committed; the file's routes and pools seed a fresh cluster.
      try {
        // Loaded only here: Raft and the cluster store are ~300 KB of code a single node never runs, and every
        // module imported stays in the heap for the life of the process (its source text and compiled functions).
        const { ClusterStore } = await import('./cluster/store.js');
        store = await ClusterStore.start({
          cluster: config.cluster,
          file: loaded.file,
          baseDir: loaded.baseDir,
          dataPlane,
          metrics,
          logger,
          noteOwnWrite,
          ...(options.clusterListen === undefined ? {} : { listen: options.clusterListen }),
        });
      } catch (error) {
        dataPlane.stop();
        await demo?.close();
        throw error;
      }
    }

    // Pools that find backends in DNS start with the first answers rather than none (bounded: DNS may be down).
    await dataPlane.dnsSettled(FIRST_DNS_ANSWER_WAIT_MS);
    metrics.countConfigChanges(() => ({ version: dataPlane.table.version, changes: store.history() }));
    let frontend: Frontend;
    let renderMetrics = metrics.render;
    let renderRequestFamilies = metrics.renderRequestFamilies;
    // A single process reads the history's counters directly; with workers they are in the workers' metrics text.
    let requestCounters: (() => Map<string, RequestCounters>) | null = () => metrics.requestCounters();
    if (config.workers > 0) {
      // Loaded only with workers, as the cluster store above: a single process never runs it.
      const { WorkerSupervisor } = await import('./workers/supervisor.js');
      const supervisor = new WorkerSupervisor({
        count: config.workers,
        settings: {
          listeners: config.listeners,
          drainMs: config.shutdownDrainMs,
          limits: config.limits,
          trustedProxies: config.trustedProxies,
          logLevel: config.log.level,
          accessLog: config.log.access,
          accessFile: config.log.accessFile,
        },
        dataPlane,
        metrics,
        logger,
      });
      dataPlane.setRemoteInflight((pool, backend) => supervisor.inflight(pool, backend));
      renderMetrics = () => supervisor.renderMetrics();
      renderRequestFamilies = renderMetrics;
      requestCounters = null;
      frontend = supervisor;
    } else {
      const forwarder = new Forwarder({ logger, trustedProxies: new TrustedProxies(config.trustedProxies) });
      const accessLog = config.log.access ? AccessLog.open(config.log.accessFile) : null;
      frontend = new ListenerSet(config.listeners, { limits: config.limits, routes: dataPlane, forwarder, logger, metrics, accessLog });
    }
    const token = config.admin.token ?? options.envToken ?? null;
    const adminServer = createAdminServer({
      control: store,
      metrics: { render: renderMetrics, contentType: metrics.contentType, requestFamilies: renderRequestFamilies, ...(requestCounters === null ? {} : { requestCounters }) },
      token,
      logger,
      headersTimeoutMs: config.limits.headersTimeoutMs,
    });
    let proxyAddress: AddressInfo;
    let adminAddress: AddressInfo;
    try {
      proxyAddress = await frontend.start();
      adminAddress = await listenAdmin(adminServer, config.admin.listen);
    } catch (error) {
      if (!(store instanceof LocalStore)) await store.stop();
      dataPlane.stop();
      await frontend.close(0).catch(() => undefined);
      adminServer.close();
      await demo?.close();
      throw new BalancerError('CONFIG_IO', `cannot listen: ${(error as Error).message}`, { cause: error });
    }
    let app: App | null = null;
    watcher = watchConfigFile(loaded.file, {
      onChange: (text) => void app?.onFileEdit(text).catch((error: unknown) => logger.error('config file edit could not be handled', { file: loaded.file, err: error })),
    });
    logger.info('balancer started', {
      pid: process.pid,
      proxy: `${proxyAddress.address}:${proxyAddress.port}`,
      listeners: Object.fromEntries([...frontend.addresses].map(([name, address]) => [name, `${address.address}:${address.port}`])),
      admin: `${adminAddress.address}:${adminAddress.port}`,
      config: loaded.file,
      pools: Object.keys(loaded.replicated.pools),
      workers: config.workers,
      ...(!(store instanceof LocalStore) ? { cluster: store.nodeId, raftPort: store.raft.port } : {}),
    });
    const activeWatcher = watcher;
    app = new App(
      config,
      loaded.baseDir,
      loaded.file,
      logger,
      metrics,
      dataPlane,
      store,
      frontend,
      adminServer,
      () => activeWatcher.close(),
      demo,
      { proxy: proxyAddress, admin: adminAddress },
      options.envToken ?? null,
    );
    return app;
  }

  /** Whether the file holds local settings that only a restart applies. */
  private restartRequired = false;

  /** Where each proxy listener is bound now, by name (listeners change with the file). */
  get listenerAddresses(): ReadonlyMap<string, AddressInfo> {
    return this.frontend.addresses;
  }

  /** The settings this node runs with: the file's at start, with the local settings edited since that apply live. */
  get config(): Config {
    return this.running;
  }

  /** Edits whose local settings are being applied, one after the other (reading a token file waits on the disk). */
  private localSettingsApplied: Promise<void> = Promise.resolve();

  /** An edit of the file (watcher or SIGHUP): routes and pools go to the store; local settings are applied or flagged here. */
  private async onFileEdit(text: string): Promise<void> {
    await this.store.reloadFromText(text);
    // In the order the edits came: an older file's settings never land after a newer one's.
    const applied = this.localSettingsApplied.then(() => this.applyLocalSettings(text));
    this.localSettingsApplied = applied.catch(() => undefined);
    await applied;
  }

  /**
   * Local settings of an edited file: those a running node can take are applied now, the others are named in a
   * warning and flagged by balancer_config_restart_required until the file matches what runs again (or a restart).
   * An invalid file was reported by the store; an empty or damaged one is no edit (the store ignores it too).
   */
  private async applyLocalSettings(text: string): Promise<void> {
    if (!hasReplicatedSections(text)) return;
    const validated = validateConfigText(text, this.file);
    if (!validated.ok) return;
    const edited = validated.config;
    const changes = localChanges(this.running, edited, this.baseDir);
    let next = withLiveSettings(this.running, edited, this.baseDir);
    const live = [...changes.live];
    /** Live settings that could not be applied: the file still differs from what runs. */
    const failed: string[] = [];
    // TLS files checked here, once, so a bad set is one clear error and no process (this one or a worker) swaps to it.
    const usable = this.usableListeners(next.listeners);
    if (usable.failed) {
      next = { ...next, listeners: usable.listeners };
      const setting = live.find((name) => name === 'tls' || name === 'listeners');
      if (setting !== undefined) {
        failed.push(setting);
        if (isDeepStrictEqual(usable.listeners, this.running.listeners)) live.splice(live.indexOf(setting), 1);
      }
    }
    // The token file is read again on every edit, so rewriting it (and saving the config, or SIGHUP) rotates the token.
    const token = await this.editedAdminToken(edited);
    if ('problem' in token) {
      this.logger.error('the admin token file named in the config file cannot be used; the token in force stays', { file: this.file, err: token.problem });
      if (live.includes('admin.token')) live.splice(live.indexOf('admin.token'), 1);
      failed.push('admin.token');
    } else if (token.token !== this.running.admin.token || token.tokenFile !== this.running.admin.tokenFile) {
      next = { ...next, admin: { ...next.admin, token: token.token, tokenFile: token.tokenFile } };
      if (!live.includes('admin.token')) live.push('admin.token');
    }
    if (live.length > 0) {
      // Said before a new log level may silence it.
      this.logger.info('local settings applied from the file', { file: this.file, settings: live });
      const previous = this.running;
      this.running = next;
      this.logger.setLevel(next.log.level);
      await this.frontend.updateSettings({
        listeners: next.listeners,
        drainMs: next.shutdownDrainMs,
        limits: next.limits,
        trustedProxies: next.trustedProxies,
        logLevel: next.log.level,
      });
      this.adminServer.headersTimeout = next.limits.headersTimeoutMs;
      if (next.admin.token !== previous.admin.token) this.adminServer.setToken(next.admin.token ?? this.envToken);
    }
    const wasRequired = this.restartRequired;
    this.restartRequired = changes.restart.length > 0 || failed.length > 0;
    this.metrics.setRestartRequired(this.restartRequired);
    if (changes.restart.length > 0) {
      this.logger.warn('the file changes local settings that take effect only after a restart; until then the node keeps running with the old ones', {
        file: this.file,
        settings: changes.restart,
      });
    } else if (wasRequired && !this.restartRequired) {
      this.logger.info('no restart needed any more: the local settings of the file match what runs', { file: this.file });
    }
  }

  /** The admin token an edited file names: inline, or its tokenFile's content read now (path resolved). */
  private async editedAdminToken(edited: Config): Promise<{ token: string | null; tokenFile: string | null } | { problem: string }> {
    if (edited.admin.tokenFile === null) return { token: edited.admin.token, tokenFile: null };
    const tokenFile = resolveConfigPath(this.baseDir, edited.admin.tokenFile);
    const read = await readSecretFile(tokenFile);
    return 'problem' in read ? read : { token: read.content, tokenFile };
  }

  /**
   * The edited listeners whose TLS files can be used; one whose files cannot keeps what it runs with (or, new, is left
   * out), and the error names the file.
   */
  private usableListeners(edited: readonly ListenerConfig[]): { listeners: ListenerConfig[]; failed: boolean } {
    const running = new Map(this.running.listeners.map((listener) => [listener.name, listener]));
    let failed = false;
    const listeners: ListenerConfig[] = [];
    for (const listener of edited) {
      const current = running.get(listener.name);
      if (listener.tls === null || isDeepStrictEqual(listener.tls, current?.tls)) {
        listeners.push(listener);
        continue;
      }
      try {
        checkTlsFiles(listener.tls);
        listeners.push(listener);
      } catch (error) {
        failed = true;
        this.logger.error('the TLS files named in the config file cannot be used; still serving the previous certificate (fix the files, then send SIGHUP)', {
          file: this.file,
          listener: listener.name,
          err: errorMessage(error),
        });
        if (current !== undefined) listeners.push(current);
      }
    }
    return { listeners, failed };
  }

  /** SIGUSR1: reopen the access log file (after logrotate moved it). */
  reopenLogs(): void {
    this.frontend.reopenAccessLog();
    if (this.config.log.accessFile !== null) this.logger.info('access log reopened', { file: this.config.log.accessFile });
  }

  /** SIGHUP: re-read the file now, as the watcher would on a change. */
  async reload(): Promise<void> {
    try {
      await this.onFileEdit(await readFile(this.file, 'utf8'));
    } catch (error) {
      this.logger.error('config reload failed: cannot read the file', { file: this.file, err: error });
    }
  }

  /**
   * Graceful: /readyz turns 503 at once; the listener keeps accepting for the pre-stop delay (so whatever sends
   * traffic here sees it and stops first), then stops accepting and lets in-flight requests finish until the drain
   * deadline; then everything closes.
   */
  async stop(drainMs = this.config.shutdownDrainMs, preStopDelayMs = this.config.shutdownPreStopDelayMs): Promise<void> {
    // First, so a load balancer in front stops sending before the listener stops accepting.
    this.store.readiness.set(
      'draining',
      preStopDelayMs > 0 ? `shutting down: still accepting for the pre-stop delay (${preStopDelayMs} ms), then draining` : 'shutting down: draining requests in flight',
    );
    this.logger.info('shutting down', { drainMs, preStopDelayMs });
    this.closeWatcher();
    if (preStopDelayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, preStopDelayMs));
      this.store.readiness.set('draining', 'shutting down: draining requests in flight');
      this.logger.info('pre-stop delay over: the listener stops accepting and drains', { drainMs });
    }
    await this.frontend.close(drainMs);
    if (!(this.store instanceof LocalStore)) await this.store.stop();
    this.dataPlane.stop();
    await new Promise<void>((resolve) => {
      this.adminServer.close(() => resolve());
      this.adminServer.closeAllConnections();
    });
    await this.demo?.close();
    this.logger.info('stopped');
  }
}

async function listenAdmin(server: Server, listen: string): Promise<AddressInfo> {
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}
