// redirectToHttps: the answer a plain listener gives that sends clients to the same URL on the TLS listener.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostWithoutPort } from './router.js';
import { mayCloseConnection } from './http2-requests.js';

/** 301 keeps GET and HEAD cacheable as every browser expects; 308 makes other methods repeat with their body. */
export function redirectStatus(method: string | undefined): 301 | 308 {
  return method === 'GET' || method === 'HEAD' ? 301 : 308;
}

/** `https://host[:port]/path?query`: the request's host without its port, the TLS listener's port unless 443. */
export function httpsLocation(hostHeader: string | undefined, target: string, httpsPort: number): string | null {
  const host = hostWithoutPort(hostHeader);
  if (host === '') return null;
  return `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${target}`;
}

/**
 * Answers `req` with the redirect; false (nothing written) when it names no host to redirect to. A body the
 * client sends is discarded, and its connection closed after the answer so no body bytes are taken for a request.
 */
export function redirectToHttps(req: IncomingMessage, res: ServerResponse, httpsPort: number, close: boolean): boolean {
  const location = httpsLocation(req.headers.host, req.url ?? '/', httpsPort);
  if (location === null) return false;
  const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  req.resume();
  const body = `Redirecting to ${location}\n`;
  const headers: Record<string, string | number> = {
    location,
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  };
  if ((close || hasBody) && mayCloseConnection(res)) headers['connection'] = 'close';
  res.writeHead(redirectStatus(req.method), headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
