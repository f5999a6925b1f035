// Every request's id (X-Request-Id: a trusted proxy's kept, else a new random one) and the W3C trace id the access log records.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Visible ASCII, at most 200 characters: what is safe to echo into headers, JSON bodies and log lines. */
const ACCEPTABLE_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Sets req.headers['x-request-id'] and returns it. An id from a trusted proxy (an edge that already assigned one)
 * is kept so one id follows the request through every hop; from anyone else it could be forged or collide, so
 * a new one replaces it.
 */
export function assignRequestId(req: IncomingMessage, fromTrustedProxy: boolean): string {
  const given = req.headers['x-request-id'];
  if (fromTrustedProxy && typeof given === 'string' && ACCEPTABLE_ID.test(given)) return given;
  const id = randomUUID();
  req.headers['x-request-id'] = id;
  return id;
}

/** The request's id once assigned; null for a request the listener never got to (parse errors). */
export function requestIdOf(req: IncomingMessage | undefined): string | null {
  const id = req?.headers['x-request-id'];
  return typeof id === 'string' ? id : null;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/;
const INVALID_TRACE_ID = '0'.repeat(32);

/** The trace id of a W3C traceparent header (version-traceid-parentid-flags); null when absent or malformed. */
export function traceIdOf(traceparent: string | string[] | undefined): string | null {
  if (typeof traceparent !== 'string') return null;
  const match = TRACEPARENT.exec(traceparent);
  return match === null || match[1] === INVALID_TRACE_ID ? null : match[1]!;
}
