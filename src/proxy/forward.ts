// Forwards one client request or WebSocket upgrade to a backend with http-proxy: retries, timeouts, streaming, failure mapping.
//
// http-proxy is unmaintained and has traps, each guarded here:
// - an unhandled `error` event kills the process: every call passes a callback, a catch-all listener logs,
//   and the response streams it never guards (proxyRes, the upgrade socket) get their own error handlers;
// - its `deleteLength` pass rewrites DELETE/OPTIONS framing (a CL.TE smuggling path) and its `XHeaders` and
//   `timeout` passes duplicate what we do better: all three are removed, so framing reaches the backend as parsed;
// - it has no keep-alive of its own: every backend gets a keep-alive agent (upstream.ts).

import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { PoolConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { statusClass, type BackendMetrics, type PoolMetrics } from '../metrics/types.js';
import { classifyUpstreamError, errorBody, UpstreamTimeout, type FailureKind, type ProxyPhase } from './error-status.js';
import { prepareRequestHeaders, responseHeaderList, type TrustedProxies } from './headers.js';
import type { Upstream } from './upstream.js';
import type { ErrorCode } from '../errors.js';

export type RequestOutcome = 'success' | 'http-5xx' | 'gateway-failure' | 'aborted';

/** What the forwarder needs of a backend; the pool runtime's backends provide it. */
export interface ForwardBackend {
  readonly id: string;
  /** Requests in flight to this backend, across config versions. */
  readonly inflight: number;
  readonly metrics: BackendMetrics;
  requestStarted(): void;
  requestFinished(outcome: RequestOutcome): void;
}

/** What the forwarder needs of a pool; the pool runtime provides it. */
export interface ForwardPool {
  readonly name: string;
  readonly config: PoolConfig;
  pick(excluded?: ReadonlySet<string>): ForwardBackend | undefined;
  tryStartRetry(): boolean;
  finishRetry(): void;
  retryAfterSeconds(): number;
}

/** One pool as the data plane serves it: its runtime, its upstreams by backend id, its metric children. */
export interface PoolEntry {
  readonly pool: ForwardPool;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly metrics: PoolMetrics;
}

export interface ForwarderOptions {
  readonly logger: Logger;
  readonly trustedProxies: TrustedProxies;
  readonly accessLog: boolean;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Pipes the request body into the upstream request only once its connection is up, so a refused connection consumes nothing and the request can be retried. */
interface BodySource {
  pipe(destination: ClientRequest): ClientRequest;
}

/** A request waiting for a backend under its circuit-breaker cap to free a slot. */
interface Waiter {
  readonly exchange: Exchange;
  readonly lastFailure: FailureKind | null;
  readonly timer: NodeJS.Timeout;
}

/** State of one client request across its attempts. */
interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly entry: PoolEntry;
  readonly startedAt: number;
  readonly hasBody: boolean;
  readonly maxBodySize: number;
  excluded: Set<string> | null;
  retries: number;
  bodyConsumed: boolean;
  clientGone: boolean;
  current: Attempt | null;
  lastBackend: string;
  finalCode: ErrorCode | null;
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

export function sendError(res: ServerResponse, status: number, code: ErrorCode, message: string, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(code, message);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}

/** An error answer within an exchange; a draining listener's answers close the connection. */
function replyError(exchange: Exchange, status: number, code: ErrorCode, message: string, extraHeaders?: Record<string, string>): void {
  sendError(exchange.res, status, code, message, exchange.connection === 'close' ? { ...extraHeaders, connection: 'close' } : extraHeaders);
}

export class Forwarder {
  private readonly proxy: httpProxy;
  private readonly logger: Logger;
  private readonly trustedProxies: TrustedProxies;
  private readonly accessLog: boolean;
  private readonly waiting = new Map<ForwardPool, Waiter[]>();

  constructor(options: ForwarderOptions) {
    this.logger = options.logger;
    this.trustedProxies = options.trustedProxies;
    this.accessLog = options.accessLog;
    // selfHandleResponse: the response is written here (one writeHead from the raw header list, then the body),
    // instead of by http-proxy's per-header setHeader passes and a pipe.
    // toProxy + ignorePath: its url.parse and path join are skipped; the path is then set verbatim (see attempt()).
    this.proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, prependPath: false, selfHandleResponse: true, toProxy: true, ignorePath: true });
    const internals = this.proxy as unknown as { webPasses: Array<{ name: string }>; wsPasses: Array<{ name: string }> };
    const removed = new Set(['deleteLength', 'timeout', 'XHeaders']);
    internals.webPasses = internals.webPasses.filter((pass) => !removed.has(pass.name));
    internals.wsPasses = internals.wsPasses.filter((pass) => pass.name !== 'XHeaders');
    if (internals.webPasses.length !== 1 || internals.wsPasses.length !== 2) {
      // A different http-proxy version would silently bring the smuggling pass back: refuse to run.
      throw new Error('unexpected http-proxy internals: pin http-proxy to 1.18.x');
    }
    // Every call passes its own callback; this only catches what escapes one, so it can never crash us.
    this.proxy.on('error', (error: Error) => {
      this.logger.warn('http-proxy error outside a request', { err: error });
    });
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
      startedAt: performance.now(),
      hasBody: hasRequestBody(req),
      maxBodySize,
      excluded: null,
      retries: 0,
      bodyConsumed: false,
      clientGone: false,
      current: null,
      lastBackend: '',
      finalCode: null,
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
    const picked = this.pickUnderCap(entry, exchange.excluded);
    if (picked === 'all-full') {
      this.waitForSlot(exchange, lastFailure);
      return;
    }
    const backend = picked;
    if (backend === undefined) {
      if (lastFailure !== null) {
        entry.pool.finishRetry();
        exchange.finalCode = lastFailure.code;
        replyError(exchange, lastFailure.status, lastFailure.code, lastFailure.message);
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
    exchange.lastBackend = backend.id;
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

  /**
   * Envoy-style circuit breaking: a backend at `maxRequestsPerBackend` is skipped; when every available
   * backend is at its cap the request waits in a bounded queue, or gets 503 at once when that is full too.
   */
  private pickUnderCap(entry: PoolEntry, excluded: Set<string> | null): ForwardBackend | undefined | 'all-full' {
    const cap = entry.pool.config.circuitBreaker.maxRequestsPerBackend;
    const first = entry.pool.pick(excluded ?? undefined);
    if (cap === 0 || first === undefined || first.inflight < cap) return first;
    const skipped = new Set(excluded);
    let candidate: ForwardBackend | undefined = first;
    while (candidate !== undefined && candidate.inflight >= cap) {
      skipped.add(candidate.id);
      candidate = entry.pool.pick(skipped);
    }
    return candidate ?? 'all-full';
  }

  private waitForSlot(exchange: Exchange, lastFailure: FailureKind | null): void {
    const pool = exchange.entry.pool;
    const breaker = pool.config.circuitBreaker;
    const queue = this.waiting.get(pool) ?? [];
    const capacity = breaker.maxPendingPerBackend * pool.config.backends.length;
    if (queue.length >= capacity) {
      if (lastFailure !== null) pool.finishRetry();
      exchange.finalCode = 'CIRCUIT_OPEN';
      exchange.entry.metrics.requestWithoutBackend('5xx');
      replyError(exchange, 503, 'CIRCUIT_OPEN', `every backend of pool "${pool.name}" is at its concurrency limit and the wait queue is full`, { 'retry-after': '1' });
      return;
    }
    const waitMs = pool.config.timeouts.connectMs;
    const waiter: Waiter = {
      exchange,
      lastFailure,
      timer: setTimeout(() => {
        this.removeWaiter(pool, waiter);
        if (lastFailure !== null) pool.finishRetry();
        if (exchange.clientGone) return;
        exchange.finalCode = 'CIRCUIT_OPEN';
        exchange.entry.metrics.requestWithoutBackend('5xx');
        replyError(exchange, 503, 'CIRCUIT_OPEN', `no backend of pool "${pool.name}" freed a slot within ${waitMs} ms`, { 'retry-after': '1' });
      }, waitMs),
    };
    queue.push(waiter);
    this.waiting.set(pool, queue);
  }

  private removeWaiter(pool: ForwardPool, waiter: Waiter): void {
    const queue = this.waiting.get(pool);
    if (queue === undefined) return;
    const index = queue.indexOf(waiter);
    if (index !== -1) queue.splice(index, 1);
    if (queue.length === 0) this.waiting.delete(pool);
  }

  /** A slot freed in this pool: the oldest waiter tries again. */
  private wakeWaiter(pool: ForwardPool): void {
    const queue = this.waiting.get(pool);
    const waiter = queue?.shift();
    if (waiter === undefined) return;
    if (queue!.length === 0) this.waiting.delete(pool);
    clearTimeout(waiter.timer);
    this.attempt(waiter.exchange, waiter.lastFailure);
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
      exchange.finalCode = 'REQUEST_TOO_LARGE';
      replyError(exchange, 413, 'REQUEST_TOO_LARGE', `request body exceeds the limit of ${exchange.maxBodySize} bytes`, { connection: 'close' });
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
    const pool = attempt.exchange.entry.pool;
    if (pool.config.circuitBreaker.maxRequestsPerBackend > 0 && this.waiting.has(pool)) this.wakeWaiter(pool);
  }

  private complete(attempt: Attempt): void {
    if (attempt.done) return;
    const exchange = attempt.exchange;
    attempt.done = true;
    this.clearTimer(attempt);
    attempt.backend.requestFinished(attempt.status >= 500 ? 'http-5xx' : 'success');
    attempt.backend.metrics.requestFinished(statusClass(attempt.status), (performance.now() - attempt.startedAt) / 1000);
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
    exchange.finalCode = kind.code;
    replyError(exchange, kind.status, kind.code, kind.message);
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
    exchange.finalCode = 'NO_AVAILABLE_BACKEND';
    exchange.entry.metrics.requestWithoutBackend('5xx');
    replyError(exchange, 503, 'NO_AVAILABLE_BACKEND', `no available backend in pool "${pool.name}"`, {
      'retry-after': String(pool.retryAfterSeconds()),
    });
  }

  private onClientClose(exchange: Exchange): void {
    if (!exchange.res.writableFinished) {
      exchange.clientGone = true;
      const attempt = exchange.current;
      if (attempt !== null && !attempt.done) {
        this.abandonAttempt(attempt, 'aborted');
        attempt.backend.metrics.requestFinished(statusClass(attempt.status || 499), (performance.now() - attempt.startedAt) / 1000);
      }
    }
    if (this.accessLog) this.logAccess(exchange);
  }

  private logAccess(exchange: Exchange): void {
    const { req, res } = exchange;
    this.logger.info('access', {
      method: req.method,
      host: req.headers.host,
      path: req.url,
      status: exchange.clientGone ? 499 : res.statusCode,
      pool: exchange.entry.pool.name,
      backend: exchange.lastBackend,
      retries: exchange.retries,
      durationMs: Math.round((performance.now() - exchange.startedAt) * 1000) / 1000,
      ...(exchange.finalCode === null ? {} : { code: exchange.finalCode }),
      client: req.socket.remoteAddress,
    });
  }

  /** Proxies a WebSocket upgrade; a connect failure is retried on another backend like any bodiless request. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry): void {
    // Until http-proxy adopts the socket it has no error listener: a client reset here must not crash us.
    socket.on('error', () => socket.destroy());
    prepareRequestHeaders(req.headers, clientFacts(req, this.trustedProxies), true);
    this.upgradeAttempt(req, socket, head, entry, new Set(), 0);
  }

  private upgradeAttempt(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry, excluded: Set<string>, retries: number): void {
    if (socket.destroyed) return;
    const backend = entry.pool.pick(excluded);
    const upstream = backend === undefined ? undefined : entry.upstreams.get(backend.id);
    if (backend === undefined || upstream === undefined) {
      writeRawError(socket, 503, 'NO_AVAILABLE_BACKEND', `no available backend in pool "${entry.pool.name}"`);
      return;
    }
    backend.requestStarted();
    let settled = false;
    let upgraded = false;
    const timeouts = entry.pool.config.timeouts;
    const finish = (outcome: RequestOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      backend.requestFinished(outcome);
    };
    let proxyReq: ClientRequest | null = null;
    const timer = setTimeout(() => {
      proxyReq?.destroy(new UpstreamTimeout('response', timeouts.connectMs + timeouts.responseMs));
    }, timeouts.connectMs + timeouts.responseMs);
    const onProxyReq = (created: ClientRequest, incoming: IncomingMessage): void => {
      if (incoming !== req) return;
      this.proxy.off('proxyReqWs', onProxyReq);
      proxyReq = created;
      created.once('response', (response: IncomingMessage) => {
        // The backend refused the upgrade; http-proxy relays its answer but never guards the stream.
        response.on('error', () => socket.destroy());
        finish(response.statusCode !== undefined && response.statusCode >= 500 ? 'http-5xx' : 'success');
      });
      created.once('upgrade', (_res: IncomingMessage, upstreamSocket: Socket) => {
        upgraded = true;
        finish('success');
        upstreamSocket.setTimeout(timeouts.idleMs, () => upstreamSocket.destroy());
        tieTunnel(socket, upstreamSocket);
      });
    };
    this.proxy.on('proxyReqWs', onProxyReq);
    this.proxy.ws(req, socket, head, { target: upstream.target, agent: false } as httpProxy.ServerOptions, (error: Error) => {
      this.proxy.off('proxyReqWs', onProxyReq);
      if (upgraded) {
        socket.destroy();
        return;
      }
      const kind = classifyUpstreamError(error, true);
      finish('gateway-failure');
      backend.metrics.upstreamError(kind.reason);
      if (kind.reason === 'connect_refused' && retries < entry.pool.config.retries && !socket.destroyed) {
        excluded.add(backend.id);
        entry.metrics.retry();
        // head was already pushed back into the client socket by the first attempt.
        this.upgradeAttempt(req, socket, Buffer.alloc(0), entry, excluded, retries + 1);
        return;
      }
      writeRawError(socket, kind.status, kind.code, kind.message);
    });
  }
}

/** How long a tunnel may stay half-closed after one side finished (HAProxy's `timeout client-fin`). */
const TUNNEL_FIN_TIMEOUT_MS = 1_000;

/**
 * Both sockets of a tunnel live and die together. Node's HTTP sockets allow half-open connections, so without
 * this a side that finishes would leave the other open until its idle timeout.
 */
function tieTunnel(client: Duplex, upstream: Socket): void {
  let finTimer: NodeJS.Timeout | null = null;
  const destroyBoth = (): void => {
    if (finTimer !== null) clearTimeout(finTimer);
    client.destroy();
    upstream.destroy();
  };
  const onEnd = (): void => {
    finTimer ??= setTimeout(destroyBoth, TUNNEL_FIN_TIMEOUT_MS).unref();
  };
  client.once('end', onEnd);
  upstream.once('end', onEnd);
  client.once('close', destroyBoth);
  upstream.once('close', destroyBoth);
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 413: 'Payload Too Large', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/** Answers on a raw socket (upgrade requests have no ServerResponse). */
export function writeRawError(socket: Duplex, status: number, code: ErrorCode, message: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(code, message);
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
