// Every status the data plane answers on its own (400/404/405/408/413/429/431/502/503/504): stable code, message, and the two writers.
//
// Nothing else in src/proxy builds an error answer: the listener, the request guards, the retry loop and the
// upstream exchange ask this module for an ErrorReply and hand it to writeErrorResponse (a ServerResponse) or
// writeRawError (a bare socket: parse errors, CONNECT, upgrades).

import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage, type ErrorBody, type ErrorCode } from '../errors.js';
import type { UpstreamErrorReason } from '../metrics/types.js';
import { endConnection } from '../connection-close.js';
import { mayCloseConnection } from './http2-requests.js';
import { grpcStatusForHttp, isGrpcRequest, writeGrpcError } from './grpc.js';
import { noteRawAnswer } from './access-log.js';
import { requestIdOf } from './request-id.js';

/** One answer of the data plane: what the client gets, and why. */
export interface ErrorReply {
  readonly status: number;
  readonly code: ErrorCode;
  readonly message: string;
  /** Seconds for Retry-After, on 503s and 429s. */
  readonly retryAfterSeconds?: number;
  /** More header fields of the answer (lower-case names): a 429's RateLimit-* fields. */
  readonly headers?: readonly (readonly [string, string])[];
}

const REASON_PHRASES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

// ---------------------------------------------------------------- the client's request (4xx)

function badRequest(message: string): ErrorReply {
  return { status: 400, code: 'BAD_REQUEST', message };
}

/** Request framing that a backend could read differently from us (smuggling), by what is wrong with it. */
export const framing = {
  bothLengthAndEncoding: badRequest('request carries both Content-Length and Transfer-Encoding'),
  repeatedLength: badRequest('request carries more than one Content-Length header'),
  invalidLength: (value: string): ErrorReply => badRequest(`invalid Content-Length ${JSON.stringify(value)}`),
  unsupportedEncoding: (value: string): ErrorReply => badRequest(`unsupported Transfer-Encoding ${JSON.stringify(value)}; only "chunked" is accepted`),
  lengthOverLimit: (length: string, limit: number): ErrorReply => requestTooLarge(`request body of ${length} bytes exceeds the limit of ${limit}`),
} as const;

/** Request targets balancer does not serve: unparsable, or absolute-form for another authority (it is never a forward proxy). */
export const target = {
  invalid: badRequest('request target is neither origin-form nor a valid absolute URL'),
  foreignScheme: (protocol: string): ErrorReply => ({ status: 400, code: 'FORWARD_PROXY_REFUSED', message: `absolute-form target with scheme ${protocol} refused` }),
  foreignAuthority: (authority: string, host: string): ErrorReply => ({
    status: 400,
    code: 'FORWARD_PROXY_REFUSED',
    message: `absolute-form target for ${authority} does not match Host ${JSON.stringify(host)}: balancer is not a forward proxy`,
  }),
  encodedSlash: (escape: string): ErrorReply =>
    badRequest(`request path contains ${escape}, an escaped slash or backslash: refused because a backend could read it as a separator that routes never saw (limits.rejectEncodedSlash)`),
  badEscape: (text: string): ErrorReply => badRequest(`request path contains an invalid percent-escape ${JSON.stringify(text)}`),
} as const;

export function noRoute(host: string | undefined, path: string | undefined): ErrorReply {
  return { status: 404, code: 'NO_ROUTE', message: `no route matches host ${JSON.stringify(host ?? '')} and path ${JSON.stringify(path ?? '')}` };
}

export const CONNECT_REFUSED: ErrorReply = { status: 405, code: 'METHOD_NOT_ALLOWED', message: 'CONNECT is not supported: balancer is not a forward proxy' };

function requestTooLarge(message: string): ErrorReply {
  return { status: 413, code: 'REQUEST_TOO_LARGE', message };
}

export function bodyOverLimit(limit: number): ErrorReply {
  return requestTooLarge(`request body exceeds the limit of ${limit} bytes`);
}

const HEADERS_TOO_LARGE: ErrorReply = { status: 431, code: 'HEADERS_TOO_LARGE', message: 'request headers exceed the size limit' };
const REQUEST_TIMEOUT: ErrorReply = { status: 408, code: 'REQUEST_TIMEOUT', message: 'request not received in time' };

