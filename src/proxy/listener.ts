// One client-facing HTTP(S) listener: connection limits, slow-client timeouts, request guards, routing, graceful drain.

import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { LimitsConfig, ListenerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { ListenerMetrics } from '../metrics/types.js';
import { TlsCertificates, presentedUnverifiedCertificate, verifiedClientSubject } from './tls-certificates.js';
import { redirectToHttps } from './https-redirect.js';
import { Http2Front, sniffH2cPreface } from './http2-front.js';
import { adaptHttp2Request } from './http2-requests.js';
import { isGrpcRequest } from './grpc.js';
import { CONNECT_REFUSED, noRoute, notServing, parseErrorReply, rateLimited, target as targetReply, writeErrorResponse, writeRawError, type ErrorReply } from './error-status.js';
import { checkFraming, checkTarget } from './request-guard.js';
import { canAnswerClientError, dropAfterClientError, isClosing } from '../connection-close.js';
import { connectionAccepted, noteRawAnswer, noteUpstream, rawAnswerOf, type AccessLog } from './access-log.js';
import { IncomingRouteRequest, type CompiledRoute, type RouteLookup, type RouteRequest } from './router.js';
import { routeAnswer, writeRawRouteAnswer, writeRouteAnswer, type RouteAnswer } from './route-answer.js';
import { normalizePath, splitTarget } from './normalize-path.js';
import { assignRequestId, requestIdOf } from './request-id.js';
import { applyToResponse, headerVariables } from './header-rules.js';
import type { Forwarder } from './forward.js';
import type { PoolEntry } from './forward-types.js';
import { splitHostPort } from '../net-address.js';
import { plainAddress } from './headers.js';

export type RouteDecision = RouteLookup<PoolEntry>;

/** Where the listener looks requests up: the in-process DataPlane, or a worker's copy of it. */
export interface RouteSource {
  route(request: RouteRequest): RouteDecision | undefined;
  /** Null once a config is applied; before that, why there is none (an unrouted request then gets 503, not 404). */
  notServingReason(): string | null;
}

export interface ListenerOptions {
  readonly config: ListenerConfig;
  readonly limits: LimitsConfig;
  /** The port of the TLS listener that redirectToHttps sends clients to; null when there is none. */
  readonly httpsPort?: () => number | null;
  readonly routes: RouteSource;
  readonly forwarder: Forwarder;
  readonly logger: Logger;
  /** This listener's request counts. */
  readonly metrics: ListenerMetrics;
  /** null: no access log. */
  readonly accessLog: AccessLog | null;
}

export class ProxyListener {
  private readonly server: http.Server;
  private readonly options: ListenerOptions;
  /**
   * The connections no HTTP/1 parser of the server holds, which closeAllConnections() would miss at the drain deadline:
   * a TLS listener's TCP sockets (the parser holds their TLS socket), a plain one's while its first bytes are read for
   * the h2c preface, and the sockets Upgrade and CONNECT requests take out of the server. A plain HTTP/1 connection is
   * Node's alone: tracking it here too cost about 240 bytes per idle keep-alive connection (this set's slot, and a
   * second 'close' listener, which keeps the socket's listeners an array of 20 slots after its first request).
   */
  private readonly socketsOutsideHttp1 = new Set<Duplex>();
  /** Adds a socket to socketsOutsideHttp1 until it closes. */
  private readonly trackSocket: (socket: Duplex) => void;
  /** Removes a socket from socketsOutsideHttp1: an HTTP/1 parser of the server has it now. */
  private readonly untrackSocket: (socket: Duplex) => void;
  /** Open connections by client address, for limits.maxConnectionsPerIp (tracked only while it is set). */
  private readonly connectionsByAddress = new Map<string, number>();
  private draining = false;
  /** The limits in force: the file's, updated live when it is edited. */
  private limits: LimitsConfig;
  /** This listener's settings; what can change without a new server (see reconfigure) is updated here. */
  private config: ListenerConfig;
  private certificates: TlsCertificates | null;
  /** Serves the connections that speak HTTP/2 (ALPN h2, or the h2c preface); null when the listener offers none. */
  private readonly http2: Http2Front | null;

  /** Throws when a certificate cannot be read or does not fit its key. */
  constructor(options: ListenerOptions) {
    this.options = options;
    this.config = options.config;
    const limits = options.limits;
    this.limits = limits;
    const tls = options.config.tls;
    this.certificates = tls === null ? null : new TlsCertificates(tls, options.logger);
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks headers/request timeouts on this period; the default 30 s lets slowloris linger far too long.
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
      requireHostHeader: true,
    };
    this.server =
      this.certificates === null
        ? http.createServer(serverOptions)
        : https.createServer({
            ...serverOptions,
            ...this.certificates.serverOptions(),
            ALPNProtocols: options.config.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
            // Through `this`, so a live edit of the certificates applies to the next handshake.
            SNICallback: (servername, callback) => callback(null, this.certificates?.contextFor(servername)),
          });
    this.server.maxConnections = limits.maxConnections;
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    // Without a listener Node drops CONNECT silently; say why instead.
    this.server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      this.trackSocket(socket);
      this.logSocketRequest(req, socket);
      socket.on('error', () => socket.destroy());
      writeRawError(socket, CONNECT_REFUSED);
    });
    this.server.on('clientError', (error: Error & { code?: string }, socket: Duplex) => this.onClientError(error, socket));
    // A TLS server's requests arrive on the TLS socket 'secureConnection' gives, not on the TCP one.
    if (options.accessLog !== null) this.server.on(tls === null ? 'connection' : 'secureConnection', (socket: Socket) => connectionAccepted(socket));
    if (tls !== null) {
      // clientAuth: request lets a client send no certificate, not one that fails to verify.
      this.server.on('secureConnection', (socket: TLSSocket) => {
        if (this.config.tls?.clientAuth === 'request' && presentedUnverifiedCertificate(socket)) {
          if (options.logger.enabled('debug')) options.logger.debug('client certificate did not verify', { listener: this.name, err: socket.authorizationError });
          socket.destroy();
        }
      });
    }
    // One 'close' listener shared by every tracked socket (called with the socket as `this`): a closure or a once()
    // wrapper per connection costs about 200 bytes more each.
    const outside = this.socketsOutsideHttp1;
    const forget = function (this: Duplex): void {
      outside.delete(this);
    };
    this.trackSocket = (socket) => {
      outside.add(socket);
      socket.on('close', forget);
    };
    this.untrackSocket = (socket) => {
      outside.delete(socket);
      socket.off('close', forget);
    };
    const offersHttp2 = tls === null ? options.config.h2c : options.config.http2;
    // Node's HTTP/1 handler took a plain connection before this listener runs; the others reach a parser later or never.
    const parsedAtOnce = tls === null && !offersHttp2;
    this.server.on('connection', (socket: Socket) => {
      if (!this.admitConnection(socket)) return;
      if (!parsedAtOnce) this.trackSocket(socket);
    });
    this.server.on('tlsClientError', (error: Error) => {
      if (options.logger.enabled('debug')) options.logger.debug('TLS handshake failed', { err: error });
    });
    this.http2 = offersHttp2
      ? new Http2Front({
          maxHeaderListSize: limits.maxHeaderSize,
          idleTimeoutMs: limits.keepAliveTimeoutMs,
          onRequest: (req, res) => this.onRequest(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse),
          logger: options.logger,
        })
      : null;
    if (this.http2 !== null) this.routeHttp2Connections(this.http2, tls !== null);
  }

  /**
   * Puts a dispatcher in place of Node's HTTP/1 connection handler, last, after the listeners above counted the
   * socket and checked its certificate: ALPN h2 (TLS) or the h2c preface (plain) go to HTTP/2, the rest to HTTP/1.
   */
  private routeHttp2Connections(front: Http2Front, tls: boolean): void {
    const event = tls ? 'secureConnection' : 'connection';
    // The first listener is the one the http/https constructor registered.
    const [http1] = this.server.listeners(event) as Array<(socket: Socket) => void>;
    this.server.removeListener(event, http1!);
    const toHttp1 = (socket: Socket): void => {
      if (!tls) this.untrackSocket(socket);
      http1!.call(this.server, socket);
    };
    if (tls) {
      this.server.on(event, (socket: TLSSocket) => {
        if (socket.destroyed) return;
        if (socket.alpnProtocol === 'h2') front.take(socket);
        else toHttp1(socket);
      });
    } else {
      this.server.on(event, (socket: Socket) => sniffH2cPreface(socket, this.limits.headersTimeoutMs, (s) => front.take(s), toHttp1));
    }
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * limits.maxConnectionsPerIp: a connection past the address's share is closed before anything is read from it (as
   * HAProxy's `tcp-request connection reject` does); the peer's address counts, so a trusted proxy's connections are its own.
   */
  private admitConnection(socket: Socket): boolean {
    const limit = this.limits.maxConnectionsPerIp;
    if (limit === 0) return true;
    const address = plainAddress(socket.remoteAddress ?? '');
    const open = this.connectionsByAddress.get(address) ?? 0;
    if (open >= limit) {
      if (this.options.logger.enabled('debug')) this.options.logger.debug('connection refused: limits.maxConnectionsPerIp reached', { listener: this.name, client: address, open, limit });
      socket.destroy();
      return false;
    }
    this.connectionsByAddress.set(address, open + 1);
    socket.once('close', () => {
      const left = (this.connectionsByAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.connectionsByAddress.delete(address);
      else this.connectionsByAddress.set(address, left);
    });
    return true;
  }

  /** The route's and then the pool's rate limit: the 429 of the first that refuses the request, else null. */
  private rateLimit(req: http.IncomingMessage, decision: RouteDecision): ErrorReply | null {
    const route = decision.route;
    const routeLimiter = route?.rateLimit ?? null;
    const poolLimiter = decision.entry?.rateLimit ?? null;
    // Most requests meet no limiter: no array for them.
    if (routeLimiter === null && poolLimiter === null) return null;
    const limiters = [routeLimiter, poolLimiter];
    const clientAddressOf = (request: http.IncomingMessage): string => this.options.forwarder.clientAddressOf(request);
    // The lone pool's requests have no route label, as in the forwarder's request metrics.
    const label = route?.label ?? '';
    for (const limiter of limiters) {
      if (limiter === null) continue;
      const verdict = limiter.take(limiter.keyOf(req, clientAddressOf), label);
      if (verdict !== null) {
        decision.entry?.metrics.requestWithoutBackend('4xx', label);
        return rateLimited(limiter.scope, verdict);
      }
    }
    return null;
  }

  /** `boundPort`: for a listen address with port 0, the port to take (a replaced listener keeps the one it had). */
  async start(boundPort?: number): Promise<AddressInfo> {
    const parsed = splitHostPort(this.config.listen);
    const host = parsed.host;
    const port = parsed.port === 0 && boundPort !== undefined ? boundPort : parsed.port;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (error: Error) => this.options.logger.error('listener error', { listener: this.name, err: error }));
    this.certificates?.watch(this.server as https.Server);
    return this.server.address() as AddressInfo;
  }

  /**
   * Whether `config` can replace this listener's settings on the running server: the same address, protocols and
   * client-certificate mode; certificates, versions, ciphers and the redirect may differ.
   */
  canReconfigure(config: ListenerConfig): boolean {
    const before = this.config;
    if (config.listen !== before.listen || config.http2 !== before.http2 || config.h2c !== before.h2c) return false;
    if ((config.tls === null) !== (before.tls === null)) return false;
    return config.tls === null || config.tls.clientAuth === before.tls!.clientAuth;
  }

  /** Applies a config canReconfigure accepted; throws (changing nothing) when new certificates cannot be read. */
  reconfigure(config: ListenerConfig): void {
    if (config.tls !== null && !isDeepStrictEqual(config.tls, this.config.tls)) {
      const certificates = new TlsCertificates(config.tls, this.options.logger);
      const server = this.server as https.Server;
      certificates.install(server);
      this.certificates?.unwatch();
      this.certificates = certificates;
      certificates.watch(server);
      this.options.logger.info('TLS certificate files changed: new connections get the new certificate', {
        listener: this.name,
        certs: config.tls.certificates.map((pair) => pair.cert),
      });
    }
    this.config = config;
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
    const decision = this.lookup(req, normalized.path, query);
    const maxBodySize = decision !== undefined && decision.maxBodySize > 0 ? decision.maxBodySize : this.limits.maxBodySize;
    const framing = checkFraming(req, maxBodySize);
    if (framing !== null) return { rejection: framing };
    if (decision === undefined) {
      const waiting = this.options.routes.notServingReason();
      return { rejection: waiting === null ? noRoute(req.headers.host, req.url) : notServing(waiting) };
    }
    return { decision, maxBodySize };
  }

  /** The client certificate header: never what the client sent, only the verified subject of its TLS connection. */
  private setClientCertHeader(req: http.IncomingMessage): void {
    const header = this.config.tls?.clientCertHeader ?? null;
    if (header === null) return;
    delete req.headers[header];
    const subject = verifiedClientSubject(req.socket as TLSSocket);
    if (subject !== null) req.headers[header] = subject;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // The rest of a request head that timed out, completed while its connection lingers: never served.
    if (isClosing(req.socket)) {
      req.socket.destroy();
      return;
    }
    if (req.httpVersionMajor === 2) {
      adaptHttp2Request(req);
      this.options.metrics.request(isGrpcRequest(req) ? 'grpc' : 'h2');
    } else this.options.metrics.request('http1');
    assignRequestId(req, this.options.forwarder.trustsPeerOf(req.socket));
    if (this.config.redirectToHttps && !this.claimedByRoute(req) && this.redirect(req, res)) return;
    this.setClientCertHeader(req);
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
    const limited = this.rateLimit(req, decision);
    if (limited !== null) {
      this.logRequest(req, res, limited.code);
      // Read (and drop) the body, within the limit already checked, so the connection can carry the client's retry.
      req.resume();
      writeErrorResponse(res, limited, this.draining);
      return;
    }
    if (decision.entry === null) {
      const answer = this.routeAnswer(req, decision.route);
      this.logRequest(req, res, answer.code);
      // The body is not wanted; read it so the connection can carry the next request.
      req.resume();
      writeRouteAnswer(res, this.withResponseHeaders(req, decision.route, answer.answer), this.draining);
      return;
    }
    const log = this.accessLine(req);
    const forwarded = this.options.forwarder.forward(req, res, decision.entry, decision.route, admission.maxBodySize, this.draining);
    // Registered after forward()'s own 'close' listener, which settles the attempt the facts describe.
    if (log !== null) {
      res.once('close', () => {
        noteUpstream(req, forwarded.upstreamFacts());
        log(res);
      });
    }
  }

  /**
   * redirectToHttps has one exception: a request whose route names this listener in match.listener (an ACME
   * http-01 challenge path, say) is served here. A route that names no listener does not claim it.
   */
  private claimedByRoute(req: http.IncomingMessage): boolean {
    const { path, query } = splitTarget(req.url ?? '/');
    const normalized = normalizePath(path, this.limits.rejectEncodedSlash);
    // A target that does not normalise is redirected as it came: the https listener refuses it with its reason.
    if ('error' in normalized) return false;
    return this.lookup(req, normalized.path, query)?.route?.listener === this.config.name;
  }

  /** The route for a request on this listener, by its normalised path. */
  private lookup(req: http.IncomingMessage, path: string, query: string): RouteDecision | undefined {
    return this.options.routes.route(new IncomingRouteRequest(req.headers.host, path, query, req.method ?? 'GET', req.headers, this.config.name));
  }

  /** redirectToHttps: true when the request was answered with a redirect. */
  private redirect(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const target = checkTarget(req);
    const port = this.options.httpsPort?.() ?? null;
    if (target !== null || port === null) return false;
    const log = this.accessLine(req, 'REDIRECT_TO_HTTPS');
    if (!redirectToHttps(req, res, port, this.draining)) return false;
    if (log !== null) res.once('close', () => log(res));
    return true;
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
    this.trackSocket(socket);
    if (isClosing(socket)) {
      socket.destroy();
      return;
    }
    this.options.metrics.request('http1');
    this.logSocketRequest(req, socket);
    socket.on('error', () => socket.destroy());
    const requestId = assignRequestId(req, this.options.forwarder.trustsPeerOf(req.socket));
    this.setClientCertHeader(req);
    const admission = this.admit(req);
    if ('rejection' in admission) {
      writeRawError(socket, admission.rejection, requestId);
      return;
    }
    const { decision } = admission;
    const limited = this.rateLimit(req, decision);
    if (limited !== null) {
      writeRawError(socket, limited, requestId);
      return;
    }
    if (decision.entry === null) {
      const answer = this.routeAnswer(req, decision.route);
      noteRawAnswer(socket, answer.answer.status, answer.code);
      writeRawRouteAnswer(socket, this.withResponseHeaders(req, decision.route, answer.answer));
      return;
    }
    this.options.forwarder.upgrade(req, socket, head, decision.entry, decision.route);
  }

  /** A route's own answer as the client gets it: with the request id and the route's response header rules. */
  private withResponseHeaders(req: http.IncomingMessage, route: CompiledRoute | null, answer: RouteAnswer): RouteAnswer {
    const headers = [...answer.headers, 'x-request-id', requestIdOf(req) ?? ''];
    const rules = route?.responseHeaders ?? null;
    if (rules !== null) applyToResponse(rules, headers, headerVariables(req));
    return { ...answer, headers };
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
   * An edit of the file's limits or trusted proxies, applied without a restart: the timeouts at Node's next check,
   * the header size and connection cap for new connections, the body limit and trusted proxies for new requests.
   */
  updateSettings(settings: { limits: LimitsConfig; trustedProxies: readonly string[] }): void {
    const { limits } = settings;
    this.limits = limits;
    this.server.maxConnections = limits.maxConnections;
    // Node reads it for each new connection's parser (not in its typings).
    (this.server as http.Server & { maxHeaderSize?: number }).maxHeaderSize = limits.maxHeaderSize;
    this.server.headersTimeout = limits.headersTimeoutMs;
    this.server.requestTimeout = limits.requestTimeoutMs;
    this.server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    this.http2?.updateLimits({ maxHeaderListSize: limits.maxHeaderSize, idleTimeoutMs: limits.keepAliveTimeoutMs });
    this.options.forwarder.setTrustedProxies(settings.trustedProxies);
  }

  reopenAccessLog(): void {
    this.options.accessLog?.reopen();
  }

  get address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  /** Open client connections (draining ones included). */
  openConnections(): Promise<number> {
    return new Promise((resolve) => this.server.getConnections((error, count) => resolve(error === null ? count : 0)));
  }

  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts what is left; the access log stays open. */
  async close(drainMs: number): Promise<void> {
    this.draining = true;
    this.certificates?.unwatch();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    this.http2?.close();
    const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), drainMs).unref());
    const result = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    if (result === 'timeout') {
      this.options.logger.warn('drain deadline reached; closing remaining connections', { listener: this.name, open: await this.openConnections() });
      this.server.closeAllConnections();
      this.http2?.destroy();
      for (const socket of this.socketsOutsideHttp1) socket.destroy();
      await closed;
    }
    // The last connections' close events (and their access lines) run before whoever owns the log closes it.
    await new Promise((resolve) => setImmediate(resolve));
  }
}
