// Token buckets per client: burst, refill, the LRU bound on keys, the 429's numbers, and whose requests share a bucket.

import type { IncomingMessage } from 'node:http';
import { describe, expect, test } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { RateLimitConfig } from '../../src/config/schema.js';
import { RateLimiter, RateLimiters } from '../../src/proxy/rate-limit.js';
import { clientAddress, TrustedProxies } from '../../src/proxy/headers.js';
import { rateLimited, writeErrorResponse } from '../../src/proxy/error-status.js';

function limit(overrides: Partial<RateLimitConfig> = {}): RateLimitConfig {
  return { requestsPerSecond: 2, burst: 4, by: { kind: 'sourceIp' }, maxKeys: 100_000, ...overrides };
}

function request(remoteAddress: string, headers: Record<string, string> = {}): IncomingMessage {
  return { socket: { remoteAddress }, headers } as unknown as IncomingMessage;
}

/** The client address as a listener with no trusted proxies judges it. */
const peerOf = (req: IncomingMessage): string => clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'], new TrustedProxies([]));

describe('a token bucket per key', () => {
  test('lets a burst through, refuses the next, and refills at the rate', () => {
    const clock = new FakeClock();
    const counted: string[] = [];
    const limiter = new RateLimiter('route "api"', limit(), clock, (route) => counted.push(route));
    for (let i = 0; i < 4; i++) expect(limiter.take('a', 'api')).toBeNull();
    const refused = limiter.take('a', 'api');
    // 2 per second, 4 at once: a token in 0.5 s (Retry-After rounds up to 1), full again in 2 s, the burst refills in 2 s.
    expect(refused).toEqual({ limit: 4, remaining: 0, resetSeconds: 2, retryAfterSeconds: 1, windowSeconds: 2 });
    expect(counted).toEqual(['api']);
    // Another key has its own bucket.
    expect(limiter.take('b', 'api')).toBeNull();
    clock.advance(499);
    expect(limiter.take('a', 'api')).not.toBeNull();
    clock.advance(2);
    expect(limiter.take('a', 'api')).toBeNull();
    expect(limiter.take('a', 'api')).not.toBeNull();
    // Never more than the burst, however long the client was away.
    clock.advance(60_000);
    for (let i = 0; i < 4; i++) expect(limiter.take('a', 'api')).toBeNull();
    expect(limiter.take('a', 'api')).not.toBeNull();
    expect(counted).toEqual(['api', 'api', 'api', 'api']);
  });

  test('a slow rate says how long to wait', () => {
    const limiter = new RateLimiter('pool "web"', limit({ requestsPerSecond: 0.1, burst: 2 }), new FakeClock(), () => {});
    limiter.take('a', '');
    limiter.take('a', '');
    expect(limiter.take('a', '')).toEqual({ limit: 2, remaining: 0, resetSeconds: 20, retryAfterSeconds: 10, windowSeconds: 20 });
  });

  test('remembers at most maxKeys clients, forgetting the least recently seen', () => {
    const limiter = new RateLimiter('route "0"', limit({ burst: 1, requestsPerSecond: 0.001, maxKeys: 4 }), new FakeClock(), () => {});
    for (const key of ['a', 'b', 'c']) expect(limiter.take(key, '0')).toBeNull();
    // a is used again (refused): now b is the least recent.
    expect(limiter.take('a', '0')).not.toBeNull();
    expect(limiter.take('d', '0')).toBeNull();
    expect(limiter.size).toBeLessThanOrEqual(4);
    // b was forgotten, so it starts with a full bucket; a (seen since) and d were kept and stay empty.
    expect(limiter.take('b', '0')).toBeNull();
    for (const key of ['a', 'd']) expect(limiter.take(key, '0'), key).not.toBeNull();
    expect(limiter.size).toBeLessThanOrEqual(4);
  });

  test('a flood of addresses stays within maxKeys, and a client that keeps coming keeps its bucket', () => {
    const limiter = new RateLimiter('route "0"', limit({ maxKeys: 1000, burst: 1, requestsPerSecond: 0.001 }), new FakeClock(), () => {});
    expect(limiter.take('regular', '0')).toBeNull();
    for (let i = 0; i < 50_000; i++) {
      limiter.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, '0');
      if (i % 100 === 0) expect(limiter.take('regular', '0'), `after ${i} new addresses`).not.toBeNull();
      expect(limiter.size).toBeLessThanOrEqual(1000);
    }
    expect(limiter.size).toBeGreaterThanOrEqual(500);
  });
});

