// Rejects requests whose framing or target could be read differently by us and by a backend (smuggling), before http-proxy sees them.

import type { IncomingMessage } from 'node:http';

export interface GuardRejection {
  readonly status: 400 | 405 | 413;
  readonly code: 'BAD_REQUEST' | 'FORWARD_PROXY_REFUSED' | 'METHOD_NOT_ALLOWED' | 'REQUEST_TOO_LARGE';
  readonly message: string;
}

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
export function checkFraming(req: IncomingMessage, maxBodySize: number): GuardRejection | null {
  // Node folds every Content-Length and Transfer-Encoding line into req.headers: when neither is there, no raw
  // line can be either, and the common bodiless request skips the raw scan.
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return null;
  const lengths = rawHeaderValues(req, 'content-length');
  const encodings = rawHeaderValues(req, 'transfer-encoding');
  if (lengths.length > 0 && encodings.length > 0) {
    return { status: 400, code: 'BAD_REQUEST', message: 'request carries both Content-Length and Transfer-Encoding' };
  }
  if (lengths.length > 1) {
    return { status: 400, code: 'BAD_REQUEST', message: 'request carries more than one Content-Length header' };
  }
  if (lengths.length === 1) {
    const value = lengths[0]!.trim();
    if (!CONTENT_LENGTH.test(value)) {
      return { status: 400, code: 'BAD_REQUEST', message: `invalid Content-Length ${JSON.stringify(lengths[0])}` };
    }
    if (maxBodySize > 0 && Number(value) > maxBodySize) {
      return { status: 413, code: 'REQUEST_TOO_LARGE', message: `request body of ${value} bytes exceeds the limit of ${maxBodySize}` };
    }
  }
  if (encodings.length > 1 || (encodings.length === 1 && encodings[0]!.trim().toLowerCase() !== 'chunked')) {
    return { status: 400, code: 'BAD_REQUEST', message: `unsupported Transfer-Encoding ${JSON.stringify(encodings.join(', '))}; only "chunked" is accepted` };
  }
  return null;
}

/**
 * Normalises the request target to origin-form. An absolute-form target (`GET http://host/path`) is accepted
 * only for the same authority the Host header names: balancer is a reverse proxy, never a forward proxy.
 */
export function checkTarget(req: IncomingMessage): GuardRejection | null {
  const url = req.url ?? '';
  if (req.method === 'CONNECT') {
    return { status: 405, code: 'METHOD_NOT_ALLOWED', message: 'CONNECT is not supported: balancer is not a forward proxy' };
  }
  if (url.startsWith('/')) return null;
  if (url === '*' && req.method === 'OPTIONS') return null;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { status: 400, code: 'BAD_REQUEST', message: 'request target is neither origin-form nor a valid absolute URL' };
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return { status: 400, code: 'FORWARD_PROXY_REFUSED', message: `absolute-form target with scheme ${target.protocol} refused` };
  }
  const host = (req.headers.host ?? '').toLowerCase();
  if (target.host.toLowerCase() !== host) {
    return { status: 400, code: 'FORWARD_PROXY_REFUSED', message: `absolute-form target for ${target.host} does not match Host ${JSON.stringify(host)}: balancer is not a forward proxy` };
  }
  req.url = `${target.pathname}${target.search}`;
  return null;
}
