// The attempt/retry loop: forwards one client request to a backend, retrying failures the backend never saw on another one.
//
// The exchange itself still goes through http-proxy's web() with its traps guarded (see websocket-tunnel.ts:
// createGuardedProxy); every backend gets a keep-alive agent (upstream.ts).

import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type httpProxy from 'http-proxy';
import type { Logger } from '../log.js';
import { statusClass } from '../metrics/types.js';
import { CircuitBreaker, type CancelWait } from './circuit-breaker.js';
import {
  bodyOverLimit,
  circuitQueueFull,
  circuitWaitExpired,
  classifyUpstreamError,
  noAvailableBackend,
  UpstreamTimeout,
  writeErrorResponse,
  type ErrorReply,
  type FailureKind,
  type ProxyPhase,
} from './error-status.js';
import type { ForwardBackend, PoolEntry, RequestOutcome } from './forward-types.js';
import { prepareRequestHeaders, responseHeaderList, type TrustedProxies } from './headers.js';
import type { Upstream } from './upstream.js';
import { createGuardedProxy, WebSocketTunnel } from './websocket-tunnel.js';
import { noteUpstream } from './access-log.js';
import type { ErrorCode } from '../errors.js';

export interface ForwarderOptions {
  readonly logger: Logger;
  readonly trustedProxies: TrustedProxies;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Pipes the request body into the upstream request only once its connection is up, so a refused connection consumes nothing and the request can be retried. */
interface BodySource {
  pipe(destination: ClientRequest): ClientRequest;
}

/** State of one client request across its attempts. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly entry: PoolEntry;
  readonly hasBody: boolean;
  readonly maxBodySize: number;
  excluded: Set<string> | null;
  retries: number;
  bodyConsumed: boolean;
  clientGone: boolean;
  current: Attempt | null;
  finalCode: ErrorCode | null;
  /** Set while the request waits in the circuit breaker's queue. */
  cancelWait: CancelWait | null;
  /** Whether the client connection closes after this response: the client asked (read before hop-by-hop headers are stripped), or the listener is draining. */
  readonly connection: 'close' | 'keep-alive';
}

interface Attempt {
  readonly exchange: Exchange;
  readonly backend: ForwardBackend;
  readonly upstream: Upstream;
  readonly startedAt: number;
  readonly isRetry: boolean;
  proxyReq: ClientRequest | null;
  timer: NodeJS.Timeout | null;
  phase: ProxyPhase;
  requestSent: boolean;
  status: number;
  done: boolean;
}

function hasRequestBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function wantsClose(req: IncomingMessage): boolean {
  const connection = req.headers.connection?.toLowerCase() ?? '';
  if (req.httpVersion === '1.0') return !connection.includes('keep-alive');
  return connection.split(',').some((token) => token.trim() === 'close');
}

function clientFacts(req: IncomingMessage, trusted: TrustedProxies) {
  const socket = req.socket;
  const remoteAddress = socket.remoteAddress ?? '';
  return { remoteAddress, encrypted: (socket as { encrypted?: boolean }).encrypted === true, trusted: trusted.has(remoteAddress) };
}

/** An error answer within an exchange; a draining listener's answers close the connection. */
function replyError(exchange: Exchange, reply: ErrorReply, close = false): void {
  exchange.finalCode = reply.code;
  writeErrorResponse(exchange.res, reply, close || exchange.connection === 'close');
}

export class Forwarder {
  private readonly proxy: httpProxy;
  private readonly tunnel: WebSocketTunnel;
  private readonly breaker = new CircuitBreaker();
  private readonly logger: Logger;
  private readonly trustedProxies: TrustedProxies;

  constructor(options: ForwarderOptions) {
    this.logger = options.logger;
    this.trustedProxies = options.trustedProxies;
    // selfHandleResponse: the response is written here (one writeHead from the raw header list, then the body),
    // instead of by http-proxy's per-header setHeader passes and a pipe.
    // toProxy + ignorePath: its url.parse and path join are skipped; the path is then set verbatim (see attempt()).
    this.proxy = createGuardedProxy(options.logger, { selfHandleResponse: true, toProxy: true, ignorePath: true });
    this.tunnel = new WebSocketTunnel(options.logger);
  }

