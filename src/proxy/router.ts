// Compiles routes into matchers once per config version: the first route in file order whose every condition holds wins.

import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMatch, RetryCondition, RouteConfig } from '../config/schema.js';
import { compileRouteRegex } from '../config/route-regex.js';
import { compileRewrite, type CompiledRewrite } from './rewrite.js';
import { compileHeaderRules, type CompiledHeaderRules } from './header-rules.js';
import type { RateLimiter } from './rate-limit.js';

/** What a route is matched against; `path` is already normalised and has no query. */
export interface RouteRequest {
  /** Host without port, lower case. */
  readonly host: string;
  readonly path: string;
  /** The query with its leading `?`, or empty. */
  readonly query: string;
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  /** The name of the listener the request came in on. */
  readonly listener: string;
}

/**
 * A request as the listener hands it to the routes: the host (the Host header without its port, lower case) is
 * worked out the first time a route asks for it, so a table without routes (the lone pool) never does.
 */
export class IncomingRouteRequest implements RouteRequest {
  private lowerCaseHost: string | null = null;

  constructor(
    private readonly hostHeader: string | undefined,
    readonly path: string,
    readonly query: string,
    readonly method: string,
    readonly headers: IncomingHttpHeaders,
    readonly listener: string,
  ) {}

  get host(): string {
    return (this.lowerCaseHost ??= hostWithoutPort(this.hostHeader));
  }
}

interface CompiledHeaderMatch {
  readonly name: string;
  readonly test: (value: string | undefined) => boolean;
}

/** A route's own timeout and retry settings, when it has any. */
export interface RoutePolicy {
  readonly timeoutMs: number | null;
  readonly retries: number | null;
  readonly retryOn: ReadonlySet<RetryCondition> | null;
}

export interface CompiledRoute {
  readonly index: number;
  /** The route's name, else its index: the `route` label of request metrics. */
  readonly label: string;
  readonly config: RouteConfig;
  /** Null for a route that answers itself (redirect or respond). */
  readonly pool: string | null;
  readonly rewrite: CompiledRewrite | null;
  readonly requestHeaders: CompiledHeaderRules | null;
  readonly responseHeaders: CompiledHeaderRules | null;
  readonly maxBodySize: number;
  readonly policy: RoutePolicy | null;
  /** The route's per-client limit in this process; null: none. */
  readonly rateLimit: RateLimiter | null;
  /** Exact host (lower case) or null. */
  readonly exactHost: string | null;
  /** For `*.example.com`: `.example.com`. */
  readonly hostSuffix: string | null;
  readonly path: string | null;
  readonly pathPrefix: string;
  /** pathPrefixSegments: the prefix without a trailing slash; a path must equal it or continue with `/`. */
  readonly segmentPrefix: string | null;
  readonly pathRegex: RegExp | null;
  readonly methods: ReadonlySet<string> | null;
  readonly headers: readonly CompiledHeaderMatch[];
  readonly query: readonly (readonly [string, string])[];
  readonly listener: string | null;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function compileHeaderMatch(match: HeaderMatch): CompiledHeaderMatch {
  if (match.value !== null) {
    const expected = match.value;
    return { name: match.name, test: (value) => value === expected };
  }
  if (match.regex !== null) {
    const pattern = compileRouteRegex(match.regex);
    return { name: match.name, test: (value) => value !== undefined && pattern.test(value) };
  }
  const present = match.present !== false;
  return { name: match.name, test: (value) => (value !== undefined) === present };
}

/** A route's `route` label in metrics and listings: its name, else its index (bounded by the config either way). */
export function routeLabel(route: RouteConfig, index: number): string {
  return route.name ?? String(index);
}

/** Gives a route the limiter its rateLimit needs (kept across config versions by whoever serves the table). */
export type RouteLimiters = (route: RouteConfig, label: string) => RateLimiter | null;

export function compileRoute(route: RouteConfig, index: number, limiters: RouteLimiters | null = null): CompiledRoute {
  const match = route.match;
  const label = routeLabel(route, index);
  const host = match.host;
  const wildcard = host !== null && host.startsWith('*.');
  return {
    index,
    label,
    config: route,
    pool: route.pool,
    rewrite: compileRewrite(route.rewrite),
    requestHeaders: compileHeaderRules(route.headers?.request ?? null),
    responseHeaders: compileHeaderRules(route.headers?.response ?? null),
    maxBodySize: route.maxBodySize,
    rateLimit: limiters === null ? null : limiters(route, label),
    policy:
      route.timeoutMs === null && route.retries === null && route.retryOn === null
        ? null
        : { timeoutMs: route.timeoutMs, retries: route.retries, retryOn: route.retryOn === null ? null : new Set(route.retryOn) },
    exactHost: host !== null && !wildcard ? host.toLowerCase() : null,
    hostSuffix: wildcard ? host.slice(1).toLowerCase() : null,
    path: match.path,
    pathPrefix: match.pathPrefix,
    segmentPrefix: match.pathPrefixSegments ? match.pathPrefix.replace(/\/+$/, '') : null,
    pathRegex: match.pathRegex === null ? null : compileRouteRegex(match.pathRegex),
    methods: match.methods === null ? null : new Set(match.methods),
    headers: match.headers.map(compileHeaderMatch),
    query: Object.entries(match.query),
    listener: match.listener,
  };
}

export function compileRoutes(routes: readonly RouteConfig[], limiters: RouteLimiters | null = null): CompiledRoute[] {
  return routes.map((route, index) => compileRoute(route, index, limiters));
}

/** The Host header without its port, lower-cased; IPv6 literals keep their brackets. */
export function hostWithoutPort(hostHeader: string | undefined): string {
  if (hostHeader === undefined) return '';
  let host = hostHeader;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    host = end === -1 ? host : host.slice(0, end + 1);
  } else {
    const colon = host.indexOf(':');
    if (colon !== -1) host = host.slice(0, colon);
  }
  return host.toLowerCase();
}

