// The attempt/retry loop: forwards one client request to a backend, retrying failures the backend never saw on another one.
//
// Ordinary requests go to backends through undici (upstream-exchange.ts); WebSocket and other Upgrade requests
// through http-proxy (websocket-tunnel.ts). The docs' design section says why, with the numbers.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
// The module's binding: the global `performance` is a getter, a call on every read (twice per request here).
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { statusClass } from '../metrics/types.js';
import { CircuitBreaker, type CancelWait, type SlotWaiter } from './circuit-breaker.js';
import {
  bodyOverLimit,
  ClientStalled,
  circuitQueueFull,
  circuitWaitExpired,
  classifyUpstreamError,
  neverReachedBackend,
  noAvailableBackend,
  RetriedAnswer,
  routeTimeout,
  noBackendReachable,
  writeErrorResponse,
  type ErrorReply,
  type FailureKind,
} from './error-status.js';
import type { ForwardBackend, PoolEntry, RequestOutcome } from './forward-types.js';
import { clientAddress, prepareRequestHeaders, TrustedProxies } from './headers.js';
import { pickRequestFor } from './request-key.js';
import type { PickRequest } from '../balancer/affinity.js';
import { UpstreamAttempt, type AttemptOwner } from './upstream-exchange.js';
import { WebSocketTunnel } from './websocket-tunnel.js';
import { keepClientTarget, type UpstreamFacts } from './access-log.js';
import { splitTarget } from './normalize-path.js';
import { applyToRequest, applyToResponse, headerVariables, removeField, type CompiledHeaderRules, type HeaderVariables } from './header-rules.js';
import { requestIdOf } from './request-id.js';
import { skipDumpOfBodiless } from './request-dump.js';
import type { CompiledRoute, RoutePolicy } from './router.js';
import { http2HasBody, isHttp2 } from './http2-requests.js';
import { GrpcStatus, endGrpcWithStatus, grpcTimeoutMs, isGrpcRequest, writeGrpcError } from './grpc.js';

