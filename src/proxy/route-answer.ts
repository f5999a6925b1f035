// Answers a route gives itself instead of forwarding to a pool: redirects and fixed responses.

import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RouteConfig, RouteRedirect, RouteRespond } from '../config/schema.js';
import { mayCloseConnection } from './http2-requests.js';

export interface RouteAnswer {
  readonly status: number;
  /** Flat [name, value, ...] as writeHead takes them. */
  readonly headers: string[];
  readonly body: Buffer;
}

/** What a redirect is built from: the request as the client addressed it, path normalised. */
export interface RedirectSource {
  readonly encrypted: boolean;
  /** The Host header as sent (may carry a port). */
  readonly hostHeader: string;
  readonly path: string;
  /** With its `?`, or empty. */
  readonly query: string;
}

function splitHostHeader(hostHeader: string): { host: string; port: string | null } {
  if (hostHeader.startsWith('[')) {
    const end = hostHeader.indexOf(']');
    const port = hostHeader.slice(end + 1);
    return { host: hostHeader.slice(0, end + 1), port: port.startsWith(':') ? port.slice(1) : null };
  }
  const colon = hostHeader.lastIndexOf(':');
  return colon === -1 ? { host: hostHeader, port: null } : { host: hostHeader.slice(0, colon), port: hostHeader.slice(colon + 1) };
}

/**
 * The Location of a redirect: each part the route names replaces the request's. The request's port is kept only
 * while scheme and host stay; a new scheme or host without a port goes to that scheme's default port.
 */
export function redirectLocation(redirect: RouteRedirect, source: RedirectSource): string {
  const scheme = redirect.scheme ?? (source.encrypted ? 'https' : 'http');
  const requested = splitHostHeader(source.hostHeader);
  const host = redirect.host ?? requested.host;
  const sameOrigin = scheme === (source.encrypted ? 'https' : 'http') && host === requested.host;
  const port = redirect.port !== null ? String(redirect.port) : sameOrigin ? requested.port : null;
  const defaultPort = scheme === 'https' ? '443' : '80';
  const authority = port === null || port === defaultPort ? host : `${host}:${port}`;
  const query = redirect.stripQuery ? '' : source.query;
  return `${scheme}://${authority}${redirect.path ?? source.path}${query}`;
}

export function redirectAnswer(redirect: RouteRedirect, source: RedirectSource): RouteAnswer {
  return { status: redirect.status, headers: ['location', redirectLocation(redirect, source), 'content-length', '0'], body: Buffer.alloc(0) };
}

/** Statuses that never carry a body or a Content-Length (RFC 9110 sections 8.6 and 15.4.5). */
export const BODILESS_STATUSES: ReadonlySet<number> = new Set([204, 304]);

export function respondAnswer(respond: RouteRespond): RouteAnswer {
  const body = Buffer.from(respond.body, 'utf8');
  const headers = BODILESS_STATUSES.has(respond.status) ? [] : ['content-length', String(body.length)];
  if (respond.contentType !== null) headers.push('content-type', respond.contentType);
  return { status: respond.status, headers, body };
}

/** What a route that answers itself says to this request; null for a route that forwards. */
export function routeAnswer(route: RouteConfig, source: RedirectSource): RouteAnswer | null {
  if (route.redirect !== null) return redirectAnswer(route.redirect, source);
  if (route.respond !== null) return respondAnswer(route.respond);
  return null;
}

export function writeRouteAnswer(res: ServerResponse, answer: RouteAnswer, close: boolean): void {
  res.writeHead(answer.status, close && mayCloseConnection(res) ? [...answer.headers, 'connection', 'close'] : answer.headers);
  res.end(answer.body);
}

/** On the bare socket of an upgrade request, which then closes. */
export function writeRawRouteAnswer(socket: Duplex, answer: RouteAnswer): void {
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}\r\n`;
  for (let i = 0; i < answer.headers.length; i += 2) head += `${answer.headers[i]}: ${answer.headers[i + 1]}\r\n`;
  socket.end(Buffer.concat([Buffer.from(`${head}connection: close\r\n\r\n`, 'latin1'), answer.body]));
}
