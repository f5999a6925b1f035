// Route rewriting and answers: the path a backend receives, redirect Locations, fixed answers, and their validation.

import { describe, expect, it } from 'vitest';
import { validateReplicated } from '../../src/config/validate.js';
import { toPlainReplicated } from '../../src/config/plain.js';
import type { RouteConfig } from '../../src/config/schema.js';
import { compileRewrite } from '../../src/proxy/rewrite.js';
import { redirectLocation, respondAnswer } from '../../src/proxy/route-answer.js';

function routes(list: unknown[]): readonly RouteConfig[] {
  const result = validateReplicated({ routes: list, pools: { a: { backends: [] } } });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config.routes;
}

function problems(list: unknown[]): string[] {
  const result = validateReplicated({ routes: list, pools: { a: { backends: [] } } });
  return result.ok ? [] : result.problems.map((problem) => problem.message);
}

function rewritten(rewrite: unknown, path: string): string {
  const compiled = compileRewrite(routes([{ pool: 'a', rewrite }])[0]!.rewrite)!;
  return compiled.path!(path);
}

describe('path rewriting', () => {
  it.each([
    [{ stripPrefix: '/api' }, '/api/users', '/users'],
    [{ stripPrefix: '/api' }, '/api', '/'],
    [{ stripPrefix: '/api/' }, '/api/users', '/users'],
    [{ stripPrefix: '/api' }, '/other', '/other'],
    [{ replacePrefix: { from: '/v1', to: '/v2' } }, '/v1/items', '/v2/items'],
    [{ replacePrefix: { from: '/old', to: '/' } }, '/old/x', '/x'],
    [{ replacePrefix: { from: '/old', to: '/' } }, '/old', '/'],
    [{ replacePrefix: { from: '/a/', to: '/b/' } }, '/a/x', '/b/x'],
    [{ pathRegex: { pattern: '/users/([0-9]+)/profile', replacement: '/profiles/$1' } }, '/users/42/profile', '/profiles/42'],
    [{ pathRegex: { pattern: '/(?<kind>[a-z]+)/(.*)', replacement: '/$2/$<kind>' } }, '/img/a/b.png', '/a/b.png/img'],
    [{ pathRegex: { pattern: '/users/([0-9]+)', replacement: '/u/$1' } }, '/users/x', '/users/x'],
  ])('%j turns %s into %s', (rewrite, path, expected) => {
    expect(rewritten(rewrite, path)).toBe(expected);
  });

  it('refuses two path rules, a replacement group the pattern lacks, host with hostFromBackend, and rewrite without a pool', () => {
    expect(problems([{ pool: 'a', rewrite: { stripPrefix: '/a', replacePrefix: { from: '/a', to: '/b' } } }])).toEqual([expect.stringContaining('at most one of stripPrefix, replacePrefix and pathRegex')]);
    expect(problems([{ pool: 'a', rewrite: { pathRegex: { pattern: '/(x)', replacement: '/$2' } } }])).toEqual([expect.stringContaining('refers to $2 but the pattern has 1 capture group')]);
    expect(problems([{ pool: 'a', rewrite: { host: 'x', hostFromBackend: true } }])).toEqual([expect.stringContaining('host or hostFromBackend, not both')]);
    expect(problems([{ respond: { status: 200 }, rewrite: { stripPrefix: '/a' } }])).toEqual([expect.stringContaining('a route with respond forwards nothing')]);
    expect(problems([{ pool: 'a', rewrite: { host: 'bad host' } }])).toEqual([expect.stringContaining('must be a host name')]);
    expect(problems([{ pool: 'a', rewrite: { pathRegex: { pattern: '(a+)+', replacement: '/' } } }])).toEqual([expect.stringContaining('nested quantifiers')]);
  });
});

describe('redirects and fixed answers', () => {
  const source = { encrypted: false, hostHeader: 'www.example.com:8080', path: '/a/b', query: '?x=1' };

  function location(redirect: unknown, from = source): string {
    return redirectLocation(routes([{ redirect }])[0]!.redirect!, from);
  }

  it('builds the Location from the parts given and the request for the rest', () => {
    expect(location({ scheme: 'https' })).toBe('https://www.example.com/a/b?x=1');
    expect(location({ scheme: 'https', port: 8443 })).toBe('https://www.example.com:8443/a/b?x=1');
    expect(location({ host: 'example.org' })).toBe('http://example.org/a/b?x=1');
    expect(location({ path: '/new', stripQuery: true })).toBe('http://www.example.com:8080/new');
    expect(location({ port: 80 })).toBe('http://www.example.com/a/b?x=1');
    expect(location({ path: '/n' }, { encrypted: true, hostHeader: '[::1]:8443', path: '/', query: '' })).toBe('https://[::1]:8443/n');
  });

  it('defaults to 302, refuses other statuses and a redirect to itself', () => {
    expect(routes([{ redirect: { scheme: 'https' } }])[0]!.redirect!.status).toBe(302);
    expect(problems([{ redirect: { scheme: 'https', status: 200 } }])).toEqual([expect.stringContaining('must be one of 301, 302, 303, 307, 308')]);
    expect(problems([{ redirect: { status: 301 } }])).toEqual([expect.stringContaining('redirects to itself')]);
  });

  it('exactly one of pool, redirect and respond', () => {
    expect(problems([{ match: { path: '/x' } }])).toEqual([expect.stringContaining('set exactly one of pool, redirect and respond (got none)')]);
    expect(problems([{ pool: 'a', respond: { status: 200 } }])).toEqual([expect.stringContaining('(got pool, respond)')]);
  });

  it('a fixed answer has its body, type and length; 204 has none', () => {
    const answer = respondAnswer(routes([{ respond: { status: 403, body: 'forbidden\n' } }])[0]!.respond!);
    expect(answer.status).toBe(403);
    expect(answer.headers).toEqual(['content-length', '10', 'content-type', 'text/plain; charset=utf-8']);
    expect(answer.body.toString()).toBe('forbidden\n');
    expect(respondAnswer(routes([{ respond: { status: 204 } }])[0]!.respond!).headers).toEqual([]);
    expect(problems([{ respond: { status: 204, body: 'x' } }])).toEqual([expect.stringContaining('a 204 answer has no body')]);
  });

  it('the file form written back validates to the same routes', () => {
    const list = [
      { name: 'r', redirect: { scheme: 'https', host: 'example.org', port: 8443, path: '/x', stripQuery: true, status: 308 } },
      { redirect: { scheme: 'https' } },
      { respond: { status: 200, body: 'ok', contentType: 'application/json' } },
      { respond: { status: 404, body: 'no' } },
      { respond: { status: 204 } },
      { pool: 'a', rewrite: { stripPrefix: '/api', host: 'internal:8080' } },
      { pool: 'a', rewrite: { replacePrefix: { from: '/a', to: '/b' }, hostFromBackend: true } },
      { pool: 'a', rewrite: { pathRegex: { pattern: '/(x)', replacement: '/$1' } } },
    ];
    const first = validateReplicated({ routes: list, pools: { a: { backends: [] } } });
    if (!first.ok) throw new Error(JSON.stringify(first.problems));
    const again = validateReplicated(JSON.parse(JSON.stringify(toPlainReplicated(first.config))));
    expect(again.ok && again.config).toEqual(first.config);
  });
});
