// The listeners section and listener TLS settings: what decodes, and the problems (with positions) for what does not.

import { describe, expect, test } from 'vitest';
import { problemLines, valid } from './fixtures.js';
import { toPlainReplicated } from '../../src/config/plain.js';
import { validateReplicated } from '../../src/config/validate.js';
import { resolveReplicatedPaths } from '../../src/config/load.js';

describe('listeners', () => {
  test('several listeners with defaults, TLS by certificates, client certificates', () => {
    const config = valid(`listeners:
  - { name: http, listen: ":80", redirectToHttps: true }
  - name: https
    listen: ":443"
    tls:
      certificates:
        - { cert: a.pem, key: a.key }
        - { cert: b.pem, key: b.key }
      minVersion: TLSv1.3
      ciphers: ECDHE-RSA-AES128-GCM-SHA256
      clientCa: ca.pem
      clientAuth: require
      clientCertHeader: X-Client-Subject
  - { name: grpc, listen: "127.0.0.1:50051", h2c: true }
`);
    expect(config.listeners).toEqual([
      { name: 'http', listen: ':80', tls: null, http2: true, h2c: false, redirectToHttps: true },
      {
        name: 'https',
        listen: ':443',
        tls: {
          certificates: [
            { cert: 'a.pem', key: 'a.key' },
            { cert: 'b.pem', key: 'b.key' },
          ],
          minVersion: 'TLSv1.3',
          ciphers: 'ECDHE-RSA-AES128-GCM-SHA256',
          clientCa: 'ca.pem',
          clientAuth: 'require',
          clientCertHeader: 'x-client-subject',
        },
        http2: true,
        h2c: false,
        redirectToHttps: false,
      },
      { name: 'grpc', listen: '127.0.0.1:50051', tls: null, http2: true, h2c: true, redirectToHttps: false },
    ]);
  });

  test('two listeners on port 0 of the same address do not clash (each gets its own port)', () => {
    expect(valid('listeners:\n  - { name: a, listen: "127.0.0.1:0" }\n  - { name: b, listen: "127.0.0.1:0" }\n').listeners).toHaveLength(2);
  });

  test.each([
    [
      'duplicate names',
      'listeners:\n  - { name: web, listen: ":8080" }\n  - { name: web, listen: ":8081" }\n',
      'balancer.yaml:3:13: listeners[1].name: duplicate listener name "web" (also listeners[0])',
    ],
    [
      'the same port twice',
      'listeners:\n  - { name: a, listen: "127.0.0.1:8080" }\n  - { name: b, listen: "127.0.0.1:8080" }\n',
      'balancer.yaml:3:24: listeners[1].listen: 127.0.0.1:8080 clashes with listeners[0] (127.0.0.1:8080): two listeners cannot bind the same port',
    ],
    [
      'a port on every address and on one',
      'listeners:\n  - { name: a, listen: ":8080" }\n  - { name: b, listen: "127.0.0.1:8080" }\n',
      'balancer.yaml:3:24: listeners[1].listen: 127.0.0.1:8080 clashes with listeners[0] (:8080): two listeners cannot bind the same port',
    ],
    [
      'listen beside listeners',
      'listen: ":8080"\nlisteners:\n  - { name: a, listen: ":8081" }\n',
      'balancer.yaml:1:9: listen: set either listen/tls (one listener) or listeners, not both: move it into an entry of listeners',
    ],
    [
      'a redirect with no TLS listener',
      'listeners:\n  - { name: a, listen: ":8080", redirectToHttps: true }\n',
      'balancer.yaml:2:50: listeners[0].redirectToHttps: needs a TLS listener to redirect to: add one with tls',
    ],
    ['no listener at all', 'listeners: []\n', 'balancer.yaml:1:12: listeners: must name at least one listener'],
    [
      'h2c on a TLS listener',
      'listeners:\n  - { name: a, listen: ":8443", h2c: true, tls: { cert: c.pem, key: k.pem } }\n',
      'balancer.yaml:2:38: listeners[0].h2c: is for plain listeners; a TLS listener offers HTTP/2 by ALPN (http2)',
    ],
    [
      'a redirect on a TLS listener',
      'listeners:\n  - { name: a, listen: ":8443", redirectToHttps: true, tls: { cert: c.pem, key: k.pem } }\n',
      'balancer.yaml:2:50: listeners[0].redirectToHttps: is for plain listeners; this one already speaks https',
    ],
    ['a listener name with a space', 'listeners:\n  - { name: "a b", listen: ":8080" }\n', 'balancer.yaml:2:13: listeners[0].name: must contain only letters, digits and _ . -, got string "a b"'],
  ])('%s', (_name, text, expected) => {
    expect(problemLines(text)).toEqual([expected]);
  });
});

