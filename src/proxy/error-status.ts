// The one place where an upstream or data-plane failure becomes a client status code, error code and metric reason.

import type { ErrorCode } from '../errors.js';
import type { UpstreamErrorReason } from '../metrics/types.js';

export interface FailureKind {
  readonly status: number;
  readonly code: ErrorCode;
  readonly reason: UpstreamErrorReason;
  /** A failure where the backend never saw the request: safe to retry for any method. */
  readonly beforeRequestSent: boolean;
  /** Counts towards passive outlier detection (connect failures, resets, timeouts). */
  readonly gatewayFailure: boolean;
  readonly message: string;
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
 * Classifies an error from http-proxy or our timers. `requestSent` says whether any byte of the request
 * reached the socket, which decides whether a reset is safe to retry on another backend.
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
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
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
      return { status: 502, code: 'UPSTREAM_RESET', reason: 'reset', beforeRequestSent: !requestSent, gatewayFailure: true, message: `backend closed the connection: ${message}` };
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_HEADER_OVERFLOW':
    case 'ERR_INVALID_CHAR':
    case 'ERR_INVALID_HTTP_TOKEN':
      return { status: 502, code: 'UPSTREAM_PROTOCOL_ERROR', reason: 'protocol', beforeRequestSent: false, gatewayFailure: true, message: `backend sent an invalid HTTP response: ${message}` };
    default:
      if (typeof code === 'string' && (TLS_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS'))) {
        return { status: 502, code: 'UPSTREAM_TLS_FAILED', reason: 'tls', beforeRequestSent: true, gatewayFailure: true, message: `TLS to backend failed: ${message}` };
      }
      return { status: 502, code: 'UPSTREAM_RESET', reason: 'other', beforeRequestSent: false, gatewayFailure: true, message: `upstream error: ${message}` };
  }
}

export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly details?: readonly unknown[] };
}

export function errorBody(code: ErrorCode, message: string): string {
  const body: ErrorBody = { error: { code, message } };
  return JSON.stringify(body);
}
