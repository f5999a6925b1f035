// Path normalisation before routing: the table of what each request path becomes, and what is refused.

import { describe, expect, it } from 'vitest';
import { normalizePath, splitTarget } from '../../src/proxy/normalize-path.js';

describe('normalizePath', () => {
  it.each([
    ['/', '/'],
    ['/api/v1/users', '/api/v1/users'],
    ['/pub/../admin', '/admin'],
    ['/pub/./admin', '/pub/admin'],
    ['/../../admin', '/admin'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/../', '/a/'],
    ['//admin', '/admin'],
    ['/api///v1//x', '/api/v1/x'],
    ['/%61dmin', '/admin'],
    ['/%2e%2e/admin', '/admin'],
    ['/pub/%2E%2E/admin', '/admin'],
    ['/a%7eb%5fc%2Dd', '/a~b_c-d'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a/..b/c', '/a/..b/c'],
    ['/pub/%2e%2e%2f', null],
  ])('%s becomes %s', (input, expected) => {
    const result = normalizePath(input, true);
    if (expected === null) expect(result).toEqual({ error: 'encoded-slash', detail: '%2f' });
    else expect(result).toEqual({ path: expected });
  });

  it('refuses %2F and %5C by default and keeps them escaped (upper case) when allowed', () => {
    expect(normalizePath('/a%2Fb', true)).toEqual({ error: 'encoded-slash', detail: '%2F' });
    expect(normalizePath('/a%5cb', true)).toEqual({ error: 'encoded-slash', detail: '%5c' });
    expect(normalizePath('/a%2fb', false)).toEqual({ path: '/a%2Fb' });
    expect(normalizePath('/a/..%2F..%2Fadmin', false)).toEqual({ path: '/a/..%2F..%2Fadmin' });
  });

  it('refuses broken escapes', () => {
    expect(normalizePath('/a%zz', true)).toEqual({ error: 'bad-escape', detail: '%zz' });
    expect(normalizePath('/a%4', true)).toEqual({ error: 'bad-escape', detail: '%4' });
  });

  it('splits the query off untouched', () => {
    expect(splitTarget('/a/../b?x=/../y&z=%2F')).toEqual({ path: '/a/../b', query: '?x=/../y&z=%2F' });
    expect(splitTarget('/a')).toEqual({ path: '/a', query: '' });
  });
});
