// The node's named proxy listeners: started from the config, then added, removed, changed and replaced live as it is edited.

import { isDeepStrictEqual } from 'node:util';
import type { AddressInfo } from 'node:net';
import type { LimitsConfig, ListenerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import { errorMessage } from '../errors.js';
import type { AccessLog } from './access-log.js';
import type { Forwarder } from './forward.js';
import { ProxyListener, type RouteSource } from './listener.js';

export interface ListenerSetOptions {
  readonly limits: LimitsConfig;
  readonly routes: RouteSource;
  readonly forwarder: Forwarder;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'listener'>;
  /** Shared by every listener; closed with the set. null: no access log. */
  readonly accessLog: AccessLog | null;
}

interface Running {
  readonly listener: ProxyListener;
  config: ListenerConfig;
  address: AddressInfo;
}

export class ListenerSet {
  /** In config order: the first TLS listener is where redirectToHttps sends clients. */
  private running: Running[] = [];
  /** Listeners removed or replaced, finishing their requests. */
  private readonly draining = new Set<Promise<void>>();
  private limits: LimitsConfig;
  /** Edits are applied one after another, never interleaved. */
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private configs: readonly ListenerConfig[],
    private readonly options: ListenerSetOptions,
  ) {
    this.limits = options.limits;
  }

  /** Starts every listener; if one cannot (address in use, unreadable certificate), none is left running. */
  async start(): Promise<AddressInfo> {
    try {
      for (const config of this.configs) this.running.push(await this.open(config));
    } catch (error) {
      await this.close(0);
      throw error;
    }
    return this.running[0]!.address;
  }

  /** Where each listener is bound, by name. */
  get addresses(): ReadonlyMap<string, AddressInfo> {
    return new Map(this.running.map((entry) => [entry.config.name, entry.address]));
  }

  private httpsPort(): number | null {
    return this.running.find((entry) => entry.config.tls !== null)?.address.port ?? null;
  }

  private async open(config: ListenerConfig, boundPort?: number): Promise<Running> {
    const listener = new ProxyListener({
      config,
      limits: this.limits,
      httpsPort: () => this.httpsPort(),
      routes: this.options.routes,
      forwarder: this.options.forwarder,
      logger: this.options.logger,
      metrics: this.options.metrics.listener(config.name),
      accessLog: this.options.accessLog,
    });
    try {
      const address = await listener.start(boundPort);
      return { listener, config, address };
    } catch (error) {
      await listener.close(0);
      throw new Error(`listener ${config.name} on ${config.listen}: ${errorMessage(error)}`, { cause: error });
    }
  }

  /** Stops accepting at once; the listener's connections finish their requests (up to drainMs) in the background. */
  private retire(entry: Running, drainMs: number, why: string): void {
    void entry.listener.openConnections().then((open) => {
      this.options.logger.info(`listener ${why}: draining its connections`, { listener: entry.config.name, listen: entry.config.listen, open, drainMs });
    });
    const done = entry.listener.close(drainMs).catch((error: unknown) => this.options.logger.error('listener drain failed', { listener: entry.config.name, err: error }));
    this.draining.add(done);
    void done.finally(() => this.draining.delete(done));
  }

  /**
   * The listeners of an edited file: new ones start, removed ones stop accepting and drain, changed ones are updated
   * in place (certificates, redirect) or replaced by a new server. A listener that cannot start is logged and left
   * out (or, replacing one on another address, the old one keeps serving); the others are unaffected.
   */
  apply(configs: readonly ListenerConfig[], drainMs: number): Promise<void> {
    const next = this.queue.then(() => this.applyNow(configs, drainMs));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(configs: readonly ListenerConfig[], drainMs: number): Promise<void> {
    if (this.closed) return;
    const logger = this.options.logger;
    const byName = new Map(this.running.map((entry) => [entry.config.name, entry]));
    const wanted = new Set(configs.map((config) => config.name));
    // Removed first: a new listener may take over a removed one's address.
    for (const entry of this.running) {
      if (!wanted.has(entry.config.name)) this.retire(entry, drainMs, 'removed');
    }
    const running: Running[] = [];
    for (const config of configs) {
      const current = byName.get(config.name);
      if (current === undefined) {
        try {
          const started = await this.open(config);
          running.push(started);
          logger.info('listener added', { listener: config.name, listen: `${started.address.address}:${started.address.port}` });
        } catch (error) {
          logger.error('listener could not start; the other listeners are unaffected', { listener: config.name, err: errorMessage(error) });
        }
        continue;
      }
      if (isDeepStrictEqual(current.config, config)) {
        running.push(current);
        continue;
      }
      if (current.listener.canReconfigure(config)) {
        try {
          current.listener.reconfigure(config);
          current.config = config;
          logger.info('listener changed in place', { listener: config.name });
        } catch (error) {
          logger.error('listener change failed; it keeps its previous settings', { listener: config.name, err: errorMessage(error) });
        }
        running.push(current);
        continue;
      }
      const replaced = await this.replace(current, config, drainMs);
      if (replaced !== null) running.push(replaced);
    }
    this.running = running;
  }

  /**
   * A new server for a listener whose address or protocols changed. On the same address the old one must let go of
   * it first (new connections are refused for that moment); elsewhere the new one binds first, so a bad address
   * leaves the old one serving.
   */
  private async replace(current: Running, config: ListenerConfig, drainMs: number): Promise<Running | null> {
    const logger = this.options.logger;
    const sameAddress = current.config.listen === config.listen;
    if (sameAddress) this.retire(current, drainMs, 'replaced');
    try {
      // Port 0 means "any free port" only the first time: a replaced listener stays where clients know it.
      const started = await this.open(config, sameAddress ? current.address.port : undefined);
      if (!sameAddress) this.retire(current, drainMs, 'moved');
      logger.info('listener replaced', { listener: config.name, listen: `${started.address.address}:${started.address.port}` });
      return started;
    } catch (error) {
      if (sameAddress) {
        logger.error('listener could not restart with its new settings; it is stopped until the file is fixed', { listener: config.name, err: errorMessage(error) });
        return null;
      }
      logger.error('listener could not move; it keeps serving where it was', { listener: config.name, err: errorMessage(error) });
      return current;
    }
  }

  /**
   * Settings edited in the file: limits and trusted proxies for every listener's new connections and requests, then
   * the listeners themselves (see apply).
   */
  updateSettings(settings: { listeners: readonly ListenerConfig[]; drainMs: number; limits: LimitsConfig; trustedProxies: readonly string[] }): Promise<void> {
    this.limits = settings.limits;
    for (const entry of this.running) entry.listener.updateSettings(settings);
    return this.apply(settings.listeners, settings.drainMs);
  }

  reopenAccessLog(): void {
    this.options.accessLog?.reopen();
  }

  /** Every listener stops accepting and drains (up to drainMs); then the access log closes. */
  async close(drainMs: number): Promise<void> {
    this.closed = true;
    await this.queue;
    const running = this.running;
    this.running = [];
    await Promise.all([...running.map((entry) => entry.listener.close(drainMs)), ...this.draining]);
    await this.options.accessLog?.close();
  }
}