describe('whose requests share a bucket', () => {
  test('by sourceIp: the peer address, IPv4-mapped or not', () => {
    const limiter = new RateLimiter('r', limit(), new FakeClock(), () => {});
    expect(limiter.keyOf(request('::ffff:10.0.0.1'), peerOf)).toBe(limiter.keyOf(request('10.0.0.1'), peerOf));
    expect(limiter.keyOf(request('10.0.0.1'), peerOf)).not.toBe(limiter.keyOf(request('10.0.0.2'), peerOf));
  });

  test('by header: its value; without it, the address (never one bucket for everyone without the header)', () => {
    const limiter = new RateLimiter('r', limit({ by: { kind: 'header', name: 'x-api-key' } }), new FakeClock(), () => {});
    const keyed = limiter.keyOf(request('10.0.0.1', { 'x-api-key': 'k1' }), peerOf);
    expect(limiter.keyOf(request('10.0.0.2', { 'x-api-key': 'k1' }), peerOf)).toBe(keyed);
    expect(limiter.keyOf(request('10.0.0.1', { 'x-api-key': 'k2' }), peerOf)).not.toBe(keyed);
    expect(limiter.keyOf(request('10.0.0.1'), peerOf)).not.toBe(limiter.keyOf(request('10.0.0.2'), peerOf));
    // A header value cannot stand for an address, nor an address for a header value.
    expect(limiter.keyOf(request('10.0.0.1', { 'x-api-key': '10.0.0.1' }), peerOf)).not.toBe(limiter.keyOf(request('10.0.0.1'), peerOf));
    // A huge value costs no more than a bounded key.
    expect(limiter.keyOf(request('10.0.0.1', { 'x-api-key': 'x'.repeat(100_000) }), peerOf).length).toBeLessThan(300);
  });

  test('the client address behind trusted proxies: mapped IPv4 is plain IPv4, and garbage ends the walk at the last trusted hop', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8']);
    expect(clientAddress('::ffff:10.0.0.1', '::ffff:203.0.113.9', trusted)).toBe('203.0.113.9');
    expect(clientAddress('::ffff:198.51.100.1', undefined, trusted)).toBe('198.51.100.1');
    expect(clientAddress('10.0.0.1', 'garbage, 10.0.0.7', trusted)).toBe('10.0.0.7');
    expect(clientAddress('10.0.0.1', '203.0.113.9, not-an-address', trusted)).toBe('10.0.0.1');
    // A request behind a trusted proxy keys on its client, not on the proxy.
    const limiter = new RateLimiter('r', limit(), new FakeClock(), () => {});
    const behind = (req: IncomingMessage): string => clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for'], trusted);
    expect(limiter.keyOf(request('10.0.0.1', { 'x-forwarded-for': '203.0.113.9' }), behind)).toBe(limiter.keyOf(request('203.0.113.9'), behind));
  });
});

describe('limiters across config versions', () => {
  test('an unchanged limit keeps its buckets; a changed one starts afresh; a removed one is forgotten', () => {
    const limiters = new RateLimiters(new FakeClock(), () => {});
    const first = limiters.get('route "api"', limit({ burst: 1 }))!;
    first.take('a', 'api');
    expect(limiters.get('route "api"', limit({ burst: 1 }))).toBe(first);
    const changed = limiters.get('route "api"', limit({ burst: 2 }))!;
    expect(changed).not.toBe(first);
    expect(limiters.get('pool "web"', null)).toBeNull();
    limiters.retain([]);
    expect(limiters.get('route "api"', limit({ burst: 2 }))).not.toBe(changed);
  });
});

describe('the 429', () => {
  test('carries Retry-After and the RateLimit-* fields of the draft', () => {
    const reply = rateLimited('route "api"', { limit: 5, remaining: 0, resetSeconds: 3, retryAfterSeconds: 1, windowSeconds: 3 });
    const written: { status?: number; headers?: Record<string, string | number>; body?: string } = {};
    const res = {
      headersSent: false,
      req: { headers: { 'x-request-id': 'rid' } },
      writeHead(status: number, headers: Record<string, string | number>) {
        written.status = status;
        written.headers = headers;
      },
      end(body: string) {
        written.body = body;
      },
    };
    writeErrorResponse(res as never, reply, false);
    expect(written.status).toBe(429);
    expect(written.headers).toMatchObject({
      'retry-after': '1',
      'ratelimit-limit': '5',
      'ratelimit-remaining': '0',
      'ratelimit-reset': '3',
      'ratelimit-policy': '5;w=3',
      'x-request-id': 'rid',
    });
    expect(JSON.parse(written.body!)).toEqual({
      error: { code: 'RATE_LIMITED', message: 'too many requests: the rate limit of route "api" allows each client 5 requests per 3 s; retry in 1 s', requestId: 'rid' },
    });
  });
});
