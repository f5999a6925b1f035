// The client-facing HTTP(S) server: connection limits, slow-client timeouts, request guards, routing, graceful drain.

import http from 'node:http';
import https from 'node:https';
import { watchFile, unwatchFile } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { LimitsConfig, TlsListenerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { CONNECT_REFUSED, noRoute, notServing, parseErrorReply, target as targetReply, writeErrorResponse, writeRawError, type ErrorReply } from './error-status.js';
import { checkFraming, checkTarget } from './request-guard.js';
import { canAnswerClientError, dropAfterClientError, isClosing } from '../connection-close.js';
import { connectionAccepted, noteRawAnswer, rawAnswerOf, type AccessLog } from './access-log.js';
import { hostWithoutPort, type CompiledRoute, type RouteLookup, type RouteRequest } from './router.js';
import { routeAnswer, writeRawRouteAnswer, writeRouteAnswer, type RouteAnswer } from './route-answer.js';
import { normalizePath, splitTarget } from './normalize-path.js';
import type { Forwarder } from './forward.js';
import type { PoolEntry } from './forward-types.js';
import { parseHostPort } from '../net-address.js';
import { readListenerTls, sameTlsFiles } from './listener-tls.js';

export type RouteDecision = RouteLookup<PoolEntry>;

/** Where the listener looks requests up: the in-process DataPlane, or a worker's copy of it. */
export interface RouteSource {
  route(request: RouteRequest): RouteDecision | undefined;
  /** Null once a config is applied; before that, why there is none (an unrouted request then gets 503, not 404). */
  notServingReason(): string | null;
}

export interface ListenerOptions {
  readonly listen: string;
  readonly tls: TlsListenerConfig | null;
  readonly limits: LimitsConfig;
  readonly routes: RouteSource;
  readonly forwarder: Forwarder;
  readonly logger: Logger;
  /** null: no access log. */
  readonly accessLog: AccessLog | null;
}

export class ProxyListener {
  private readonly server: http.Server;
  private readonly options: ListenerOptions;
  private readonly sockets = new Set<Socket>();
  private draining = false;
  /** The limits in force: the file's, updated live when it is edited. */
  private limits: LimitsConfig;
  /** The certificate and key files served from (they may change when the file is edited); null: plain HTTP. */
  private tls: TlsListenerConfig | null;
  private tlsWatched: string[] = [];

  constructor(options: ListenerOptions) {
    this.options = options;
    const limits = options.limits;
    this.limits = limits;
    this.tls = options.tls;
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks headers/request timeouts on this period; the default 30 s lets slowloris linger far too long.
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
      requireHostHeader: true,
    };
    this.server = options.tls === null ? http.createServer(serverOptions) : https.createServer({ ...serverOptions, ...readListenerTls(options.tls) });
    this.server.maxConnections = limits.maxConnections;
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    // Without a listener Node drops CONNECT silently; say why instead.
    this.server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      this.logSocketRequest(req, socket);
      socket.on('error', () => socket.destroy());
      writeRawError(socket, CONNECT_REFUSED);
    });
    this.server.on('clientError', (error: Error & { code?: string }, socket: Duplex) => this.onClientError(error, socket));
    // A TLS server's requests arrive on the TLS socket 'secureConnection' gives, not on the TCP one.
    if (options.accessLog !== null) this.server.on(options.tls === null ? 'connection' : 'secureConnection', (socket: Socket) => connectionAccepted(socket));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('tlsClientError', (error: Error) => {
      if (options.logger.enabled('debug')) options.logger.debug('TLS handshake failed', { err: error });
    });
  }

  async start(): Promise<AddressInfo> {
    const { host, port } = parseHostPort(this.options.listen);
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (error: Error) => this.options.logger.error('listener error', { err: error }));
    if (this.tls !== null) this.watchTls(this.tls);
    return this.server.address() as AddressInfo;
  }

  /** Certificates are re-read when either file changes, so renewals need no restart; a bad pair keeps the old one. */
  private watchTls(tls: TlsListenerConfig): void {
    const reload = (): void => {
      try {
        (this.server as https.Server).setSecureContext(readListenerTls(tls));
        this.options.logger.info('TLS certificate reloaded', { cert: tls.cert });
      } catch (error) {
        this.options.logger.error('TLS certificate reload failed; keeping the previous one', { cert: tls.cert, key: tls.key, err: errorMessage(error) });
      }
    };
    for (const file of [tls.cert, tls.key]) {
      watchFile(file, { interval: 1_000, persistent: false }, (current, previous) => {
        if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size) reload();
      });
    }
    this.tlsWatched = [tls.cert, tls.key];
  }

  private unwatchTls(): void {
    for (const file of this.tlsWatched) unwatchFile(file);
    this.tlsWatched = [];
  }

  /**
   * Serves new connections with the certificate and key of other files (the file's tls paths were edited), and
   * watches those from now on. A pair that cannot be used keeps the current certificate (and its watch), is logged
   * naming the file, and returns false. Switching between HTTP and HTTPS needs a new server: not done here.
   */
  useTlsFiles(tls: TlsListenerConfig): boolean {
    if (this.tls === null) throw new Error('the listener serves plain HTTP: TLS can only be turned on by a restart');
    if (sameTlsFiles(this.tls, tls)) return true;
    try {
      (this.server as https.Server).setSecureContext(readListenerTls(tls));
    } catch (error) {
      this.options.logger.error('cannot switch to the new TLS certificate files; still serving the previous certificate', {
        cert: tls.cert,
        key: tls.key,
        serving: this.tls.cert,
        err: errorMessage(error),
      });
      return false;
    }
    this.options.logger.info('TLS certificate files changed: new connections get the new certificate', { cert: tls.cert, key: tls.key, previous: this.tls.cert });
    this.tls = tls;
    if (this.tlsWatched.length > 0) {
      this.unwatchTls();
      this.watchTls(tls);
    }
    return true;
  }

  /**
   * What every request and upgrade goes through: target normalised, route found, framing checked once against
   * the body limit that applies (the route's when it sets one, else the listener's).
   */
  private admit(req: http.IncomingMessage): { rejection: ErrorReply } | { decision: RouteDecision; maxBodySize: number } {
    const target = checkTarget(req);
    if (target !== null) return { rejection: target };
    const { path, query } = splitTarget(req.url ?? '/');
    const normalized = normalizePath(path, this.limits.rejectEncodedSlash);
    if ('error' in normalized) {
      return { rejection: normalized.error === 'encoded-slash' ? targetReply.encodedSlash(normalized.detail) : targetReply.badEscape(normalized.detail) };
    }
    // The backend receives the path the routes judged.
    if (normalized.path !== path) req.url = `${normalized.path}${query}`;
    const decision = this.options.routes.route({
      host: hostWithoutPort(req.headers.host),
      path: normalized.path,
      query,
      method: req.method ?? 'GET',
      headers: req.headers,
    });
    const maxBodySize = decision !== undefined && decision.maxBodySize > 0 ? decision.maxBodySize : this.limits.maxBodySize;
    const framing = checkFraming(req, maxBodySize);
    if (framing !== null) return { rejection: framing };
    if (decision === undefined) {
      const waiting = this.options.routes.notServingReason();
      return { rejection: waiting === null ? noRoute(req.headers.host, req.url) : notServing(waiting) };
    }
    return { decision, maxBodySize };
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // The rest of a request head that timed out, completed while its connection lingers: never served.
    if (isClosing(req.socket)) {
      req.socket.destroy();
      return;
    }
    const admission = this.admit(req);
    if ('rejection' in admission) {
      this.logRequest(req, res, admission.rejection.code);
      // The body of a request refused by its framing or target is never read, so the connection cannot be reused
      // safely; an unrouted request's was checked like any other, and its connection stays unless we are draining.
      const unrouted = admission.rejection.code === 'NO_ROUTE' || admission.rejection.code === 'NOT_SERVING';
      if (!unrouted) req.resume();
      writeErrorResponse(res, admission.rejection, !unrouted || this.draining);
      return;
    }
    const { decision } = admission;
    if (decision.entry === null) {
      const answer = this.routeAnswer(req, decision.route);
      this.logRequest(req, res, answer.code);
      // The body is not wanted; read it so the connection can carry the next request.
      req.resume();
      writeRouteAnswer(res, answer.answer, this.draining);
      return;
    }
    const log = this.accessLine(req);
    this.options.forwarder.forward(req, res, decision.entry, decision.route, admission.maxBodySize, this.draining);
    // Registered after forward(), whose own 'close' listener leaves the upstream facts on req first.
    if (log !== null) res.once('close', () => log(res));
  }

  /** What the access line of a request needs from when it arrived; null without an access log. */
  private accessLine(req: http.IncomingMessage, code: string | null = null): ((res: http.ServerResponse) => void) | null {
    const accessLog = this.options.accessLog;
    if (accessLog === null) return null;
    const startedAt = performance.now();
    const time = new Date().toISOString();
    return (res) => {
      // A request timeout answered on the bare socket while its response had not started: the client got that.
      const raw = res.headersSent ? undefined : rawAnswerOf(req.socket);
      accessLog.requestDone(req, res.headersSent ? res.statusCode : (raw?.status ?? 499), time, startedAt, code ?? raw?.code ?? null);
    };
  }

  private logRequest(req: http.IncomingMessage, res: http.ServerResponse, code: string): void {
    const log = this.accessLine(req, code);
    if (log !== null) res.once('close', () => log(res));
  }

  /** Upgrade and CONNECT requests leave the HTTP server with their socket: their line is written when it closes. */
  private logSocketRequest(req: http.IncomingMessage, socket: Duplex): void {
    const accessLog = this.options.accessLog;
    if (accessLog === null) return;
    const startedAt = performance.now();
    const time = new Date().toISOString();
    socket.once('close', () => accessLog.socketRequestDone(req, socket, time, startedAt));
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    if (isClosing(socket)) {
      socket.destroy();
      return;
    }
    this.logSocketRequest(req, socket);
    socket.on('error', () => socket.destroy());
    const admission = this.admit(req);
    if ('rejection' in admission) {
      writeRawError(socket, admission.rejection);
      return;
    }
    const { decision } = admission;
    if (decision.entry === null) {
      const answer = this.routeAnswer(req, decision.route);
      noteRawAnswer(socket, answer.answer.status, answer.code);
      writeRawRouteAnswer(socket, answer.answer);
      return;
    }
    this.options.forwarder.upgrade(req, socket, head, decision.entry, decision.route);
  }

  /** The redirect or fixed answer of a route that forwards nothing, with the code the access log tells it by. */
  private routeAnswer(req: http.IncomingMessage, route: CompiledRoute | null): { answer: RouteAnswer; code: string } {
    const { path, query } = splitTarget(req.url ?? '/');
    const source = { encrypted: (req.socket as { encrypted?: boolean }).encrypted === true, hostHeader: req.headers.host ?? '', path, query };
    const answer = route === null ? null : routeAnswer(route.config, source);
    // lookupRoute gives no entry only for a route with redirect or respond.
    if (answer === null) throw new Error('a route without a pool has neither redirect nor respond');
    return { answer, code: route!.config.redirect !== null ? 'ROUTE_REDIRECT' : 'ROUTE_RESPOND' };
  }

  private onClientError(error: Error & { code?: string }, socket: Duplex): void {
    if (!canAnswerClientError(error.code, socket)) {
      dropAfterClientError(error.code, socket);
      return;
    }
    const accessLog = this.options.accessLog;
    // Once per connection (the parser may report again while it lingers), and only when no request of it is
    // under way: that request's own line tells what the client got.
    const pendingRequest = (socket as Duplex & { _httpMessage?: unknown })._httpMessage != null;
    if (accessLog !== null && !isClosing(socket) && !pendingRequest) socket.once('close', () => accessLog.unparsedDone(socket));
    writeRawError(socket, parseErrorReply(error.code));
  }

  /**
   * An edit of the file's limits, trusted proxies or TLS files, applied without a restart: the timeouts at Node's
   * next check, the header size, connection cap and certificate for new connections, the body limit and trusted
   * proxies for new requests.
   */
  updateSettings(settings: { limits: LimitsConfig; trustedProxies: readonly string[]; tls: TlsListenerConfig | null }): void {
    const { limits } = settings;
    if (settings.tls !== null && this.tls !== null) this.useTlsFiles(settings.tls);
    this.limits = limits;
    this.server.maxConnections = limits.maxConnections;
    // Node reads it for each new connection's parser (not in its typings).
    (this.server as http.Server & { maxHeaderSize?: number }).maxHeaderSize = limits.maxHeaderSize;
    this.server.headersTimeout = limits.headersTimeoutMs;
    this.server.requestTimeout = limits.requestTimeoutMs;
    this.server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    this.options.forwarder.setTrustedProxies(settings.trustedProxies);
  }

  reopenAccessLog(): void {
    this.options.accessLog?.reopen();
  }

  get address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left. */
  async close(drainMs: number): Promise<void> {
    this.draining = true;
    this.unwatchTls();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), drainMs).unref());
    const result = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    if (result === 'timeout') {
      this.options.logger.warn('drain deadline reached; closing remaining connections', { open: this.sockets.size });
      this.server.closeAllConnections();
      for (const socket of this.sockets) socket.destroy();
      await closed;
    }
    // The last connections' close events (and their access lines) run before the log closes.
    await new Promise((resolve) => setImmediate(resolve));
    await this.options.accessLog?.close();
  }
}
