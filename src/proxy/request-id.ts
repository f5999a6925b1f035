// Every request's id (X-Request-Id: a trusted proxy's kept, else a new random one) and the W3C trace id the access log records.

import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The field that carries a request's id, both ways. */
export const REQUEST_ID_FIELD = 'x-request-id';

/** Visible ASCII, at most 200 characters: what is safe to echo into headers, JSON bodies and log lines. */
const ACCEPTABLE_ID = /^[\x21-\x7e]{1,200}$/;

/** Random bytes for this many ids are drawn at once, as Node's randomUUID draws them. */
const IDS_PER_DRAW = 128;
const randomBytes = Buffer.alloc(16 * IDS_PER_DRAW);
let nextRandom = IDS_PER_DRAW;
/** An id's 36 characters are written here, then read back as one string. */
const idCharacters = Buffer.alloc(36);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/**
 * A random (version 4) UUID, as crypto.randomUUID makes it. randomUUID joins twenty strings, which V8 keeps as a
 * tree of pieces until the id is first read whole (undici's header check, the socket write) and flattens then;
 * writing the characters into a buffer and reading them back as one flat string takes about half the time.
 */
export function newRequestId(): string {
  if (nextRandom === IDS_PER_DRAW) {
    randomFillSync(randomBytes);
    nextRandom = 0;
  }
  const base = 16 * nextRandom++;
  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) idCharacters[at++] = 0x2d; // '-'
    let byte = randomBytes[base + i]!;
    if (i === 6) byte = (byte & 0x0f) | 0x40; // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80; // the RFC 9562 variant
    idCharacters[at++] = HEX_DIGITS[byte >> 4]!;
    idCharacters[at++] = HEX_DIGITS[byte & 0x0f]!;
  }
  return idCharacters.toString('latin1', 0, 36);
}

/**
 * Sets req.headers['x-request-id'] and returns it. An id from a trusted proxy (an edge that already assigned one)
 * is kept so one id follows the request through every hop; from anyone else it could be forged or collide, so
 * a new one replaces it.
 */
export function assignRequestId(req: IncomingMessage, fromTrustedProxy: boolean): string {
  const given = req.headers['x-request-id'];
  if (fromTrustedProxy && typeof given === 'string' && ACCEPTABLE_ID.test(given)) return given;
  const id = newRequestId();
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