  /** `draining`: the listener is shutting down, so the client connection closes after this response. */
  forward(req: IncomingMessage, res: ServerResponse, entry: PoolEntry, maxBodySize: number, draining: boolean): void {
    const connection = draining || wantsClose(req) ? 'close' : 'keep-alive';
    prepareRequestHeaders(req.headers, clientFacts(req, this.trustedProxies), false);
    // Node already answered `100 Continue` to the client; the backend must not wait for a second one.
    if (req.headers['expect'] !== undefined) delete req.headers['expect'];
    const exchange: Exchange = {
      req,
      res,
      entry,
      hasBody: hasRequestBody(req),
      maxBodySize,
      excluded: null,
      retries: 0,
      bodyConsumed: false,
      clientGone: false,
      current: null,
      finalCode: null,
      cancelWait: null,
      connection,
    };
    // 'close' fires once per response: `on` spares the wrapper `once` builds.
    res.on('close', () => this.onClientClose(exchange));
    this.attempt(exchange, null);
  }

  /** `lastFailure` is the failure being retried: when no backend is left to retry on, the client gets it. */
  private attempt(exchange: Exchange, lastFailure: FailureKind | null): void {
    if (exchange.clientGone) {
      if (lastFailure !== null) exchange.entry.pool.finishRetry();
      return;
    }
    const { entry } = exchange;
    const picked = this.breaker.pick(entry.pool, exchange.excluded);
    if (picked === 'all-full') {
      this.waitForSlot(exchange, lastFailure);
      return;
    }
    const backend = picked;
    if (backend === undefined) {
      if (lastFailure !== null) {
        entry.pool.finishRetry();
        replyError(exchange, lastFailure);
      } else {
        this.answerWithoutBackend(exchange);
      }
      return;
    }
    const upstream = entry.upstreams.get(backend.id);
    if (upstream === undefined) {
      // The pool and its upstream map are built together; a miss means a bug, not bad input.
      this.logger.error('no upstream for backend', { pool: entry.pool.name, backend: backend.id });
      if (lastFailure !== null) entry.pool.finishRetry();
      this.answerWithoutBackend(exchange);
      return;
    }
    const attempt: Attempt = {
      exchange,
      backend,
      upstream,
      startedAt: performance.now(),
      isRetry: exchange.retries > 0,
      proxyReq: null,
      timer: null,
      phase: 'connect',
      requestSent: false,
      status: 0,
      done: false,
    };
    exchange.current = attempt;
    backend.requestStarted();
    backend.metrics.requestStarted();

    const body: BodySource = {
      pipe: (proxyReq: ClientRequest) => {
        // http-proxy calls this synchronously right after creating the upstream request: the one hook
        // that hands us the ClientRequest before anything is sent.
        attempt.proxyReq = proxyReq;
        // http-proxy's path join collapses '//' and rewrites the query; the backend gets the target exactly as
        // the client sent it (checkTarget already reduced it to origin-form). Node reads this when it writes the head.
        proxyReq.path = exchange.req.url ?? '/';
        this.watchUpstream(attempt, proxyReq);
        // Without a body the request is complete now; Node sends it as soon as the socket is ready.
        if (!exchange.hasBody) proxyReq.end();
        return proxyReq;
      },
    };
    attempt.timer = setTimeout(() => this.fail(attempt, new UpstreamTimeout('connect', this.timeouts(exchange).connectMs)), this.timeouts(exchange).connectMs);
    this.proxy.web(exchange.req, exchange.res, { target: upstream.target, agent: upstream.agent, buffer: body } as unknown as httpProxy.ServerOptions, (error: Error) =>
      this.fail(attempt, error),
    );
  }

  private waitForSlot(exchange: Exchange, lastFailure: FailureKind | null): void {
    const pool = exchange.entry.pool;
    // A retry waiting here still holds its slot in the retry budget until it is sent or given up.
    const releaseRetry = (): void => {
      if (lastFailure !== null) pool.finishRetry();
    };
    const answerCircuitOpen = (reply: ErrorReply): void => {
      releaseRetry();
      exchange.entry.metrics.requestWithoutBackend('5xx');
      replyError(exchange, reply);
    };
    const cancel = this.breaker.wait(pool, {
      onSlotFreed: () => {
        exchange.cancelWait = null;
        this.attempt(exchange, lastFailure);
      },
      onWaitExpired: (waitMs) => {
        exchange.cancelWait = null;
        answerCircuitOpen(circuitWaitExpired(pool.name, waitMs));
      },
    });
    if (cancel === null) {
      answerCircuitOpen(circuitQueueFull(pool.name));
      return;
    }
    exchange.cancelWait = () => {
      cancel();
      releaseRetry();
    };
  }

