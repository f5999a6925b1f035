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
const HEX_DIGITS = '0123456789abcdef';
/** The character codes of each byte value's two hex digits. */
const HIGH_DIGIT = Uint8Array.from({ length: 256 }, (_, byte) => HEX_DIGITS.charCodeAt(byte >> 4));
const LOW_DIGIT = Uint8Array.from({ length: 256 }, (_, byte) => HEX_DIGITS.charCodeAt(byte & 0x0f));
const DASH = 0x2d;

function drawRandomBytes(): void {
  randomFillSync(randomBytes);
  for (let id = 0; id < 16 * IDS_PER_DRAW; id += 16) {
    randomBytes[id + 6] = (randomBytes[id + 6]! & 0x0f) | 0x40; // version 4
    randomBytes[id + 8] = (randomBytes[id + 8]! & 0x3f) | 0x80; // the RFC 9562 variant
  }
  nextRandom = 0;
}

const high = (at: number): number => HIGH_DIGIT[randomBytes[at]!]!;
const low = (at: number): number => LOW_DIGIT[randomBytes[at]!]!;

/**
 * A random (version 4) UUID, as crypto.randomUUID makes it. randomUUID joins twenty strings, which V8 keeps as a
 * tree of pieces until the id is first read whole (undici's header check, the socket write) and flattens then; one
 * String.fromCharCode of the 36 character codes makes one flat string at once, with no buffer to fill and read back
 * through a native call (about 1,000 instructions less per id than that).
 */
export function newRequestId(): string {
  if (nextRandom === IDS_PER_DRAW) drawRandomBytes();
  const at = 16 * nextRandom++;
  return String.fromCharCode(
    high(at), low(at), high(at + 1), low(at + 1), high(at + 2), low(at + 2), high(at + 3), low(at + 3), DASH,
    high(at + 4), low(at + 4), high(at + 5), low(at + 5), DASH,
    high(at + 6), low(at + 6), high(at + 7), low(at + 7), DASH,
    high(at + 8), low(at + 8), high(at + 9), low(at + 9), DASH,
    high(at + 10), low(at + 10), high(at + 11), low(at + 11), high(at + 12), low(at + 12),
    high(at + 13), low(at + 13), high(at + 14), low(at + 14), high(at + 15), low(at + 15),
  );
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
