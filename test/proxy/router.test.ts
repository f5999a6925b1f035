// Route matching: every kind of condition, first match in file order, and the regex subset refused at validation.

import { describe, expect, it } from 'vitest';
import { validateReplicated } from '../../src/config/validate.js';
import { compileRoutes, IncomingRouteRequest, lookupRoute, matchRoute, type RouteRequest } from '../../src/proxy/router.js';
import { unsafeRegexReason } from '../../src/config/route-regex.js';

function table(routes: unknown[]) {
  const result = validateReplicated({ routes, pools: { a: { backends: [] }, b: { backends: [] } } });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return compileRoutes(result.config.routes);
}

function request(path: string, extra: Partial<RouteRequest> = {}): RouteRequest {
  const mark = path.indexOf('?');
  return {
    host: 'example.com',
    path: mark === -1 ? path : path.slice(0, mark),
    query: mark === -1 ? '' : path.slice(mark),
    method: 'GET',
    headers: {},
    listener: 'default',
    ...extra,
  };
}

function label(routes: ReturnType<typeof table>, req: RouteRequest): string | undefined {
  return matchRoute(routes, req)?.label;
}

describe('route matching', () => {
  it('exact path, plain prefix and segment prefix', () => {
    const routes = table([
      { name: 'exact', match: { path: '/health' }, pool: 'a' },
      { name: 'segments', match: { pathPrefix: '/api', pathPrefixSegments: true }, pool: 'a' },
      { name: 'plain', match: { pathPrefix: '/app' }, pool: 'a' },
    ]);
    expect(label(routes, request('/health'))).toBe('exact');
    expect(label(routes, request('/health/x'))).toBeUndefined();
    expect(label(routes, request('/api'))).toBe('segments');
    expect(label(routes, request('/api/x'))).toBe('segments');
    expect(label(routes, request('/apiary'))).toBeUndefined();
    expect(label(routes, request('/ap'))).toBeUndefined();
    expect(label(routes, request('/application'))).toBe('plain');
  });

  it('a segment prefix written with a trailing slash, and / with segments, behave', () => {
    const routes = table([
      { name: 'api', match: { pathPrefix: '/api/', pathPrefixSegments: true }, pool: 'a' },
      { name: 'all', match: { pathPrefix: '/', pathPrefixSegments: true }, pool: 'b' },
    ]);
    expect(label(routes, request('/api'))).toBe('api');
    expect(label(routes, request('/apiary'))).toBe('all');
  });

  it('pathRegex is anchored at both ends', () => {
    const routes = table([{ name: 'users', match: { pathRegex: '/users/[0-9]+' }, pool: 'a' }]);
    expect(label(routes, request('/users/42'))).toBe('users');
    expect(label(routes, request('/users/42/x'))).toBeUndefined();
    expect(label(routes, request('/x/users/42'))).toBeUndefined();
  });

  it('methods, headers (exact, regex, present, absent) and query must all hold', () => {
    const routes = table([
      { name: 'canary', match: { pathPrefix: '/', headers: { 'X-Canary': 'yes' } }, pool: 'b' },
      { name: 'post', match: { methods: ['POST', 'PUT'] }, pool: 'a' },
      {
        name: 'mobile',
        match: { headers: [{ name: 'User-Agent', regex: '.*Mobile.*' }, { name: 'x-debug', present: false }] },
        pool: 'a',
      },
      { name: 'traced', match: { headers: [{ name: 'traceparent', present: true }] }, pool: 'a' },
      { name: 'beta', match: { query: { beta: '1', name: 'a b' } }, pool: 'a' },
      { name: 'rest', pool: 'a' },
    ]);
    expect(label(routes, request('/', { headers: { 'x-canary': 'yes' } }))).toBe('canary');
    expect(label(routes, request('/', { headers: { 'x-canary': 'Yes' } }))).toBe('rest');
    expect(label(routes, request('/', { method: 'PUT' }))).toBe('post');
    expect(label(routes, request('/', { headers: { 'user-agent': 'Foo Mobile/1' } }))).toBe('mobile');
    expect(label(routes, request('/', { headers: { 'user-agent': 'Foo Mobile/1', 'x-debug': '1' } }))).toBe('rest');
    expect(label(routes, request('/', { headers: { traceparent: '00-abc' } }))).toBe('traced');
    expect(label(routes, request('/?beta=1&name=a+b'))).toBe('beta');
    expect(label(routes, request('/?beta=1&name=a%20b'))).toBe('beta');
    expect(label(routes, request('/?beta=1'))).toBe('rest');
    expect(label(routes, request('/?beta=2&name=a+b'))).toBe('rest');
  });

  it('host exact and wildcard, and first match in file order wins; unnamed routes are labelled by index', () => {
    const routes = table([
      { match: { host: 'api.example.com' }, pool: 'a' },
      { match: { host: '*.example.com' }, pool: 'b' },
      { match: { pathPrefix: '/' }, pool: 'a' },
    ]);
    expect(label(routes, request('/', { host: 'api.example.com' }))).toBe('0');
    expect(label(routes, request('/', { host: 'www.example.com' }))).toBe('1');
    expect(label(routes, request('/', { host: 'example.com' }))).toBe('2');
  });
});