  private timeouts(exchange: Exchange) {
    return exchange.entry.pool.config.timeouts;
  }

  private watchUpstream(attempt: Attempt, proxyReq: ClientRequest): void {
    const exchange = attempt.exchange;
    // A ClientRequest emits 'socket' and 'response' at most once each.
    proxyReq.on('socket', (socket: Socket) => {
      if (attempt.done) return;
      if (socket.connecting) socket.once('connect', () => this.onConnected(attempt, proxyReq));
      else this.onConnected(attempt, proxyReq);
    });
    proxyReq.on('response', (proxyRes: IncomingMessage) => {
      if (attempt.done) return;
      this.clearTimer(attempt);
      attempt.status = proxyRes.statusCode ?? 502;
      const idleMs = this.timeouts(exchange).idleMs;
      attempt.phase = 'idle';
      // The idle timer is refreshed by every body chunk (relayResponse): cheaper than a socket timeout, which
      // Node re-creates per request and the agent again when the socket returns to its pool.
      attempt.timer = setTimeout(() => this.fail(attempt, new UpstreamTimeout('idle', idleMs)), idleMs);
      proxyRes.on('error', (error: Error) => this.fail(attempt, error));
      this.relayResponse(attempt, proxyRes);
    });
  }

  /** Writes the backend's response to the client: headers in one go, then the body with backpressure. */
  private relayResponse(attempt: Attempt, proxyRes: IncomingMessage): void {
    const res = attempt.exchange.res;
    try {
      res.writeHead(attempt.status, proxyRes.statusMessage, responseHeaderList(proxyRes.rawHeaders, attempt.exchange.connection === 'close'));
    } catch (error) {
      // Node's parser and writer accept the same bytes today; a field one day written back refused must be a
      // 502 for this request, not an exception thrown out of an event handler.
      this.fail(attempt, error);
      return;
    }
    proxyRes.on('data', (chunk: Buffer) => {
      attempt.timer?.refresh();
      if (res.write(chunk)) return;
      proxyRes.pause();
      res.once('drain', () => proxyRes.resume());
    });
    proxyRes.on('end', () => {
      res.end();
      this.complete(attempt);
    });
  }

  private onConnected(attempt: Attempt, proxyReq: ClientRequest): void {
    if (attempt.done) return;
    const exchange = attempt.exchange;
    this.clearTimer(attempt);
    const responseMs = this.timeouts(exchange).responseMs;
    attempt.phase = 'response';
    attempt.timer = setTimeout(() => this.fail(attempt, new UpstreamTimeout('response', responseMs)), responseMs);
    attempt.requestSent = true;
    if (!exchange.hasBody) return;
    exchange.bodyConsumed = true;
    if (exchange.maxBodySize > 0 && exchange.req.headers['content-length'] === undefined) this.limitChunkedBody(exchange, attempt);
    exchange.req.pipe(proxyReq);
  }