/** What a request Node's HTTP parser refused gets, by the parser's error code. */
export function parseErrorReply(parserCode: string | undefined): ErrorReply {
  if (parserCode === 'HPE_HEADER_OVERFLOW') return HEADERS_TOO_LARGE;
  if (parserCode === 'ERR_HTTP_REQUEST_TIMEOUT') return REQUEST_TIMEOUT;
  return badRequest(`malformed request (${parserCode ?? 'parse error'})`);
}

/** What a rate limit's bucket says about a refused request. */
export interface RateLimitVerdict {
  /** The bucket's size (burst). */
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until the bucket is full again. */
  readonly resetSeconds: number;
  /** Seconds until the next request would be let through. */
  readonly retryAfterSeconds: number;
  /** Seconds an empty bucket takes to fill: the window of the policy `limit;w=window`. */
  readonly windowSeconds: number;
}

/**
 * The header fields of draft-ietf-httpapi-ratelimit-headers-07 (RateLimit-Limit, -Remaining, -Reset and -Policy): the
 * separate fields most clients and gateways read, rather than the combined RateLimit field of later drafts.
 */
export function rateLimitHeaders(verdict: RateLimitVerdict): Array<readonly [string, string]> {
  return [
    ['ratelimit-limit', String(verdict.limit)],
    ['ratelimit-remaining', String(verdict.remaining)],
    ['ratelimit-reset', String(verdict.resetSeconds)],
    ['ratelimit-policy', `${verdict.limit};w=${verdict.windowSeconds}`],
  ];
}

/** A client past its rate limit (`scope`: the route or pool whose limit it met). */
export function rateLimited(scope: string, verdict: RateLimitVerdict): ErrorReply {
  return {
    status: 429,
    code: 'RATE_LIMITED',
    message: `too many requests: the rate limit of ${scope} allows each client ${verdict.limit} requests per ${verdict.windowSeconds} s; retry in ${verdict.retryAfterSeconds} s`,
    retryAfterSeconds: verdict.retryAfterSeconds,
    headers: rateLimitHeaders(verdict),
  };
}

// ---------------------------------------------------------------- no backend to ask (503)

/** Before this node has a config to route by (waiting for the cluster, or to be added to it): `reason` says which. */
export function notServing(reason: string): ErrorReply {
  return { status: 503, code: 'NOT_SERVING', message: reason, retryAfterSeconds: 1 };
}

export function noAvailableBackend(pool: string, retryAfterSeconds: number): ErrorReply {
  return { status: 503, code: 'NO_AVAILABLE_BACKEND', message: `no available backend in pool "${pool}"`, retryAfterSeconds };
}

/**
 * Every attempt failed before reaching a backend (refused, connect timeout): as HAProxy and Envoy do, that is
 * "nothing available" (503), not a bad gateway; `lastFailure` says what the last attempt met.
 */
export function noBackendReachable(pool: string, retryAfterSeconds: number, lastFailure: ErrorReply): ErrorReply {
  return { status: 503, code: 'NO_AVAILABLE_BACKEND', message: `no backend of pool "${pool}" could be reached (last: ${lastFailure.message})`, retryAfterSeconds };
}

export function circuitQueueFull(pool: string): ErrorReply {
  return { status: 503, code: 'CIRCUIT_OPEN', message: `every backend of pool "${pool}" is at its concurrency limit and the wait queue is full`, retryAfterSeconds: 1 };
}

export function circuitWaitExpired(pool: string, waitMs: number): ErrorReply {
  return { status: 503, code: 'CIRCUIT_OPEN', message: `no backend of pool "${pool}" freed a slot within ${waitMs} ms`, retryAfterSeconds: 1 };
}

// ---------------------------------------------------------------- a backend failed (502/504)

/** An upstream failure, classified: the client's answer plus what the retry loop and the health signals need. */
export interface FailureKind extends ErrorReply {
  readonly reason: UpstreamErrorReason;
  /** A failure where the backend never saw the request: safe to retry for any method. */
  readonly beforeRequestSent: boolean;
  /** Counts towards passive outlier detection (connect failures, resets, timeouts). */
  readonly gatewayFailure: boolean;
}

/** A failure that happened before the attempt reached a backend: nothing was listening, or the connect did not complete. */
export function neverReachedBackend(kind: FailureKind): boolean {
  return kind.reason === 'connect_refused' || kind.reason === 'connect_timeout';
}

export type ProxyPhase = 'connect' | 'response' | 'idle';

