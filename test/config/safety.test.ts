// The safety check every config edit passes: which changes take traffic down, and which merely look alike.

import { describe, expect, it } from 'vitest';
import { hasReplicatedSections, unsafeChanges } from '../../src/config/safety.js';
import { validateReplicated } from '../../src/config/validate.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';

function config(value: unknown): ReplicatedConfig {
  const result = validateReplicated(value);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

const b = (port: number, id: string) => ({ url: `http://127.0.0.1:${port}`, id });
const twoPools = config({
  routes: [
    { match: { pathPrefix: '/api' }, pool: 'api' },
    { match: { pathPrefix: '/' }, pool: 'web' },
  ],
  pools: { api: { backends: [b(1, 'a')] }, web: { backends: [b(2, 'b'), b(3, 'c')] } },
});
const onePool = config({ routes: [], pools: { web: { backends: [b(2, 'b')] } } });

describe('unsafeChanges', () => {
  it.each([
    ['removing one of two backends', twoPools, { ...rawOf(twoPools), pools: { ...rawOf(twoPools).pools, web: { backends: [b(2, 'b')] } } }, []],
    ['adding a pool and a route', onePool, { routes: [{ match: { pathPrefix: '/x' }, pool: 'x' }, { pool: 'web' }], pools: { web: { backends: [b(2, 'b')] }, x: { backends: [b(4, 'x')] } } }, []],
    ['replacing every backend of a pool at once', onePool, { routes: [], pools: { web: { backends: [b(9, 'z')] } } }, []],
    ['dropping routes that all went to the one pool left', config({ routes: [{ pool: 'web' }], pools: { web: { backends: [b(2, 'b')] } } }), { routes: [], pools: { web: { backends: [b(2, 'b')] } } }, []],
    ['an unrouted pool left empty', twoPools, { ...rawOf(twoPools), pools: { ...rawOf(twoPools).pools, spare: { backends: [] } } }, []],
  ])('allows %s', (_name, before, after, expected) => {
    expect(unsafeChanges(before, config(after))).toEqual(expected);
  });

  it('refuses emptying a routed pool, naming the pool and the routes that send to it', () => {
    const reasons = unsafeChanges(twoPools, config({ ...rawOf(twoPools), pools: { ...rawOf(twoPools).pools, web: { backends: [] } } }));
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain('pool "web" would have no backends');
    expect(reasons[0]).toContain('routes[1] (pathPrefix /)');
  });

  it('refuses emptying the only pool when there are no routes', () => {
    expect(unsafeChanges(onePool, config({ routes: [], pools: { web: { backends: [] } } }))).toEqual([
      expect.stringContaining('pool "web" would have no backends while every request (no routes, one pool)'),
    ]);
  });

  it('refuses removing every pool, and every route when the routes went to pools that are gone', () => {
    expect(unsafeChanges(twoPools, config({ routes: [], pools: {} }))).toEqual([expect.stringContaining('every pool would be removed (api, web)')]);
    const routesGone = unsafeChanges(twoPools, config({ routes: [], pools: { web: { backends: [b(2, 'b')] } } }));
    expect(routesGone).toEqual([expect.stringContaining('every route would be removed (2, to api, web): all traffic would go to pool "web"')]);
  });

  it('refuses routing to a new empty pool, but not keeping a routed pool that was already empty', () => {
    const toEmpty = config({ routes: [{ match: { pathPrefix: '/new' }, pool: 'fresh' }, { pool: 'web' }], pools: { web: { backends: [b(2, 'b')] }, fresh: { backends: [] } } });
    expect(unsafeChanges(onePool, toEmpty)).toEqual([expect.stringContaining('pool "fresh" would have no backends')]);
    const laterEdit = config({ ...rawOf(toEmpty), pools: { ...rawOf(toEmpty).pools, web: { backends: [b(2, 'b'), b(3, 'c')] } } });
    expect(unsafeChanges(toEmpty, laterEdit)).toEqual([]);
  });

  it('allows anything when nothing was applied before', () => {
    expect(unsafeChanges(null, config({ routes: [], pools: {} }))).toEqual([]);
  });
});

describe('hasReplicatedSections', () => {
  it.each([
    ['', false],
    ['# only a comment\n', false],
    ['listen: 127.0.0.1:8080\nadmin:\n  token: x\n', false],
    ['[1, 2]\n', false],
    ['pools: {}\n', true],
    ['listen: 127.0.0.1:8080\nroutes: []\n', true],
    ['listen: 127.0.0.1:8080\npools:\n  web:\n    backends: [\n', true],
  ])('%j -> %s', (text, expected) => {
    expect(hasReplicatedSections(text)).toBe(expected);
  });
});

/** The plain form of a validated config, to derive edits from. */
function rawOf(value: ReplicatedConfig): { routes: unknown[]; pools: Record<string, unknown> } {
  return {
    routes: value.routes.map((route) => ({ match: { ...(route.match.host === null ? {} : { host: route.match.host }), pathPrefix: route.match.pathPrefix }, pool: route.pool })),
    pools: Object.fromEntries(Object.entries(value.pools).map(([name, pool]) => [name, { backends: pool.backends.map((backend) => ({ url: backend.url, id: backend.id })) }])),
  };
}