export interface ForwarderOptions {
  readonly logger: Logger;
  readonly trustedProxies: TrustedProxies;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * The route's rewrite, after X-Forwarded-Host took the client's Host: the backend's path (query kept) and Host.
 * The access log keeps the client's target.
 */
function rewriteRequest(req: IncomingMessage, route: CompiledRoute, vars: HeaderVariables | null): void {
  const rewrite = route.rewrite;
  if (rewrite !== null) {
    if (rewrite.path !== null) {
      keepClientTarget(req);
      const { path, query } = splitTarget(req.url ?? '/');
      req.url = `${rewrite.path(path)}${query}`;
    }
    if (rewrite.host !== null) req.headers.host = rewrite.host;
  }
  if (route.requestHeaders !== null && vars !== null) applyToRequest(route.requestHeaders, req.headers, vars);
}


/** What every exchange of one Forwarder shares. */
interface Shared {
  readonly logger: Logger;
  readonly breaker: CircuitBreaker;
}

// `headers` is req.headers read once by the caller: Node's getter runs on every read.
function hasRequestBody(req: IncomingMessage, headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  if (length !== undefined) return length !== '0';
  if (isHttp2(req)) return http2HasBody(req);
  return headers['transfer-encoding'] !== undefined;
}

function wantsClose(req: IncomingMessage, headers: IncomingHttpHeaders): boolean {
  const raw = headers.connection;
  // What clients send in practice (keep the connection, HTTP/1.0 or 1.1), before a lower-cased copy is made.
  if (raw === 'keep-alive') return false;
  const connection = raw?.toLowerCase() ?? '';
  if (req.httpVersion === '1.0') return !connection.includes('keep-alive');
  // Most HTTP/1.1 requests send no Connection header or a bare keep-alive: no token list for them.
  if (connection === '' || connection === 'keep-alive') return false;
  return connection.split(',').some((token) => token.trim() === 'close');
}

/**
 * Each HTTP/1 connection's peer address, read once: Node's remoteAddress getter goes through the socket's handle on
 * every read (about 500 instructions a request). HTTP/2 requests' sockets are per-stream proxies: read directly.
 */
const PEER_ADDRESSES = new WeakMap<object, string>();

function peerAddress(req: IncomingMessage): string {
  const socket = req.socket;
  if (isHttp2(req)) return socket.remoteAddress ?? '';
  let address = PEER_ADDRESSES.get(socket);
  if (address === undefined) {
    address = socket.remoteAddress;
    // Undefined once the connection is gone: nothing to remember.
    if (address === undefined) return '';
    PEER_ADDRESSES.set(socket, address);
  }
  return address;
}

function clientFacts(req: IncomingMessage, trusted: TrustedProxies) {
  const socket = req.socket;
  const remoteAddress = peerAddress(req);
  return { remoteAddress, encrypted: (socket as { encrypted?: boolean }).encrypted === true, trusted: trusted.has(remoteAddress) };
}

/** One client request across its attempts: picks, retries, answers, logs. */
class ClientExchange implements AttemptOwner, SlotWaiter, ForwardedRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly hasBody: boolean;
  readonly maxBodySize: number;
  readonly closeAfterResponse: boolean;
  readonly hostFromBackend: boolean;
  /** The `route` label of this request's metrics ('' for the lone pool). */
  private readonly routeLabel: string;
  private readonly responseRules: { readonly rules: CompiledHeaderRules; readonly vars: HeaderVariables } | null;
  private readonly shared: Shared;
  private readonly entry: PoolEntry;
  /** The request's hash key and sticky cookie, when its pool uses them. */
  private readonly affinity: PickRequest | null;
  private excluded: Set<string> | null = null;
  private retries = 0;
  /** Every attempt so far failed before reaching a backend: if none succeeds, the answer is 503, not 502/504. */
  private onlyUnreached = true;
  private bodyConsumed = false;
  private clientGone = false;
  private current: { attempt: UpstreamAttempt; backend: ForwardBackend; isRetry: boolean } | null = null;
  /** The attempt whose response came in whole; its end may still wait to be written to the client (endQueued). */
  private completed: UpstreamAttempt | null = null;
  /** The last backend tried and when its attempt started, for the access log. */
  private lastBackend: string | null = null;
  private lastStartedAt = 0;
  private finalCode: ErrorCode | null = null;
  /** The failure being retried while the request waits in the circuit breaker's queue. */
  private pendingFailure: FailureKind | null = null;
  private cancelWait: CancelWait | null = null;
  /** The route's policy: its retry count and conditions, and the timer of its timeout while it runs. */
  private readonly policy: RoutePolicy | null;
  private deadline: NodeJS.Timeout | null = null;
  private timedOut = false;
  /** A gRPC call: errors are answered with grpc-status, retried only before a backend saw the request. */
  private readonly grpc: boolean;
  /** grpc-timeout: the whole call's deadline, retries included; null: none. */
  private readonly deadlineMs: number | null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  /** Cuts a client that takes none of an ended response's unwritten tail for the idle timeout (see tailUnwritten). */
  private tailTimer: NodeJS.Timeout | null = null;

  constructor(shared: Shared, req: IncomingMessage, res: ServerResponse, entry: PoolEntry, limits: {
      hasBody: boolean;
      maxBodySize: number;
      close: boolean;
      hostFromBackend: boolean;
      routeLabel: string;
      policy: RoutePolicy | null;
      responseRules: { readonly rules: CompiledHeaderRules; readonly vars: HeaderVariables } | null;
      grpc: boolean;
      deadlineMs: number | null;
      affinity: PickRequest | null;
    },
  ) {
    this.shared = shared;
    this.req = req;
    this.res = res;
    this.entry = entry;
    this.hasBody = limits.hasBody;
    this.maxBodySize = limits.maxBodySize;
    this.closeAfterResponse = limits.close;
    this.hostFromBackend = limits.hostFromBackend;
    this.responseRules = limits.responseRules;
    this.routeLabel = limits.routeLabel;
    this.policy = limits.policy;
    this.grpc = limits.grpc;
    this.deadlineMs = limits.deadlineMs;
    this.affinity = limits.affinity;
  }

