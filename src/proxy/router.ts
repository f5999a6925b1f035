// Compiles routes into a matcher: first route in file order whose host and path prefix match wins.

import type { RouteConfig } from '../config/schema.js';

export interface CompiledRoute {
  readonly index: number;
  readonly pool: string;
  readonly maxBodySize: number;
  /** Exact host (lower case) or null. */
  readonly exactHost: string | null;
  /** For `*.example.com`: `.example.com`. */
  readonly hostSuffix: string | null;
  readonly pathPrefix: string;
}

export function compileRoutes(routes: readonly RouteConfig[]): CompiledRoute[] {
  return routes.map((route, index) => {
    const host = route.match.host;
    const wildcard = host !== null && host.startsWith('*.');
    return {
      index,
      pool: route.pool,
      maxBodySize: route.maxBodySize,
      exactHost: host !== null && !wildcard ? host.toLowerCase() : null,
      hostSuffix: wildcard ? host.slice(1).toLowerCase() : null,
      pathPrefix: route.match.pathPrefix,
    };
  });
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

export function matchRoute(routes: readonly CompiledRoute[], host: string, path: string): CompiledRoute | undefined {
  for (const route of routes) {
    if (route.exactHost !== null && route.exactHost !== host) continue;
    if (route.hostSuffix !== null && !(host.length > route.hostSuffix.length && host.endsWith(route.hostSuffix))) continue;
    if (!path.startsWith(route.pathPrefix)) continue;
    return route;
  }
  return undefined;
}

/** A routing table's lookup: the single pool when there are no routes, else the first matching route's pool. */
export function lookupRoute<E>(
  table: { readonly routes: readonly CompiledRoute[]; readonly pools: ReadonlyMap<string, E>; readonly fallback: E | null },
  host: string,
  path: string,
): { entry: E; maxBodySize: number } | undefined {
  if (table.fallback !== null) return { entry: table.fallback, maxBodySize: 0 };
  const route = matchRoute(table.routes, host, path);
  if (route === undefined) return undefined;
  const entry = table.pools.get(route.pool);
  return entry === undefined ? undefined : { entry, maxBodySize: route.maxBodySize };
}
