// Rejects requests whose framing or target could be read differently by us and by a backend (smuggling), before any backend sees them.

import type { IncomingMessage } from 'node:http';
import { CONNECT_REFUSED, framing, target as targetReply, type ErrorReply } from './error-status.js';

const CONTENT_LENGTH = /^[0-9]{1,15}$/;

function rawHeaderValues(req: IncomingMessage, lowerName: string): string[] {
  const values: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === lowerName) values.push(raw[i + 1]!);
  }
  return values;
}

/**
 * Framing rules (RFC 9112 section 6): exactly one valid Content-Length, or Transfer-Encoding exactly
 * `chunked`, never both. Node's parser enforces most of this already; checking the raw headers again
 * here means a parser leniency or a future http-proxy quirk cannot reopen a smuggling path.
 */
export function checkFraming(req: IncomingMessage, maxBodySize: number): ErrorReply | null {
  // Node folds every Content-Length and Transfer-Encoding line into req.headers: when neither is there, no raw
  // line can be either, and the common bodiless request skips the raw scan.
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return null;
  const lengths = rawHeaderValues(req, 'content-length');
  const encodings = rawHeaderValues(req, 'transfer-encoding');
  if (lengths.length > 0 && encodings.length > 0) {
    return framing.bothLengthAndEncoding;
  }
  if (lengths.length > 1) {
    return framing.repeatedLength;
  }
  if (lengths.length === 1) {
    const value = lengths[0]!.trim();
    if (!CONTENT_LENGTH.test(value)) {
      return framing.invalidLength(lengths[0]!);
    }
    if (maxBodySize > 0 && Number(value) > maxBodySize) {
      return framing.lengthOverLimit(value, maxBodySize);
    }
  }
  if (encodings.length > 1 || (encodings.length === 1 && encodings[0]!.trim().toLowerCase() !== 'chunked')) {
    return framing.unsupportedEncoding(encodings.join(', '));
  }
  return null;
}

/**
 * Normalises the request target to origin-form. An absolute-form target (`GET http://host/path`) is accepted
 * only for the same authority the Host header names: balancer is a reverse proxy, never a forward proxy.
 */
export function checkTarget(req: IncomingMessage): ErrorReply | null {
  const url = req.url ?? '';
  if (req.method === 'CONNECT') {
    return CONNECT_REFUSED;
  }
  if (url.startsWith('/')) return null;
  if (url === '*' && req.method === 'OPTIONS') return null;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return targetReply.invalid;
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return targetReply.foreignScheme(target.protocol);
  }
  const host = (req.headers.host ?? '').toLowerCase();
  if (target.host.toLowerCase() !== host) {
    return targetReply.foreignAuthority(target.host, host);
  }
  req.url = `${target.pathname}${target.search}`;
  return null;
}