  start(): void {
    // 'close' fires once per response: `on` spares the wrapper `once` builds.
    this.res.on('close', () => this.onClientClose());
    const timeoutMs = this.policy?.timeoutMs ?? null;
    if (timeoutMs !== null) this.deadline = setTimeout(() => this.onRouteTimeout(timeoutMs), timeoutMs);
    if (this.deadlineMs !== null) this.deadlineTimer = setTimeout(() => this.deadlineExpired(), this.deadlineMs);
    this.attempt(null);
  }

  /** The call's grpc-timeout ran out: whatever is under way stops, and the client hears DEADLINE_EXCEEDED. */
  private deadlineExpired(): void {
    this.deadlineTimer = null;
    if (this.clientGone || this.answerComplete) return;
    this.stopWaiting();
    const current = this.current;
    if (current !== null) {
      this.finishAttempt('aborted');
      current.attempt.abandon();
      current.backend.metrics.requestFinished(statusClass(504), (performance.now() - current.attempt.startedAt) / 1000, this.routeLabel);
    }
    this.finalCode = 'UPSTREAM_RESPONSE_TIMEOUT';
    const message = `deadline exceeded: grpc-timeout of ${this.deadlineMs} ms`;
    if (this.res.headersSent) endGrpcWithStatus(this.res, GrpcStatus.DEADLINE_EXCEEDED, message);
    else writeGrpcError(this.res, GrpcStatus.DEADLINE_EXCEEDED, message);
  }

  /** `lastFailure` is the failure being retried: when no backend is left to retry on, the client gets it. */
  private attempt(lastFailure: FailureKind | null): void {
    const pool = this.entry.pool;
    if (this.clientGone || this.timedOut) {
      if (lastFailure !== null) pool.finishRetry();
      return;
    }
    const picked = this.shared.breaker.pick(pool, this.excluded, this.affinity ?? undefined);
    if (picked === 'all-full') {
      this.waitForSlot(lastFailure);
      return;
    }
    if (picked === undefined) {
      if (lastFailure !== null) {
        pool.finishRetry();
        this.replyFailure(lastFailure);
      } else {
        this.answerWithoutBackend();
      }
      return;
    }
    const upstream = this.entry.upstreams.get(picked.id);
    if (upstream === undefined) {
      // The pool and its upstream map are built together; a miss means a bug, not bad input.
      this.shared.logger.error('no upstream for backend', { pool: pool.name, backend: picked.id });
      if (lastFailure !== null) pool.finishRetry();
      this.answerWithoutBackend();
      return;
    }
    // A retry is counted once it has a backend to go to, so a pool with nowhere else to send it counts none.
    if (lastFailure !== null) this.entry.metrics.retry();
    const attempt = new UpstreamAttempt(this, upstream, pool.config.timeouts);
    this.current = { attempt, backend: picked, isRetry: this.retries > 0 };
    this.lastBackend = picked.id;
    this.lastStartedAt = attempt.startedAt;
    picked.requestStarted();
    picked.metrics.requestStarted();
    attempt.start();
  }

  private waitForSlot(lastFailure: FailureKind | null): void {
    const cancel = this.shared.breaker.wait(this.entry.pool, this);
    if (cancel === null) {
      this.answerCircuitOpen(lastFailure, circuitQueueFull(this.entry.pool.name));
      return;
    }
    this.pendingFailure = lastFailure;
    this.cancelWait = cancel;
  }

  onSlotFreed(): void {
    const lastFailure = this.pendingFailure;
    this.cancelWait = null;
    this.pendingFailure = null;
    this.attempt(lastFailure);
  }

  onWaitExpired(waitMs: number): void {
    const lastFailure = this.pendingFailure;
    this.cancelWait = null;
    this.pendingFailure = null;
    this.answerCircuitOpen(lastFailure, circuitWaitExpired(this.entry.pool.name, waitMs));
  }

