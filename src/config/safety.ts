// Which replicated config changes would take traffic down: the check every edit (file, API, CLI, rollback) passes unless forced.

/*
 * A replicated config is the whole fleet's config, so a slip that HAProxy or nginx would break on
 * one box breaks every node at once. Three changes are refused unless the caller forces them:
 * - a pool that routes send traffic to is left with no backends (every request it gets would be a 503);
 * - every route is removed (what they routed would get 404), unless the one pool left then takes all
 *   traffic and every removed route already went to it, which changes nothing that was served;
 * - every pool is removed (every request would get 404).
 * A change that only keeps an existing problem (a routed pool that was already empty) is not refused:
 * the check is about what the change breaks, not about what was broken before it.
 * Pure and deterministic: the state machine runs it at apply time on every node alike.
 */

import { isMap, isScalar, parseDocument } from 'yaml';
import type { ReplicatedConfig, RouteConfig } from './schema.js';

/** How a route is named in messages: its position and what it matches. */
function describeRoute(route: RouteConfig, index: number): string {
  const match = route.match;
  const parts = [
    route.name === null ? null : `name ${route.name}`,
    match.host === null ? null : `host ${match.host}`,
    match.path === null ? null : `path ${match.path}`,
    match.path !== null && match.pathPrefix === '/' ? null : `pathPrefix ${match.pathPrefix}`,
    match.pathRegex === null ? null : `pathRegex ${match.pathRegex}`,
  ].filter((part): part is string => part !== null);
  return `routes[${index}] (${parts.join(', ')})`;
}

/** Pool name -> the routes that send traffic to it; with no routes, the only pool takes everything. */
function routedPools(config: ReplicatedConfig): Map<string, string[]> {
  const routed = new Map<string, string[]>();
  const names = Object.keys(config.pools);
  if (config.routes.length === 0) {
    if (names.length === 1) routed.set(names[0]!, ['every request (no routes, one pool)']);
    return routed;
  }
  config.routes.forEach((route, index) => {
    const pool = (route as { pool?: unknown }).pool;
    if (typeof pool !== 'string') return;
    const list = routed.get(pool) ?? [];
    list.push(describeRoute(route, index));
    routed.set(pool, list);
  });
  return routed;
}

/** Backends the pool names, counting DNS discovery as one: what it finds cannot be known here, and is not nothing. */
function backendCount(config: ReplicatedConfig, pool: string): number {
  const found = config.pools[pool];
  if (found === undefined) return 0;
  return found.backends.length + ((found.discovery?.name ?? null) === null ? 0 : 1);
}

/**
 * Every way `after` would stop serving what `before` served, one sentence each; empty when the change is
 * safe. `before` null (nothing applied yet) makes every change safe: there is nothing to take down.
 */
export function unsafeChanges(before: ReplicatedConfig | null, after: ReplicatedConfig): string[] {
  if (before === null) return [];
  const reasons: string[] = [];
  const beforePools = Object.keys(before.pools);
  const afterPools = Object.keys(after.pools);
  if (beforePools.length > 0 && afterPools.length === 0) {
    reasons.push(`every pool would be removed (${beforePools.join(', ')}): every request would get 404 NO_ROUTE`);
  }
  if (before.routes.length > 0 && after.routes.length === 0 && afterPools.length > 0) {
    const only = afterPools.length === 1 ? afterPools[0]! : null;
    const allWentThere = only !== null && before.routes.every((route) => route.pool === only);
    if (!allWentThere) {
      const targets = [...new Set(before.routes.map((route) => route.pool ?? (route.redirect !== null ? 'a redirect' : 'a fixed answer')))].join(', ');
      reasons.push(`every route would be removed (${before.routes.length}, to ${targets}): all traffic would go to pool "${afterPools[0]!}" instead`);
    }
  }
  const wasRouted = routedPools(before);
  for (const [pool, routes] of routedPools(after)) {
    if (after.pools[pool] === undefined || backendCount(after, pool) > 0) continue;
    // Already routed and already empty before this change: the change does not make it worse.
    if (wasRouted.has(pool) && backendCount(before, pool) === 0 && before.pools[pool] !== undefined) continue;
    reasons.push(`pool "${pool}" would have no backends while ${routes.join(', ')} sends traffic to it: those requests would get 503`);
  }
  return reasons;
}

/** The sentence an unforced unsafe change is refused with; `howToForce` names the way for the caller's interface. */
export function unsafeChangeMessage(reasons: readonly string[], howToForce: string): string {
  return `refused: ${reasons.join('; ')}. If this is what you want, ${howToForce}`;
}

/** How to force, per interface, in refusals. */
export const FORCE_HINT = {
  api: 'repeat the request with ?force=true (CLI: --force)',
  file: 'make the change through the admin API with ?force=true or the CLI with --force (a file edit cannot be forced)',
} as const;

/**
 * Whether a config file's text says anything about the replicated config: an empty file, a file of comments,
 * or one cut short before `routes:` and `pools:` is a file being written or damaged, never an edit of them.
 */
export function hasReplicatedSections(text: string): boolean {
  let root: unknown;
  try {
    root = parseDocument(text, { prettyErrors: false }).contents;
  } catch {
    return false;
  }
  if (!isMap(root)) return false;
  return root.items.some((pair) => {
    const key = isScalar(pair.key) ? pair.key.value : pair.key;
    return key === 'routes' || key === 'pools';
  });
}