function pathMatches(route: CompiledRoute, path: string): boolean {
  if (route.path !== null && path !== route.path) return false;
  if (route.segmentPrefix !== null) {
    const prefix = route.segmentPrefix;
    if (prefix !== '' && !(path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47))) return false;
  } else if (!path.startsWith(route.pathPrefix)) return false;
  return route.pathRegex === null || route.pathRegex.test(path);
}

/** Decoded query parameters, parsed at most once per request and only when a route asks. */
class QueryView {
  private params: URLSearchParams | null = null;
  constructor(private readonly query: string) {}
  get(name: string): string | null {
    this.params ??= new URLSearchParams(this.query);
    return this.params.get(name);
  }
}

function matches(route: CompiledRoute, request: RouteRequest, query: QueryView | null): boolean {
  if (route.exactHost !== null && route.exactHost !== request.host) return false;
  if (route.hostSuffix !== null && !(request.host.length > route.hostSuffix.length && request.host.endsWith(route.hostSuffix))) return false;
  if (route.listener !== null && route.listener !== request.listener) return false;
  if (!pathMatches(route, request.path)) return false;
  if (route.methods !== null && !route.methods.has(request.method)) return false;
  for (const header of route.headers) {
    if (!header.test(headerText(request.headers[header.name]))) return false;
  }
  if (route.query.length > 0) {
    const view = query ?? new QueryView(request.query);
    for (const [name, value] of route.query) if (view.get(name) !== value) return false;
  }
  return true;
}

export function matchRoute(routes: readonly CompiledRoute[], request: RouteRequest): CompiledRoute | undefined {
  let query: QueryView | null = null;
  for (const route of routes) {
    if (route.query.length > 0) query ??= new QueryView(request.query);
    if (matches(route, request, query)) return route;
  }
  return undefined;
}

/**
 * A routing table's answer: the entry that serves the request (null when the route answers itself: redirect or
 * respond) and the route that chose it (null for the lone pool).
 */
export interface RouteLookup<E> {
  readonly entry: E | null;
  readonly maxBodySize: number;
  readonly route: CompiledRoute | null;
}

/** A routing table's lookup: the single pool when there are no routes, else the first matching route's pool. */
export function lookupRoute<E>(
  table: { readonly routes: readonly CompiledRoute[]; readonly pools: ReadonlyMap<string, E>; readonly fallback: E | null },
  request: RouteRequest,
): RouteLookup<E> | undefined {
  if (table.fallback !== null) return { entry: table.fallback, maxBodySize: 0, route: null };
  const route = matchRoute(table.routes, request);
  if (route === undefined) return undefined;
  if (route.pool === null) return { entry: null, maxBodySize: route.maxBodySize, route };
  const entry = table.pools.get(route.pool);
  return entry === undefined ? undefined : { entry, maxBodySize: route.maxBodySize, route };
}
