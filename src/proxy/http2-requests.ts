// What an HTTP/2 request needs before the data plane treats it like an HTTP/1.1 one: pseudo-headers out, Host from :authority, a body known by its stream.

import type { IncomingMessage, ServerResponse } from 'node:http';

const PSEUDO_HEADERS = [':method', ':path', ':scheme', ':authority', ':protocol'] as const;

/**
 * In place: the pseudo-headers leave the header list (they are request control data, and no backend header), and
 * Host is the request's :authority, as an HTTP/1.1 request's would be (RFC 9113 section 8.3.1). Node's HTTP/2 layer
 * has already refused connection-specific fields and checks Content-Length against the DATA frames.
 */
export function adaptHttp2Request(req: IncomingMessage): void {
  const headers = req.headers;
  const authority = headers[':authority'];
  // The compatibility API reads url and method from the pseudo-headers: kept as plain fields before those go.
  Object.defineProperty(req, 'url', { value: req.url, writable: true, enumerable: true, configurable: true });
  Object.defineProperty(req, 'method', { value: req.method, writable: true, enumerable: true, configurable: true });
  for (const name of PSEUDO_HEADERS) {
    if (headers[name] !== undefined) delete headers[name];
  }
  if (typeof authority === 'string' && authority !== '') headers.host = authority;
}

/** Whether a request came over HTTP/2 (its answer then carries no Connection header and no reason phrase). */
export function isHttp2(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 2;
}

/** Whether an HTTP/2 request has a body: its HEADERS frame did not end the stream. */
export function http2HasBody(req: IncomingMessage): boolean {
  return (req as IncomingMessage & { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders !== true;
}

/** The response's request over HTTP/2: Connection is a connection-specific field HTTP/2 forbids. */
export function mayCloseConnection(res: ServerResponse): boolean {
  return res.req === undefined || !isHttp2(res.req);
}