describe('match.listener', () => {
  it('takes only requests that arrived on the named listener', () => {
    const routes = table([
      { name: 'internal', match: { listener: 'internal' }, pool: 'a' },
      { name: 'rest', pool: 'b' },
    ]);
    expect(label(routes, request('/', { listener: 'internal' }))).toBe('internal');
    expect(label(routes, request('/', { listener: 'default' }))).toBe('rest');
  });
});

describe('route validation', () => {
  function problems(routes: unknown[]): string[] {
    const result = validateReplicated({ routes, pools: { a: { backends: [] } } });
    return result.ok ? [] : result.problems.map((problem) => problem.message);
  }

  it.each(['(a+)+', '^/(a|aa)*$', '(x*)*', '/([a-z]+/)+end', '\\d*\\d*', '.*.*', '([a-z]+)+$'])('refuses the catastrophic pattern %s', (pattern) => {
    expect(problems([{ match: { pathRegex: pattern }, pool: 'a' }])).toEqual([expect.stringMatching(/^routes\[0\]\.match\.pathRegex: .*(nested|in a row)/)]);
  });

  it.each(['^/users/(\\d+)(/.*)?$', '/v[0-9]+/items/[^/]+', '/(get|list)/x', '/files/.*\\.(json|xml)?', '/a{2,5}', '/x+/y+'])('accepts the safe pattern %s', (pattern) => {
    expect(unsafeRegexReason(pattern)).toBeNull();
  });

  it('refuses backreferences, lookaround and invalid syntax with a clear message', () => {
    expect(unsafeRegexReason('(a)\\1')).toMatch(/backreference/);
    expect(unsafeRegexReason('(?!admin).*')).toMatch(/lookahead/);
    expect(unsafeRegexReason('([a-z')).toMatch(/not a valid regular expression/);
  });

  it('the classic catastrophic pattern ^(a+)+$ is refused', () => {
    expect(unsafeRegexReason('^(a+)+$')).not.toBeNull();
  });

  it('names what is wrong with match keys', () => {
    expect(problems([{ match: { pathPrefix: '/api/../x' }, pool: 'a' }])).toEqual([expect.stringContaining('would never match')]);
    expect(problems([{ match: { path: '/a//b' }, pool: 'a' }])).toEqual([expect.stringContaining('write "/a/b"')]);
    expect(problems([{ match: { pathPrefixSegments: true }, pool: 'a' }])).toEqual([expect.stringContaining('applies to pathPrefix')]);
    expect(problems([{ match: { methods: ['get'] }, pool: 'a' }])).toEqual([expect.stringContaining('upper-case HTTP method')]);
    expect(problems([{ match: { methods: [] }, pool: 'a' }])).toEqual([expect.stringContaining('at least one method')]);
    expect(problems([{ match: { headers: [{ name: 'x', value: 'a', present: true }] }, pool: 'a' }])).toEqual([expect.stringContaining('exactly one of value, regex and present')]);
    expect(problems([{ name: 'x', pool: 'a' }, { name: 'x', pool: 'a' }])).toEqual([expect.stringContaining('duplicate route name "x"')]);
  });

  it('the file form written back validates to the same routes', async () => {
    const { toPlainReplicated } = await import('../../src/config/plain.js');
    const routes = [
      { name: 'r', match: { host: '*.example.com', path: '/x', pathPrefix: '/', pathPrefixSegments: true, pathRegex: '/x', methods: ['GET'], headers: [{ name: 'a', present: false }], query: { q: '1' }, listener: 'edge' }, pool: 'a' },
      { match: { headers: { 'X-A': 'b' } }, pool: 'a' },
    ];
    const first = validateReplicated({ routes, pools: { a: { backends: [] } } });
    if (!first.ok) throw new Error(JSON.stringify(first.problems));
    const again = validateReplicated(toPlainReplicated(first.config));
    expect(again.ok && again.config).toEqual(first.config);
  });

  it("a listener's request is matched by its Host without the port, in any case, worked out only when a route asks", () => {
    const routes = table([{ name: 'api', match: { host: 'api.example.com' }, pool: 'a' }]);
    const incoming = (host: string | undefined) => new IncomingRouteRequest(host, '/', '', 'GET', {}, 'default');
    expect(label(routes, incoming('API.Example.com:8443'))).toBe('api');
    expect(label(routes, incoming('api.example.com'))).toBe('api');
    expect(label(routes, incoming('other.example.com'))).toBeUndefined();
    expect(label(routes, incoming(undefined))).toBeUndefined();
    expect(incoming('[::1]:8080').host).toBe('[::1]');
    // The lone pool (no routes) never needs the host: it is not worked out.
    const lone = incoming('Lone.Example');
    expect(lookupRoute({ routes: [], pools: new Map(), fallback: 'pool' }, lone)?.entry).toBe('pool');
    expect((lone as unknown as { lowerCaseHost: string | null }).lowerCaseHost).toBeNull();
    expect(lone.host).toBe('lone.example');
  });
});
