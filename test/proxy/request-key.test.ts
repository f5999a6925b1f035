// What affinity reads off a request: the hashOn value from a header, cookie, query parameter or the client address, and the sticky cookie.

import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { hashString } from '../../src/balancer/hash.js';
import { clientAddress, TrustedProxies } from '../../src/proxy/headers.js';
import { cookieValue, hashOnValue, pickRequestFor } from '../../src/proxy/request-key.js';
import { poolConfig } from '../balancer/pool-fixtures.js';

function req(url: string, headers: Record<string, string | string[]> = {}): IncomingMessage {
  return { url, headers } as unknown as IncomingMessage;
}

describe('cookieValue', () => {
  it('finds a cookie among others, exactly by name, unquoted; the first when repeated', () => {
    expect(cookieValue('a=1; SRV=abc; b=2', 'SRV')).toBe('abc');
    expect(cookieValue('SRV="quoted"', 'SRV')).toBe('quoted');
    expect(cookieValue('srv=lower; XSRV=x', 'SRV')).toBeUndefined();
    expect(cookieValue('SRV=first; SRV=second', 'SRV')).toBe('first');
    expect(cookieValue('SRV=', 'SRV')).toBe('');
    expect(cookieValue(undefined, 'SRV')).toBeUndefined();
    expect(cookieValue('garbage;;=x', 'SRV')).toBeUndefined();
  });
});

describe('hashOnValue', () => {
  const message = req('/cart?user=alice&user=bob&x=1', { 'x-user': 'u-42', cookie: 'session=s-9; other=1' });

  it('reads a header, a cookie, the first of a repeated query parameter, or the client address', () => {
    expect(hashOnValue({ header: 'x-user' }, message, '10.0.0.1')).toBe('u-42');
    expect(hashOnValue({ cookie: 'session' }, message, '10.0.0.1')).toBe('s-9');
    expect(hashOnValue({ query: 'user' }, message, '10.0.0.1')).toBe('alice');
    expect(hashOnValue('sourceIp', message, '10.0.0.1')).toBe('10.0.0.1');
  });

  it('treats an absent or empty value as no key (the request gets a random backend)', () => {
    expect(hashOnValue({ header: 'x-tenant' }, message, '')).toBeUndefined();
    expect(hashOnValue({ header: 'x-user' }, req('/', { 'x-user': '' }), '')).toBeUndefined();
    expect(hashOnValue({ cookie: 'nope' }, message, '')).toBeUndefined();
    expect(hashOnValue({ query: 'user' }, req('/cart'), '')).toBeUndefined();
    expect(hashOnValue({ query: 'user' }, req('/cart?user='), '')).toBeUndefined();
  });

  it('gives pickRequestFor the hash of the value and the sticky cookie as sent', () => {
    const pool = poolConfig({
      strategy: 'ring-hash',
      hashOn: { header: 'x-user' },
      sticky: { cookie: 'SRV', ttlMs: null, secure: false, httpOnly: true, sameSite: null },
    });
    expect(pickRequestFor(pool, req('/', { 'x-user': 'u-42', cookie: 'SRV=v1' }), '')).toEqual({ hashKey: hashString('u-42'), sticky: 'v1' });
    expect(pickRequestFor(pool, req('/'), '')).toEqual({ hashKey: undefined, sticky: undefined });
    expect(pickRequestFor(poolConfig(), req('/', { 'x-user': 'u-42' }), '')).toBeNull();
  });
});

describe('clientAddress', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8']);

  it('is the peer unless the peer is a trusted proxy', () => {
    expect(clientAddress('203.0.113.7', '198.51.100.1', trusted)).toBe('203.0.113.7');
    expect(clientAddress('203.0.113.7', undefined, new TrustedProxies([]))).toBe('203.0.113.7');
  });

  it('reads X-Forwarded-For from the right past trusted proxies, never trusting what the client wrote further left', () => {
    expect(clientAddress('10.0.0.2', '198.51.100.1', trusted)).toBe('198.51.100.1');
    expect(clientAddress('10.0.0.2', 'forged, 198.51.100.1, 10.0.0.9', trusted)).toBe('198.51.100.1');
    expect(clientAddress('10.0.0.2', ['203.0.113.1', '198.51.100.1'], trusted)).toBe('198.51.100.1');
    // Every hop a trusted proxy: the first one is the closest thing to a client there is.
    expect(clientAddress('10.0.0.2', '10.1.1.1, 10.0.0.3', trusted)).toBe('10.1.1.1');
    expect(clientAddress('10.0.0.2', '', trusted)).toBe('10.0.0.2');
  });
});
