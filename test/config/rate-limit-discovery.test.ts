// Validation of rateLimit (routes and pools), discovery.dns (pools) and limits.maxConnectionsPerIp: typed values, defaults, errors with positions.

import { describe, expect, test } from 'vitest';
import { DEFAULTS } from '../../src/config/schema.js';
import { problemLines, valid } from './fixtures.js';

describe('rateLimit', () => {
  test('on a route and on a pool, with defaults named', () => {
    const config = valid(
      'routes:\n  - { pool: web, rateLimit: { requestsPerSecond: 2.5 } }\npools:\n  web:\n    rateLimit: { requestsPerSecond: 10, burst: 50, by: { header: X-Api-Key }, maxKeys: 1000 }\n    backends: [{ url: http://127.0.0.1:9001 }]\n',
    );
    expect(config.routes[0]!.rateLimit).toEqual({ requestsPerSecond: 2.5, burst: 3, by: { kind: 'sourceIp' }, maxKeys: DEFAULTS.rateLimitMaxKeys });
    expect(config.pools['web']!.rateLimit).toEqual({ requestsPerSecond: 10, burst: 50, by: { kind: 'header', name: 'x-api-key' }, maxKeys: 1000 });
    expect(valid('pools:\n  web:\n    backends: [{ url: http://127.0.0.1:9001 }]\n').pools['web']!.rateLimit).toBeNull();
  });

  test('bad values are reported where they are', () => {
    expect(
      problemLines(
        'routes:\n  - pool: web\n    rateLimit:\n      requestsPerSecond: 0\n      burst: 0\n      by: clientIp\npools:\n  web:\n    rateLimit: { by: { header: "a b" } }\n    backends: [{ url: http://127.0.0.1:9001 }]\n',
      ),
    ).toEqual([
      'balancer.yaml:4:26: routes[0].rateLimit.requestsPerSecond: must be a number from 0.001 to 1000000, got 0',
      'balancer.yaml:5:14: routes[0].rateLimit.burst: must be an integer from 1 to 1000000, got 0',
      'balancer.yaml:6:11: routes[0].rateLimit.by: must be sourceIp or {header: NAME}, got string "clientIp"',
      'balancer.yaml:9:5: pools.web.rateLimit.requestsPerSecond: is required',
      'balancer.yaml:9:32: pools.web.rateLimit.by.header: must be an HTTP header name, got string "a b"',
    ]);
  });
});

describe('discovery.dns', () => {
  test('A records by default, the port from the scheme, 30 s between lookups', () => {
    const config = valid('pools:\n  web:\n    discovery: { dns: { name: web.internal } }\n');
    expect(config.pools['web']!.discovery).toEqual({ name: 'web.internal', type: 'A', port: 80, scheme: 'http', intervalMs: 30_000, servers: null, drain: [] });
    const https = valid('pools:\n  web:\n    discovery: { dns: { name: Web.Internal., scheme: https, type: AAAA, interval: 5s, servers: ["127.0.0.1:5353", "[::1]:53"] } }\n');
    expect(https.pools['web']!.discovery).toEqual({ name: 'web.internal', type: 'AAAA', port: 443, scheme: 'https', intervalMs: 5_000, servers: ['127.0.0.1:5353', '[::1]:53'], drain: [] });
    const srv = valid('pools:\n  web:\n    discovery: { dns: { name: _http._tcp.web.internal, type: SRV, drain: ["10.0.0.7:8080"] } }\n');
    expect(srv.pools['web']!.discovery).toMatchObject({ name: '_http._tcp.web.internal', type: 'SRV', port: 0, drain: ['10.0.0.7:8080'] });
  });

  test('bad values are reported where they are', () => {
    expect(
      problemLines(
        'pools:\n  a:\n    discovery:\n      dns: { name: 10.0.0.1, servers: [dns.internal:53, "127.0.0.1"], interval: 10ms }\n  b:\n    discovery: { dns: { name: _http._tcp.b.internal, type: SRV, port: 80 } }\n  c:\n    discovery: { dns: { name: c.internal, type: SRV } }\n  d:\n    protocol: h2\n    discovery: { dns: { name: d.internal, servers: [] } }\n  e:\n    discovery: { dns: { type: TXT } }\nroutes:\n  - pool: a\n',
      ),
    ).toEqual([
      'balancer.yaml:4:20: pools.a.discovery.dns.name: must be a DNS name, not an address (list addresses as backends), got string "10.0.0.1"',
      'balancer.yaml:4:40: pools.a.discovery.dns.servers[0]: must be the IP address of a DNS server (with its port), not a name, got string "dns.internal:53"',
      'balancer.yaml:4:57: pools.a.discovery.dns.servers[1]: must be ip:port or [ipv6]:port of a DNS server, got string "127.0.0.1"',
      'balancer.yaml:4:81: pools.a.discovery.dns.interval: must be at least 1s, got string "10ms"',
      'balancer.yaml:6:71: pools.b.discovery.dns.port: SRV records carry the port of each target: leave port out',
      'balancer.yaml:8:31: pools.c.discovery.dns.name: an SRV name starts with _service._proto (like _http._tcp.c.internal), got "c.internal"',
      'balancer.yaml:11:52: pools.d.discovery.dns.servers: must list at least one server (leave servers out for the system resolver)',
      'balancer.yaml:13:31: pools.e.discovery.dns.type: must be one of A, AAAA, SRV, got string "TXT"',
    ]);
  });

  test('without a name it only says how backend URL names are resolved', () => {
    const config = valid('pools:\n  web:\n    discovery: { dns: { servers: ["127.0.0.1:53"], interval: 5s } }\n    backends: [{ url: http://api.internal:8080 }]\n');
    expect(config.pools['web']!.discovery).toEqual({ name: null, type: 'A', port: 80, scheme: 'http', intervalMs: 5_000, servers: ['127.0.0.1:53'], drain: [] });
    expect(problemLines('pools:\n  web:\n    discovery: { dns: { type: SRV, drain: ["10.0.0.1:80"] } }\n')).toEqual([
      'balancer.yaml:3:31: pools.web.discovery.dns.type: applies to the backends found by name, which is not set',
      'balancer.yaml:3:43: pools.web.discovery.dns.drain: applies to the backends found by name, which is not set',
    ]);
  });

  test('the scheme must fit the protocol', () => {
    expect(problemLines('pools:\n  web:\n    protocol: h2\n    discovery: { dns: { name: web.internal } }\n')).toEqual([
      'balancer.yaml:4:18: pools.web.discovery.dns.scheme: protocol h2 is HTTP/2 over TLS: use scheme https, or protocol h2c',
    ]);
  });
});

describe('limits.maxConnectionsPerIp', () => {
  test('0 (no limit) by default; a count otherwise', () => {
    expect(valid('').limits.maxConnectionsPerIp).toBe(0);
    expect(valid('limits: { maxConnectionsPerIp: 20 }').limits.maxConnectionsPerIp).toBe(20);
    expect(problemLines('limits: { maxConnectionsPerIp: -1 }')).toEqual([
      'balancer.yaml:1:32: limits.maxConnectionsPerIp: must be an integer from 0 to 10000000, got -1',
    ]);
  });
});