/** Errors this module produces itself for timeouts, tagged so classification does not rely on message text. */
export class UpstreamTimeout extends Error {
  readonly phase: ProxyPhase;
  constructor(phase: ProxyPhase, ms: number) {
    super(`upstream ${phase} timeout after ${ms} ms`);
    this.phase = phase;
  }
}

/** A wait for a free connection under connections.max that outlasted the connect timeout: a local limit, not the backend's fault. */
export class ConnectionWaitExpired extends Error {
  readonly waitMs: number;
  constructor(waitMs: number) {
    super(`no connection to the backend became free within ${waitMs} ms (connections.max)`);
    this.waitMs = waitMs;
  }
}

/** RST_STREAM's REFUSED_STREAM (RFC 9113 section 8.7): the backend did not process the stream, so it is safe to send again. */
const HTTP2_REFUSED_STREAM = 7;

/** An HTTP/2 backend closed one stream (RST_STREAM, or its session went) before the response ended. */
export class Http2StreamReset extends Error {
  /** The RST_STREAM code; 0 (NO_ERROR) when the session closed under the stream. */
  readonly rstCode: number;
  constructor(what: string, rstCode: number | undefined) {
    super(`${what} (HTTP/2 error code ${rstCode ?? 0})`);
    this.rstCode = rstCode ?? 0;
  }

  get refused(): boolean {
    return this.rstCode === HTTP2_REFUSED_STREAM;
  }
}

/** A route's timeout ran out: the whole exchange, retries included. */
export function routeTimeout(ms: number): ErrorReply {
  return { status: 504, code: 'ROUTE_TIMEOUT', message: `the route's timeout of ${ms} ms ran out (the whole exchange with the backends, retries included)` };
}

/** A backend's 5xx answer that the route retries on (retryOn gateway-error or 5xx): not relayed, another backend is asked. */
export class RetriedAnswer extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`backend answered ${status}`);
    this.status = status;
  }
}

/** The client stopped reading the response for longer than the idle timeout: its connection is cut, the backend is not at fault. */
export class ClientStalled extends Error {
  constructor(idleMs: number) {
    super(`client read nothing of the response for ${idleMs} ms`);
  }
}

const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/**
 * Classifies an error from the upstream exchange or our timers. `requestSent` says whether any byte of the
 * request reached the socket, which decides whether a reset is safe to retry on another backend.
 */