  private answerCircuitOpen(lastFailure: FailureKind | null, reply: ErrorReply): void {
    // A retry waiting in the queue held its slot in the retry budget until now.
    if (lastFailure !== null) this.entry.pool.finishRetry();
    this.entry.metrics.requestWithoutBackend('5xx', this.routeLabel);
    this.reply(reply);
  }

  editResponseHeaders(list: string[], parsedFields: number): number {
    let unchanged = parsedFields;
    const id = requestIdOf(this.req);
    if (id !== null) {
      // The client gets its request's id, whatever the backend says its own is.
      const before = list.length;
      removeField(list, 'x-request-id');
      unchanged -= before - list.length;
      const allChecked = unchanged === list.length;
      list.push('x-request-id', id);
      // The id went to the backend in this request's head, where undici refused what Node's writer refuses.
      if (allChecked) unchanged = list.length;
    }
    if (this.responseRules !== null) {
      applyToResponse(this.responseRules.rules, list, this.responseRules.vars);
      // Rules remove and append in any order: every field is checked when written.
      unchanged = 0;
    }
    const sticky = this.entry.pool.sticky;
    if (sticky !== null && this.lastBackend !== null) {
      // The first answer, or one from another backend than the cookie named (it was unavailable): point the client here.
      const cookie = sticky.setCookieFor(this.lastBackend, this.affinity?.sticky);
      if (cookie !== undefined) list.push('set-cookie', cookie);
    }
    return unchanged;
  }

  retryAnswer(attempt: UpstreamAttempt, status: number): boolean {
    const on = this.policy?.retryOn ?? null;
    const current = this.current;
    if (on === null || status < 500 || current?.attempt !== attempt || this.timedOut) return false;
    if (!on.has('5xx') && !(on.has('gateway-error') && (status === 502 || status === 503 || status === 504))) return false;
    const kind = classifyUpstreamError(new RetriedAnswer(status), true);
    if (!this.mayRetry(kind, true)) return false;
    const elapsedMs = performance.now() - attempt.startedAt;
    this.onlyUnreached = false;
    this.finishAttempt('http-5xx', elapsedMs);
    current.backend.metrics.requestFinished(statusClass(status), elapsedMs / 1000, this.routeLabel);
    attempt.abandon();
    this.retries += 1;
    (this.excluded ??= new Set()).add(current.backend.id);
    this.attempt(kind);
    return true;
  }

  /**
   * The route's timeout ran out: whatever attempt runs is stopped; 504 unless the answer has begun (then it is cut).
   * It bounds the wait for the backends, not the client's reading: an answer already whole stays (see tailUnwritten).
   */
  private onRouteTimeout(ms: number): void {
    this.deadline = null;
    if (this.clientGone || this.answerComplete) return;
    this.timedOut = true;
    this.stopWaiting();
    const current = this.current;
    if (current !== null) {
      this.finishAttempt('aborted');
      current.attempt.abandon();
      current.backend.metrics.requestFinished('5xx', (performance.now() - current.attempt.startedAt) / 1000, this.routeLabel);
    }
    const reply = routeTimeout(ms);
    if (this.res.headersSent) {
      this.finalCode = reply.code;
      this.res.destroy();
      return;
    }
    if (current === null) this.entry.metrics.requestWithoutBackend('5xx', this.routeLabel);
    this.reply(reply);
  }

  /**
   * The whole answer is ours to give: ended (what the client's socket has not taken is Node's to write), or complete
   * from the backend and waiting for the end-of-turn flush.
   */
  private get answerComplete(): boolean {
    return this.res.writableEnded || this.completed?.endQueued === true;
  }

  /** See AttemptOwner: the idle timeout bounds how long the client may take none of the tail. */
  tailUnwritten(idleMs: number): void {
    // Cleared by onClientClose: the response's 'close' follows its 'finish', or the connection's end.
    this.tailTimer = setTimeout(() => {
      this.tailTimer = null;
      if (!this.res.writableFinished) this.res.destroy();
    }, idleMs);
  }

