// What the routes of a config do with one request, without sending it: which route matches and what the backend (or the client) would get. Behind `balancer routes list|test` and their admin API calls.

import type { IncomingHttpHeaders } from 'node:http';
import type { ReplicatedConfig, RouteConfig } from '../config/schema.js';
import { DEFAULTS } from '../config/schema.js';
import { toPlainRoute, type PlainObject } from '../config/plain.js';
import { applyToRequest, applyToResponse } from './header-rules.js';
import { normalizePath, splitTarget } from './normalize-path.js';
import { redirectAnswer, respondAnswer } from './route-answer.js';
import { compileRoutes, hostWithoutPort, matchRoute, routeLabel, type CompiledRoute } from './router.js';

/** One route as listed: its position, its label in metrics, and its file form. */
export interface RouteListing {
  readonly index: number;
  readonly label: string;
  readonly route: PlainObject;
}

export function listRoutes(config: ReplicatedConfig): RouteListing[] {
  return config.routes.map((route, index) => ({ index, label: routeLabel(route, index), route: toPlainRoute(route) }));
}

export interface TestRequest {
  readonly method: string;
  /** Origin-form (`/path?q`, Host from the headers) or absolute (`https://host/path?q`). */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The listener it arrives on (default: the one the one-listener form makes). */
  readonly listener?: string;
}

export type RouteTestResult =
  | { readonly outcome: 'rejected'; readonly status: number; readonly message: string }
  | { readonly outcome: 'no-route'; readonly status: 404; readonly path: string }
  | {
      readonly outcome: 'forward' | 'redirect' | 'respond';
      /** The normalised path the routes were matched against. */
      readonly path: string;
      /** Null when the lone pool takes everything (no routes). */
      readonly route: { readonly index: number; readonly label: string } | null;
      readonly pool?: string;
      /** What the backend would receive; `host` null when each backend gets its own (hostFromBackend). */
      readonly upstream?: { readonly method: string; readonly target: string; readonly host: string | null; readonly headers: Readonly<Record<string, string | string[]>> };
      readonly answer?: { readonly status: number; readonly headers: Readonly<Record<string, string | string[]>> };
    };

export class RouteTestError extends Error {}

function flatToRecord(list: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!.toLowerCase();
    const value = list[i + 1]!;
    const existing = out[name];
    out[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

/** Placeholders for what only a real request has: its client address and its id. */
const EXAMPLE_CLIENT = '(client address)';
const EXAMPLE_REQUEST_ID = '(request id)';

/**
 * Runs the matching, normalisation, rewrite and header rules of `config` on a described request.
 * `rejectEncodedSlash` is the asking node's limits.rejectEncodedSlash.
 */
export function testRoute(config: ReplicatedConfig, request: TestRequest, rejectEncodedSlash: boolean = DEFAULTS.limits.rejectEncodedSlash): RouteTestResult {
  const method = request.method.toUpperCase();
  if (!/^[A-Z][A-Z_-]*$/.test(method)) throw new RouteTestError(`method must be an HTTP method like GET, got ${JSON.stringify(request.method)}`);
  const headers: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value;
  let target = request.url;
  let encrypted = false;
  if (!target.startsWith('/')) {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new RouteTestError(`url must be a path (/x?y) or an absolute http(s) URL, got ${JSON.stringify(request.url)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RouteTestError(`url must use http or https, got ${url.protocol}`);
    encrypted = url.protocol === 'https:';
    headers.host ??= url.host;
    // URL() would normalise the path itself; take the raw target after the authority so the answer shows ours.
    const afterAuthority = target.slice(target.indexOf('//') + 2);
    const slash = afterAuthority.search(/[/?]/);
    target = slash === -1 ? '/' : afterAuthority.slice(slash);
    if (!target.startsWith('/')) target = `/${target}`;
  }
  headers.host ??= 'localhost';
  const { path: rawPath, query } = splitTarget(target);
  const normalized = normalizePath(rawPath, rejectEncodedSlash);
  if ('error' in normalized) {
    return {
      outcome: 'rejected',
      status: 400,
      message: normalized.error === 'encoded-slash' ? `the path contains ${normalized.detail} (an escaped slash or backslash): refused with 400 (limits.rejectEncodedSlash)` : `invalid percent-escape ${normalized.detail}: refused with 400`,
    };
  }
  const path = normalized.path;
  const pools = Object.keys(config.pools);
  let route: CompiledRoute | null = null;
  let pool: string | null;
  if (config.routes.length === 0) {
    if (pools.length !== 1) return { outcome: 'no-route', status: 404, path };
    pool = pools[0]!;
  } else {
    const matched = matchRoute(compileRoutes(config.routes), { host: hostWithoutPort(headers.host), path, query, method, headers, listener: request.listener ?? DEFAULTS.listenerName });
    if (matched === undefined) return { outcome: 'no-route', status: 404, path };
    route = matched;
    pool = matched.pool;
  }
  const vars = { clientIp: EXAMPLE_CLIENT, requestId: EXAMPLE_REQUEST_ID, host: headers.host, scheme: encrypted ? 'https' : 'http' };
  const named = route === null ? null : { index: route.index, label: route.label };
  if (pool === null) {
    const config: RouteConfig = route!.config;
    const answer = config.redirect !== null ? redirectAnswer(config.redirect, { encrypted, hostHeader: headers.host, path, query }) : respondAnswer(config.respond!);
    const list = [...answer.headers, 'x-request-id', EXAMPLE_REQUEST_ID];
    if (route!.responseHeaders !== null) applyToResponse(route!.responseHeaders, list, vars);
    return { outcome: config.redirect !== null ? 'redirect' : 'respond', path, route: named, answer: { status: answer.status, headers: flatToRecord(list) } };
  }
  // What the forwarder does, in its order: X-Forwarded-* from the client's view, the rewrite, the header rules.
  headers['x-request-id'] = EXAMPLE_REQUEST_ID;
  headers['x-forwarded-for'] = EXAMPLE_CLIENT;
  headers['x-forwarded-proto'] = vars.scheme;
  headers['x-forwarded-host'] = headers.host;
  let upstreamPath = path;
  let host: string | null = headers.host;
  const rewrite = route?.rewrite ?? null;
  if (rewrite !== null) {
    if (rewrite.path !== null) upstreamPath = rewrite.path(path);
    if (rewrite.host !== null) host = rewrite.host;
    if (rewrite.hostFromBackend) host = null;
  }
  if (route?.requestHeaders != null) applyToRequest(route.requestHeaders, headers, vars);
  delete headers.host;
  return {
    outcome: 'forward',
    path,
    route: named,
    pool,
    upstream: { method, target: `${upstreamPath}${query}`, host, headers: headers as Record<string, string | string[]> },
  };
}