export function classifyUpstreamError(error: unknown, requestSent: boolean): FailureKind {
  if (error instanceof UpstreamTimeout) {
    if (error.phase === 'connect') {
      return { status: 504, code: 'UPSTREAM_CONNECT_TIMEOUT', reason: 'connect_timeout', beforeRequestSent: true, gatewayFailure: true, message: error.message };
    }
    if (error.phase === 'response') {
      return { status: 504, code: 'UPSTREAM_RESPONSE_TIMEOUT', reason: 'response_timeout', beforeRequestSent: false, gatewayFailure: true, message: error.message };
    }
    return { status: 504, code: 'UPSTREAM_IDLE_TIMEOUT', reason: 'idle_timeout', beforeRequestSent: false, gatewayFailure: true, message: error.message };
  }
  if (error instanceof RetriedAnswer) {
    return { status: error.status, code: 'UPSTREAM_RESET', reason: 'other', beforeRequestSent: false, gatewayFailure: false, message: error.message };
  }
  if (error instanceof Http2StreamReset) {
    return { status: 502, code: 'UPSTREAM_RESET', reason: 'reset', beforeRequestSent: error.refused, gatewayFailure: true, message: `backend closed the connection: ${error.message}` };
  }
  if (error instanceof ConnectionWaitExpired) {
    return { status: 503, code: 'CIRCUIT_OPEN', reason: 'circuit_open', beforeRequestSent: true, gatewayFailure: false, message: error.message, retryAfterSeconds: 1 };
  }
  const code = (error as { code?: unknown } | null)?.code;
  const message = errorMessage(error);
  switch (code) {
    // undici's own timeouts: connect (TCP and TLS), response head, body idle.
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { status: 504, code: 'UPSTREAM_CONNECT_TIMEOUT', reason: 'connect_timeout', beforeRequestSent: true, gatewayFailure: true, message: `upstream connect timeout: ${message}` };
    case 'UND_ERR_HEADERS_TIMEOUT':
      return { status: 504, code: 'UPSTREAM_RESPONSE_TIMEOUT', reason: 'response_timeout', beforeRequestSent: false, gatewayFailure: true, message: 'upstream response timeout: no response head in time' };
    case 'UND_ERR_BODY_TIMEOUT':
      return { status: 504, code: 'UPSTREAM_IDLE_TIMEOUT', reason: 'idle_timeout', beforeRequestSent: false, gatewayFailure: true, message: 'upstream idle timeout: the response body stalled' };
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return { status: 502, code: 'UPSTREAM_CONNECT_FAILED', reason: 'connect_refused', beforeRequestSent: true, gatewayFailure: true, message: `cannot connect to backend: ${message}` };
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    // undici: the backend closed the connection or it broke mid-exchange.
    case 'UND_ERR_SOCKET':
      return { status: 502, code: 'UPSTREAM_RESET', reason: 'reset', beforeRequestSent: !requestSent, gatewayFailure: true, message: `backend closed the connection: ${message}` };
    case 'ERR_INVALID_CHAR':
    case 'ERR_INVALID_HTTP_TOKEN':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return { status: 502, code: 'UPSTREAM_PROTOCOL_ERROR', reason: 'protocol', beforeRequestSent: false, gatewayFailure: true, message: `backend sent an invalid HTTP response: ${message}` };
    default:
      // llhttp's parse errors, from undici (the backend's response) or Node (a WebSocket handshake answer).
      if (typeof code === 'string' && code.startsWith('HPE_')) {
        return { status: 502, code: 'UPSTREAM_PROTOCOL_ERROR', reason: 'protocol', beforeRequestSent: false, gatewayFailure: true, message: `backend sent an invalid HTTP response: ${message}` };
      }
      if (typeof code === 'string' && (TLS_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS'))) {
        return { status: 502, code: 'UPSTREAM_TLS_FAILED', reason: 'tls', beforeRequestSent: true, gatewayFailure: true, message: `TLS to backend failed: ${message}` };
      }
      return { status: 502, code: 'UPSTREAM_RESET', reason: 'other', beforeRequestSent: false, gatewayFailure: true, message: `upstream error: ${message}` };
  }
}

// ---------------------------------------------------------------- the writers

/** The JSON of an error answer; `requestId` (the request's X-Request-Id) lets a user's report be found in the logs. */
export function errorBody(code: ErrorCode, message: string, requestId: string | null = null): string {
  const body: ErrorBody = { error: requestId === null ? { code, message } : { code, message, requestId } };
  return JSON.stringify(body);
}

/**
 * Answers through a ServerResponse. `close` ends the client connection after the answer (a rejected request whose
 * body was never read, a draining listener). A response already under way can only be cut.
 */
export function writeErrorResponse(res: ServerResponse, reply: ErrorReply, close: boolean): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const requestId = requestIdOf(res.req);
  const body = errorBody(reply.code, reply.message, requestId);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (requestId !== null) headers['x-request-id'] = requestId;
  if (reply.retryAfterSeconds !== undefined) headers['retry-after'] = String(reply.retryAfterSeconds);
  for (const [name, value] of reply.headers ?? []) headers[name] = value;
  if (close && mayCloseConnection(res)) headers['connection'] = 'close';
  if (res.req !== undefined && isGrpcRequest(res.req)) {
    // A gRPC client cannot read a JSON body: the same failure as a gRPC status.
    writeGrpcError(res, grpcStatusForHttp(reply.status), `${reply.code}: ${reply.message}`);
    return;
  }
  res.writeHead(reply.status, headers);
  res.end(body);
}

/** Answers on a bare socket (parse errors, CONNECT, upgrade requests have no ServerResponse); destroyed soon after. */
export function writeRawError(socket: Duplex, reply: ErrorReply, requestId: string | null = null): void {
  noteRawAnswer(socket, reply.status, reply.code);
  const body = errorBody(reply.code, reply.message, requestId);
  const extra = (reply.headers ?? []).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  const retryAfter = `${reply.retryAfterSeconds === undefined ? '' : `retry-after: ${reply.retryAfterSeconds}\r\n`}${extra}${requestId === null ? '' : `x-request-id: ${requestId}\r\n`}`;
  endConnection(
    socket,
    `HTTP/1.1 ${reply.status} ${REASON_PHRASES[reply.status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n${retryAfter}connection: close\r\n\r\n${body}`,
  );
}