  /** Leaves the circuit breaker's queue, giving back the retry slot a queued retry held. */
  private stopWaiting(): void {
    if (this.cancelWait === null) return;
    this.cancelWait();
    this.cancelWait = null;
    if (this.pendingFailure !== null) this.entry.pool.finishRetry();
    this.pendingFailure = null;
  }

  bodyStarted(): void {
    this.bodyConsumed = true;
  }

  bodyOverLimit(attempt: UpstreamAttempt, limit: number): void {
    if (this.current?.attempt !== attempt) return;
    this.finishAttempt('aborted');
    attempt.abandon();
    this.reply(bodyOverLimit(limit), true);
    // Read and drop the rest, so the answer is not lost to a reset while the client is still sending.
    this.req.resume();
  }

  attemptEnded(attempt: UpstreamAttempt, error: Error | undefined): void {
    const current = this.current;
    if (current?.attempt !== attempt) return;
    if (error === undefined) {
      this.completed = attempt;
      const status = attempt.status;
      const elapsedMs = performance.now() - attempt.startedAt;
      this.finishAttempt(status >= 500 ? 'http-5xx' : 'success', elapsedMs);
      current.backend.metrics.requestFinished(statusClass(status), elapsedMs / 1000, this.routeLabel);
      return;
    }
    this.fail(current.backend, attempt, error);
  }

  /**
   * Ends the current attempt's bookkeeping: the backend's in-flight count and outcome (with the attempt's duration when
   * it completed: the latency sample), the retry budget, the breaker queue.
   */
  private finishAttempt(outcome: RequestOutcome, latencyMs?: number): void {
    const current = this.current;
    if (current === null) return;
    this.current = null;
    current.backend.requestFinished(outcome, latencyMs);
    if (current.isRetry) this.entry.pool.finishRetry();
    this.shared.breaker.slotFreed(this.entry.pool);
  }

  private fail(backend: ForwardBackend, attempt: UpstreamAttempt, error: Error): void {
    if (this.clientGone || error instanceof ClientStalled) {
      // Nothing the backend did: the client left, or stopped reading and is cut off.
      this.finishAttempt('aborted');
      backend.metrics.requestFinished(statusClass(attempt.status || 499), (performance.now() - attempt.startedAt) / 1000, this.routeLabel);
      if (!this.clientGone) this.res.destroy();
      return;
    }
    const kind = classifyUpstreamError(error, attempt.requestSent);
    if (!neverReachedBackend(kind)) this.onlyUnreached = false;
    this.finishAttempt(kind.gatewayFailure ? 'gateway-failure' : 'aborted');
    backend.metrics.upstreamError(kind.reason);
    backend.metrics.requestFinished(statusClass(kind.status), (performance.now() - attempt.startedAt) / 1000, this.routeLabel);
    if (this.res.headersSent) {
      // Part of the response is out: the only honest signal left is to cut the client connection.
      if (kind.gatewayFailure) this.shared.logger.warn('backend failed mid-response', { pool: this.entry.pool.name, backend: backend.id, err: error });
      this.finalCode = kind.code;
      // A gRPC client reads a status from trailers; a reset stream would tell it only INTERNAL.
      if (this.grpc) endGrpcWithStatus(this.res, GrpcStatus.UNAVAILABLE, `backend ${backend.id} failed mid-response: ${kind.reason}`);
      else this.res.destroy();
      return;
    }
    if (this.mayRetry(kind)) {
      this.retries += 1;
      (this.excluded ??= new Set()).add(backend.id);
      if (this.shared.logger.enabled('debug')) {
        this.shared.logger.debug('retrying on another backend', { pool: this.entry.pool.name, backend: backend.id, reason: kind.reason });
      }
      this.attempt(kind);
      return;
    }
    this.replyFailure(kind);
  }