describe('listener tls', () => {
  test('cert + key is the one-certificate form', () => {
    expect(valid('tls: { cert: c.pem, key: k.pem }\n').listeners[0]!.tls!.certificates).toEqual([{ cert: 'c.pem', key: 'k.pem' }]);
  });

  test.each([
    ['both forms', 'tls: { cert: c.pem, key: k.pem, certificates: [{ cert: d.pem, key: e.pem }] }\n', 'balancer.yaml:1:47: tls.certificates: set cert and key, or certificates, not both'],
    ['cert alone', 'tls: { cert: c.pem }\n', 'balancer.yaml:1:1: tls.key: is required with cert'],
    ['no certificate', 'tls: { minVersion: TLSv1.3 }\n', 'balancer.yaml:1:6: tls: needs a certificate: set cert and key, or certificates: [{cert, key}, ...]'],
    ['clientAuth without clientCa', 'tls: { cert: c.pem, key: k.pem, clientAuth: require }\n', 'balancer.yaml:1:1: tls.clientCa: is required with clientAuth: require (the CAs client certificates are verified against)'],
    ['clientCa without clientAuth', 'tls: { cert: c.pem, key: k.pem, clientCa: ca.pem }\n', 'balancer.yaml:1:1: tls.clientAuth: is required with clientCa: request or require'],
    [
      'clientCertHeader without client certificates',
      'tls: { cert: c.pem, key: k.pem, clientCertHeader: X-Subject }\n',
      'balancer.yaml:1:51: tls.clientCertHeader: needs clientAuth (and clientCa): without client certificates there is no subject to pass on',
    ],
    ['an old TLS version', 'tls: { cert: c.pem, key: k.pem, minVersion: TLSv1.0 }\n', 'balancer.yaml:1:45: tls.minVersion: must be one of TLSv1.2, TLSv1.3, got string "TLSv1.0" (did you mean "TLSv1.2"?)'],
  ])('%s', (_name, text, expected) => {
    expect(problemLines(text)).toEqual([expected]);
  });
});

describe('pool protocol', () => {
  test('http1 by default; h2 for https backends, h2c for http ones', () => {
    expect(valid('pools:\n  web:\n    backends: [{ url: "http://10.0.0.1:80" }]\n').pools['web']!.protocol).toBe('http1');
    expect(valid('pools:\n  grpc:\n    protocol: h2c\n    backends: [{ url: "http://10.0.0.1:50051" }]\n').pools['grpc']!.protocol).toBe('h2c');
    expect(valid('pools:\n  grpc:\n    protocol: h2\n    backends: [{ url: "https://10.0.0.1:443" }]\n').pools['grpc']!.protocol).toBe('h2');
  });

  test.each([
    ['h2c to an https backend', 'pools:\n  grpc:\n    protocol: h2c\n    backends: [{ url: "https://10.0.0.1" }]\n', 'balancer.yaml:4:23: pools.grpc.backends[0].url: protocol h2c is HTTP/2 without TLS: use an http:// URL, or protocol h2 for https backends'],
    ['h2 to an http backend', 'pools:\n  grpc:\n    protocol: h2\n    backends: [{ url: "http://10.0.0.1" }]\n', 'balancer.yaml:4:23: pools.grpc.backends[0].url: protocol h2 is HTTP/2 over TLS: use an https:// URL, or protocol h2c for plain backends'],
  ])('%s', (_name, text, expected) => {
    expect(problemLines(text)).toEqual([expected]);
  });
});