  /** Content-Length bodies are checked before forwarding; chunked ones are counted as they stream. */
  private limitChunkedBody(exchange: Exchange, attempt: Attempt): void {
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received <= exchange.maxBodySize) return;
      exchange.req.off('data', onData);
      this.abandonAttempt(attempt, 'aborted');
      replyError(exchange, bodyOverLimit(exchange.maxBodySize), true);
      exchange.req.unpipe();
      exchange.req.resume();
    };
    exchange.req.on('data', onData);
  }

  private clearTimer(attempt: Attempt): void {
    if (attempt.timer !== null) {
      clearTimeout(attempt.timer);
      attempt.timer = null;
    }
  }

  /** Ends an attempt's bookkeeping exactly once. */
  private abandonAttempt(attempt: Attempt, outcome: RequestOutcome): void {
    if (attempt.done) return;
    attempt.done = true;
    this.clearTimer(attempt);
    attempt.proxyReq?.destroy();
    attempt.backend.requestFinished(outcome);
    if (attempt.isRetry) attempt.exchange.entry.pool.finishRetry();
    this.slotFreed(attempt);
  }

  private slotFreed(attempt: Attempt): void {
    this.breaker.slotFreed(attempt.exchange.entry.pool);
  }

  private complete(attempt: Attempt): void {
    if (attempt.done) return;
    const exchange = attempt.exchange;
    attempt.done = true;
    this.clearTimer(attempt);
    const elapsedMs = performance.now() - attempt.startedAt;
    attempt.backend.requestFinished(attempt.status >= 500 ? 'http-5xx' : 'success', elapsedMs);
    attempt.backend.metrics.requestFinished(statusClass(attempt.status), elapsedMs / 1000);
    if (attempt.isRetry) exchange.entry.pool.finishRetry();
    this.slotFreed(attempt);
  }

  private fail(attempt: Attempt, error: unknown): void {
    if (attempt.done) return;
    const exchange = attempt.exchange;
    if (exchange.clientGone) {
      this.abandonAttempt(attempt, 'aborted');
      return;
    }
    const kind = classifyUpstreamError(error, attempt.requestSent);
    this.abandonAttempt(attempt, 'gateway-failure');
    const backendMetrics = attempt.backend.metrics;
    backendMetrics.upstreamError(kind.reason);
    backendMetrics.requestFinished(statusClass(kind.status), (performance.now() - attempt.startedAt) / 1000);
    if (exchange.res.headersSent) {
      // Part of the response is out: the only honest signal left is to cut the client connection.
      this.logger.warn('backend failed mid-response', { pool: exchange.entry.pool.name, backend: attempt.backend.id, err: error });
      exchange.res.destroy();
      return;
    }
    if (this.mayRetry(exchange, kind)) {
      exchange.retries += 1;
      (exchange.excluded ??= new Set()).add(attempt.backend.id);
      exchange.entry.metrics.retry();
      if (this.logger.enabled('debug')) {
        this.logger.debug('retrying on another backend', { pool: exchange.entry.pool.name, backend: attempt.backend.id, reason: kind.reason });
      }
      this.attempt(exchange, kind);
      return;
    }
    replyError(exchange, kind);
  }

  private mayRetry(exchange: Exchange, kind: FailureKind): boolean {
    if (exchange.retries >= exchange.entry.pool.config.retries) return false;
    const method = exchange.req.method ?? 'GET';
    const safe = kind.beforeRequestSent ? !exchange.bodyConsumed : IDEMPOTENT.has(method) && !exchange.hasBody;
    if (!safe) return false;
    if (exchange.entry.pool.tryStartRetry()) return true;
    exchange.entry.metrics.retryRefused();
    if (this.logger.enabled('debug')) this.logger.debug('retry refused by the retry budget', { pool: exchange.entry.pool.name });
    return false;
  }

  private answerWithoutBackend(exchange: Exchange): void {
    const pool = exchange.entry.pool;
    exchange.entry.metrics.requestWithoutBackend('5xx');
    replyError(exchange, noAvailableBackend(pool.name, pool.retryAfterSeconds()));
  }

  private onClientClose(exchange: Exchange): void {
    if (!exchange.res.writableFinished) {
      exchange.clientGone = true;
      exchange.cancelWait?.();
      exchange.cancelWait = null;
      const attempt = exchange.current;
      if (attempt !== null && !attempt.done) {
        this.abandonAttempt(attempt, 'aborted');
        attempt.backend.metrics.requestFinished(statusClass(attempt.status || 499), (performance.now() - attempt.startedAt) / 1000);
      }
    }
    const attempt = exchange.current;
    noteUpstream(exchange.req, {
      pool: exchange.entry.pool.name,
      backend: attempt === null ? null : attempt.backend.id,
      attempts: attempt === null ? 0 : exchange.retries + 1,
      upstreamMs: attempt === null ? null : performance.now() - attempt.startedAt,
      code: exchange.finalCode,
    });
  }

  /** Proxies a WebSocket (or other Upgrade) request through the tunnel, with the same header rewriting as any request. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry): void {
    prepareRequestHeaders(req.headers, clientFacts(req, this.trustedProxies), true);
    this.tunnel.open(req, socket, head, entry);
  }
}