  /** The answer when attempts are over: the last failure, unless none of them reached a backend. */
  private replyFailure(last: FailureKind): void {
    const pool = this.entry.pool;
    this.reply(this.onlyUnreached && neverReachedBackend(last) ? noBackendReachable(pool.name, pool.retryAfterSeconds(), last) : last);
  }

  /** Whether the route's retryOn (when it has one) covers a failure; answers are judged in retryAnswer. */
  private retryCovers(kind: FailureKind): boolean {
    const on = this.policy?.retryOn ?? null;
    if (on === null || on.has('5xx')) return true;
    if (on.has('connect-failure') && kind.beforeRequestSent && kind.reason !== 'reset') return true;
    return on.has('reset') && kind.reason === 'reset';
  }

  private mayRetry(kind: FailureKind, answered = false): boolean {
    const pool = this.entry.pool;
    if (this.retries >= (this.policy?.retries ?? pool.config.retries)) return false;
    if (!answered && !this.retryCovers(kind)) return false;
    const method = this.req.method ?? 'GET';
    // gRPC methods are not known to be idempotent: only a call no backend saw is sent again.
    const safe = kind.beforeRequestSent ? !this.bodyConsumed : !this.grpc && IDEMPOTENT.has(method) && !this.hasBody;
    if (!safe) return false;
    if (pool.tryStartRetry()) return true;
    this.entry.metrics.retryRefused();
    if (this.shared.logger.enabled('debug')) this.shared.logger.debug('retry refused by the retry budget', { pool: pool.name });
    return false;
  }

  private answerWithoutBackend(): void {
    const pool = this.entry.pool;
    this.entry.metrics.requestWithoutBackend('5xx', this.routeLabel);
    this.reply(noAvailableBackend(pool.name, pool.retryAfterSeconds()));
  }

  /** An error answer; a draining listener's answers close the connection. */
  private reply(reply: ErrorReply, close = false): void {
    this.finalCode = reply.code;
    writeErrorResponse(this.res, reply, close || this.closeAfterResponse);
  }

  private onClientClose(): void {
    if (this.deadline !== null) {
      clearTimeout(this.deadline);
      this.deadline = null;
    }
    if (this.deadlineTimer !== null) {
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = null;
    }
    if (this.tailTimer !== null) {
      clearTimeout(this.tailTimer);
      this.tailTimer = null;
    }
    if (!this.res.writableFinished) {
      this.clientGone = true;
      this.stopWaiting();
      const current = this.current;
      if (current !== null) {
        this.finishAttempt('aborted');
        current.attempt.abandon();
        current.backend.metrics.requestFinished(statusClass(current.attempt.status || 499), (performance.now() - current.attempt.startedAt) / 1000, this.routeLabel);
      }
    }
  }

  /**
   * What the access line tells of the upstream side, read by the listener's own 'close' listener (added after ours),
   * so a listener without an access log costs no object and no extra property on the request.
   */
  upstreamFacts(): UpstreamFacts {
    const tried = this.lastBackend !== null;
    return {
      pool: this.entry.pool.name,
      backend: this.lastBackend,
      attempts: tried ? this.retries + 1 : 0,
      upstreamMs: tried ? performance.now() - this.lastStartedAt : null,
      code: this.finalCode,
    };
  }
}

/** A request handed to forward(): what its access line needs once the response has closed. */
export interface ForwardedRequest {
  upstreamFacts(): UpstreamFacts;
}

export class Forwarder {
  private readonly shared: Shared;
  private trustedProxies: TrustedProxies;
  private readonly tunnel: WebSocketTunnel;

  constructor(options: ForwarderOptions) {
    this.shared = { logger: options.logger, breaker: new CircuitBreaker() };
    this.trustedProxies = options.trustedProxies;
    this.tunnel = new WebSocketTunnel(options.logger);
  }

  /** `draining`: the listener is shutting down, so the client connection closes after this response. */
  /** trustedProxies edited in the file: requests from now on are judged by the new list. */
  setTrustedProxies(cidrs: readonly string[]): void {
    this.trustedProxies = new TrustedProxies(cidrs);
  }