describe('gRPC health checks', () => {
  test('healthCheck.grpc with and without a service', () => {
    const pools = valid(`routes:
  - { match: { pathPrefix: /orders/ }, pool: orders }
  - { pool: whole }
pools:
  orders:
    protocol: h2c
    healthCheck: { grpc: { service: shop.Orders }, interval: 1s }
    backends: [{ url: "http://10.0.0.1:50051" }]
  whole:
    protocol: h2
    healthCheck: { grpc: {} }
    backends: [{ url: "https://10.0.0.2:50051" }]
`).pools;
    expect(pools['orders']!.healthCheck).toMatchObject({ path: null, intervalMs: 1000, grpc: { service: 'shop.Orders' } });
    expect(pools['whole']!.healthCheck!.grpc).toEqual({ service: '' });
  });

  test('gRPC checks and client certificates survive the plain (replicated) form', () => {
    const config = valid(`routes:
  - { match: { pathPrefix: /orders/ }, pool: orders }
  - { pool: whole }
pools:
  orders:
    protocol: h2
    healthCheck: { grpc: { service: shop.Orders } }
    tls: { ca: ca.pem, cert: client.pem, key: client-key.pem }
    backends: [{ url: "https://10.0.0.1:50051" }]
  whole:
    protocol: h2c
    healthCheck: { grpc: {} }
    backends: [{ url: "http://10.0.0.2:50051" }]
`);
    expect(config.pools['orders']!.tls).toEqual({ ca: 'ca.pem', serverName: null, cert: 'client.pem', key: 'client-key.pem' });
    const again = validateReplicated(JSON.parse(JSON.stringify(toPlainReplicated({ routes: config.routes, pools: config.pools }))));
    expect(again.ok && again.config.pools).toEqual(config.pools);
    // Each node resolves the files against its own config directory.
    expect(resolveReplicatedPaths({ routes: config.routes, pools: config.pools }, '/etc/balancer').pools['orders']!.tls).toEqual({
      ca: '/etc/balancer/ca.pem',
      serverName: null,
      cert: '/etc/balancer/client.pem',
      key: '/etc/balancer/client-key.pem',
    });
  });

  test.each([
    [
      'on an HTTP/1.1 pool',
      'pools:\n  web:\n    healthCheck: { grpc: {} }\n    backends: [{ url: "http://10.0.0.1" }]\n',
      'balancer.yaml:3:26: pools.web.healthCheck.grpc: gRPC health checks speak HTTP/2: set the pool\'s protocol to h2c (http:// backends) or h2 (https:// backends)',
    ],
    [
      'with a path too',
      'pools:\n  web:\n    protocol: h2c\n    healthCheck: { path: /healthz, grpc: {} }\n    backends: [{ url: "http://10.0.0.1" }]\n',
      'balancer.yaml:4:42: pools.web.healthCheck.grpc: set either path (an HTTP GET check) or grpc (a gRPC health check), not both',
    ],
    [
      'a service name with a space',
      'pools:\n  web:\n    protocol: h2c\n    healthCheck: { grpc: { service: "a b" } }\n    backends: [{ url: "http://10.0.0.1" }]\n',
      'balancer.yaml:4:37: pools.web.healthCheck.grpc.service: must contain no spaces, got string "a b"',
    ],
  ])('%s', (_name, text, expected) => {
    expect(problemLines(text)).toEqual([expected]);
  });
});