  /**
   * Whether a connection's peer is a trusted proxy, whose X-Forwarded-* and X-Request-Id are kept. With no
   * trustedProxies the peer's address is not read at all (a getter and a handle lookup per request).
   */
  trustsPeerOf(socket: { readonly remoteAddress?: string | undefined }): boolean {
    if (this.trustedProxies.empty) return false;
    const address = socket.remoteAddress;
    return address !== undefined && this.trustedProxies.has(address);
  }

  /** The request's client address behind the trusted proxies in force (see clientAddress). */
  clientAddressOf(req: IncomingMessage): string {
    return clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'], this.trustedProxies);
  }

  forward(req: IncomingMessage, res: ServerResponse, entry: PoolEntry, route: CompiledRoute | null, maxBodySize: number, draining: boolean): ForwardedRequest {
    // Read before the hop-by-hop headers (Connection, Transfer-Encoding) are stripped.
    const facts = clientFacts(req, this.trustedProxies);
    const affinity = this.affinityOf(req, entry, facts.remoteAddress);
    const responseRules = route?.responseHeaders ?? null;
    const vars = route?.requestHeaders != null || responseRules !== null ? headerVariables(req) : null;
    const headers = req.headers;
    const grpc = isGrpcRequest(req);
    const options = {
      hasBody: hasRequestBody(req, headers),
      maxBodySize,
      // An HTTP/2 connection is never closed by a response: draining sends GOAWAY instead.
      close: !isHttp2(req) && (draining || wantsClose(req, headers)),
      hostFromBackend: route?.rewrite?.hostFromBackend === true,
      routeLabel: route?.label ?? '',
      policy: route?.policy ?? null,
      responseRules: responseRules === null || vars === null ? null : { rules: responseRules, vars },
      grpc,
      deadlineMs: grpc ? grpcTimeoutMs(headers['grpc-timeout']) : null,
      affinity,
    };
    const te = headers['te'];
    const grpcTrailers = grpc && typeof te === 'string' && te.trim().toLowerCase() === 'trailers';
    prepareRequestHeaders(headers, facts, false, isHttp2(req) ? null : req.rawHeaders);
    // gRPC servers require TE: trailers end to end; the proxy reads trailers too, so it is sent on (as Envoy does).
    if (grpcTrailers) headers.te = 'trailers';
    // Node already answered `100 Continue` to the client; the backend must not wait for a second one.
    if (headers['expect'] !== undefined) delete headers['expect'];
    if (route !== null) rewriteRequest(req, route, vars);
    const exchange = new ClientExchange(this.shared, req, res, entry, options);
    // Nothing reads or listens to a bodiless request beyond its head: Node need not read it to its end afterwards.
    if (!options.hasBody && !isHttp2(req)) skipDumpOfBodiless(req);
    exchange.start();
    return exchange;
  }

  /** Proxies a WebSocket (or other Upgrade) request through the tunnel, with the same header rewriting as any request. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry, route: CompiledRoute | null): void {
    const facts = clientFacts(req, this.trustedProxies);
    const affinity = this.affinityOf(req, entry, facts.remoteAddress);
    const vars = route?.requestHeaders != null ? headerVariables(req) : null;
    prepareRequestHeaders(req.headers, facts, true, isHttp2(req) ? null : req.rawHeaders);
    if (route !== null) rewriteRequest(req, route, vars);
    this.tunnel.open(req, socket, head, entry, affinity);
  }

  /** The request's hash key and sticky cookie, read before headers are rewritten (X-Forwarded-For still the client's). */
  private affinityOf(req: IncomingMessage, entry: PoolEntry, remoteAddress: string): PickRequest | null {
    const config = entry.pool.config;
    if (config.hashOn === null && config.sticky === null) return null;
    return pickRequestFor(config, req, config.hashOn === 'sourceIp' ? clientAddress(remoteAddress, req.headers['x-forwarded-for'], this.trustedProxies) : remoteAddress);
  }
}
