import { availableParallelism } from 'node:os';
import { describe, expect, test } from 'vitest';
import { parseDocument } from 'yaml';
import { DEFAULTS } from '../../src/config/schema.js';
import {
  formatProblem,
  validateConfig,
  validateConfigText,
  validateReplicated,
  validateReplicatedText,
  type ParsedConfigText,
} from '../../src/config/validate.js';
import { FILE, FULL_EXAMPLE, problemLines, valid } from './fixtures.js';

describe('a valid file', () => {
  test('the full example decodes into the typed config', () => {
    const config = valid(FULL_EXAMPLE);
    expect(config.listeners).toEqual([
      {
        name: 'default',
        listen: '127.0.0.1:8080',
        tls: { certificates: [{ cert: './cert.pem', key: './key.pem' }], minVersion: 'TLSv1.2', ciphers: null, clientCa: null, clientAuth: 'none', clientCertHeader: null },
        http2: true,
        h2c: false,
        redirectToHttps: false,
      },
    ]);
    expect(config.admin).toEqual({ listen: '127.0.0.1:9090', token: 'change-me', tokenFile: null });
    const anyRequest = { host: null, path: null, pathPrefix: '/', pathPrefixSegments: false, pathRegex: null, methods: null, headers: [], query: {}, listener: null };
    expect(config.routes).toEqual([
      { name: null, match: { ...anyRequest, host: 'api.example.com', pathPrefix: '/v1' }, pool: 'api', redirect: null, respond: null, rewrite: null, headers: null, timeoutMs: null, retries: null, retryOn: null, maxBodySize: 10 * 1024 * 1024, rateLimit: null },
      { name: null, match: { ...anyRequest, host: '*.example.com' }, pool: 'web', redirect: null, respond: null, rewrite: null, headers: null, timeoutMs: null, retries: null, retryOn: null, maxBodySize: 0, rateLimit: null },
      { name: null, match: anyRequest, pool: 'web', redirect: null, respond: null, rewrite: null, headers: null, timeoutMs: null, retries: null, retryOn: null, maxBodySize: 0, rateLimit: null },
    ]);
    const web = config.pools['web']!;
    expect(web.strategy).toBe('weighted');
    expect(web.backends).toEqual([
      { id: 'web-1', url: 'http://127.0.0.1:9001', weight: 3, drain: false, backup: false },
      { id: '127.0.0.1:9002', url: 'http://127.0.0.1:9002', weight: 1, drain: false, backup: false },
      { id: 'backend.example.com:443', url: 'https://backend.example.com', weight: 1, drain: true, backup: false },
    ]);
    expect(web.healthCheck).toEqual({
      path: '/healthz',
      intervalMs: 2000,
      unhealthyIntervalMs: 2000,
      timeoutMs: 1000,
      rise: 2,
      fall: 3,
      expectedStatuses: [[200, 399]],
      host: null,
      jitter: DEFAULTS.healthCheck.jitter,
      grpc: null,
      reuseConnection: true,
    });
    expect(valid('pools:\n  web:\n    healthCheck: { path: /healthz, reuseConnection: false }\n').pools['web']!.healthCheck?.reuseConnection).toBe(false);
    expect(web.outlierDetection).toEqual({
      enabled: true,
      consecutiveGatewayFailures: 5,
      consecutive5xx: 5,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 10,
      activeCheckUnejects: true,
    });
    expect(web.timeouts).toEqual(DEFAULTS.timeouts);
    expect(web.retries).toBe(DEFAULTS.retries);
    expect(web.tls).toEqual({ ca: null, serverName: null, cert: null, key: null });

    const api = config.pools['api']!;
    expect(api.backends[0]).toEqual({ id: '[::1]:9100', url: 'http://[::1]:9100', weight: 1, drain: false, backup: false });
    expect(api.healthCheck).toEqual({
      path: null,
      intervalMs: 1500,
      unhealthyIntervalMs: 10_000,
      timeoutMs: 250,
      rise: 2,
      fall: 3,
      expectedStatuses: [[200, 299], [404, 404]],
      host: 'health.internal',
      jitter: 0,
      grpc: null,
      reuseConnection: true,
    });
    expect(api.outlierDetection).toEqual({
      enabled: true,
      consecutiveGatewayFailures: 5,
      consecutive5xx: 0,
      baseEjectionTimeMs: 10_000,
      maxEjectionTimeMs: 60_000,
      maxEjectionPercent: 50,
      activeCheckUnejects: true,
    });
    expect(api.timeouts).toEqual({ connectMs: 1000, responseMs: 30_000, idleMs: 120_000, tunnelMs: DEFAULTS.timeouts.tunnelMs });
    expect(api.retries).toBe(0);
    expect(api.retryBudget).toEqual({ percent: 10, minConcurrent: 1 });
    expect(api.panicThresholdPercent).toBe(0);
    expect(api.slowStartMs).toBe(30_000);
    expect(api.circuitBreaker).toEqual({ maxRequestsPerBackend: 100, maxPendingPerBackend: 10 });
    expect(api.connections).toEqual({ max: 512 });
    expect(api.tls).toEqual({ ca: './ca.pem', serverName: 'api.internal', cert: null, key: null });

    expect(config.cluster).toEqual({
      nodeId: 'n1',
      listen: '127.0.0.1:7001',
      dataDir: './data/n1',
      peers: { n1: '127.0.0.1:7001', n2: '127.0.0.1:7002', n3: '[::1]:7003' },
      secret: null,
      secretFile: './cluster.secret',
      electionTimeoutMs: 1000,
      heartbeatIntervalMs: 100,
      historySize: 50,
    });
    expect(config.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.1', 'fd00::/8', '::1']);
    expect(config.limits).toEqual({
      maxConnections: 500,
      maxHeaderSize: 32 * 1024,
      headersTimeoutMs: 5000,
      requestTimeoutMs: 60_000,
      keepAliveTimeoutMs: 5000,
      maxBodySize: 1024 ** 3,
      rejectEncodedSlash: true,
      maxConnectionsPerIp: 0,
    });
    expect(config.log).toEqual({ level: 'debug', access: true, accessFile: null });
    expect(config.workers).toBe(availableParallelism());
    expect(config.shutdownDrainMs).toBe(1500);
    expect(config.shutdownPreStopDelayMs).toBe(3000);
  });

  test('an empty file is all defaults and no pools', () => {
    const config = valid('');
    expect(config.listeners.map((listener) => listener.listen)).toEqual([DEFAULTS.listen]);
    expect(config.admin).toEqual({ listen: DEFAULTS.adminListen, token: null, tokenFile: null });
    expect(config.pools).toEqual({});
    expect(config.routes).toEqual([]);
    expect(config.cluster).toBeNull();
    expect(config.listeners[0]!.tls).toBeNull();
    expect(config.limits.maxHeaderSize).toBe(DEFAULTS.limits.maxHeaderSize);
    expect(config.log).toEqual(DEFAULTS.log);
    expect(config.workers).toBe(0);
    expect(config.shutdownDrainMs).toBe(DEFAULTS.shutdownDrainMs);
    expect(config.shutdownPreStopDelayMs).toBe(0);
  });

  test('one pool and no routes is fine; healthCheck {} means TCP checks with defaults', () => {
    const config = valid('pools:\n  only:\n    backends: [{ url: "http://10.0.0.1:80" }]\n    healthCheck: {}\n');
    expect(config.routes).toEqual([]);
    expect(config.pools['only']!.backends[0]!.id).toBe('10.0.0.1:80');
    expect(config.pools['only']!.backends[0]!.url).toBe('http://10.0.0.1');
    expect(config.pools['only']!.healthCheck).toMatchObject({ path: null, intervalMs: 2000, unhealthyIntervalMs: 2000 });
    expect(config.pools['only']!.strategy).toBe(DEFAULTS.strategy);
  });

  test('listen accepts host:port, [ipv6]:port and :port; JSON is accepted too', () => {
    expect(valid('listen: "[::1]:8080"').listeners[0]!.listen).toBe('[::1]:8080');
    expect(valid('listen: ":8080"').listeners[0]!.listen).toBe(':8080');
    expect(valid('{"listen": "localhost:0", "workers": 4}').workers).toBe(4);
  });

  test('the result is deeply frozen', () => {
    const config = valid(FULL_EXAMPLE);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.pools)).toBe(true);
    expect(Object.isFrozen(config.pools['web']!.backends[0])).toBe(true);
    expect(Object.isFrozen(config.pools['api']!.healthCheck!.expectedStatuses[0])).toBe(true);
    expect(Object.isFrozen(config.cluster!.peers)).toBe(true);
    expect(() => {
      (config.pools['web']!.backends[0] as { weight: number }).weight = 9;
    }).toThrow(TypeError);
  });
});

describe('health check timeout defaults', () => {
  test.each([
    ['1s', 500],
    ['500ms', 250],
    ['2s', 1000],
    ['30s', 1000],
    ['1ms', 1],
  ])('interval %s alone is valid, with a default timeout of %i ms below it', (interval, timeoutMs) => {
    const result = validateConfigText(`pools:\n  web:\n    healthCheck: { interval: ${interval} }\n`, 'balancer.yaml');
    expect(result.ok, JSON.stringify(!result.ok && result.problems)).toBe(true);
    if (result.ok) expect(result.config.pools['web']!.healthCheck!.timeoutMs).toBe(timeoutMs);
  });
});

describe('problems, each as FILE:LINE:COL: message', () => {
  const cases: readonly { name: string; text: string; expected: string }[] = [
    {
      name: 'unknown top-level key, with a suggestion',
      text: 'listen: 127.0.0.1:8080\npoools: {}\n',
      expected: 'balancer.yaml:2:1: poools: unknown key (did you mean "pools"?)',
    },
    {
      name: 'unknown nested key',
      text: 'pools:\n  web:\n    backends: []\n    helthCheck: {}\n',
      expected: 'balancer.yaml:4:5: pools.web.helthCheck: unknown key (did you mean "healthCheck"?)',
    },
    {
      name: 'unknown key without a close match',
      text: 'admin:\n  colour: blue\n',
      expected: 'balancer.yaml:2:3: admin.colour: unknown key',
    },
    {
      name: 'weight zero',
      text: 'pools:\n  web:\n    backends:\n      - { url: http://a:1 }\n      - { url: http://b:1, weight: 0 }\n',
      expected: 'balancer.yaml:5:36: pools.web.backends[1].weight: must be a whole number from 1 to 10000 (to stop sending to a backend, drain it), got 0',
    },
    {
      name: 'fractional weight',
      text: 'pools:\n  web:\n    backends:\n      - url: http://a:1\n        weight: 1.5\n',
      expected: 'balancer.yaml:5:17: pools.web.backends[0].weight: must be a whole number from 1 to 10000 (to stop sending to a backend, drain it), got 1.5',
    },
    {
      name: 'wrong type',
      text: 'pools:\n  web:\n    retries: abc\n',
      expected: 'balancer.yaml:3:14: pools.web.retries: expected an integer, got string "abc"',
    },
    {
      name: 'bad duration',
      text: 'pools:\n  web:\n    timeouts: { connect: 5 seconds }\n',
      expected: 'balancer.yaml:3:26: pools.web.timeouts.connect: must be a duration like 250ms, 2s, 1.5m or 1h, got string "5 seconds"',
    },
    {
      name: 'negative duration',
      text: 'shutdown:\n  drainTimeout: -5\n',
      expected:
        'balancer.yaml:2:17: shutdown.drainTimeout: must be a duration (250ms, 2s, 1m, 1h) or a whole number of milliseconds, got number -5',
    },
    {
      name: 'bad size',
      text: 'limits:\n  maxBodySize: 10 megabytes\n',
      expected: 'balancer.yaml:2:16: limits.maxBodySize: must be a size like 512b, 16kb, 10mb or 1gb (1024-based), got string "10 megabytes"',
    },
    {
      name: 'non-http backend url',
      text: 'pools:\n  web:\n    backends: [{ url: "ftp://files:21" }]\n',
      expected: 'balancer.yaml:3:23: pools.web.backends[0].url: must use http or https, got "ftp"',
    },
    {
      name: 'backend url with a path',
      text: 'pools:\n  web:\n    backends: [{ url: "http://a:1/api" }]\n',
      expected:
        'balancer.yaml:3:23: pools.web.backends[0].url: must be an origin like http://10.0.0.5:8080, without path, query or fragment, got string "http://a:1/api"',
    },
    {
      name: 'backend url not a url',
      text: 'pools:\n  web:\n    backends: [{ url: "localhost:9000" }]\n',
      expected: 'balancer.yaml:3:23: pools.web.backends[0].url: must use http or https, got "localhost"',
    },
    {
      name: 'backend without url',
      text: 'pools:\n  web:\n    backends:\n      - weight: 2\n',
      expected: 'balancer.yaml:4:9: pools.web.backends[0].url: is required',
    },
    {
      name: 'duplicate backend ids',
      text: 'pools:\n  web:\n    backends:\n      - { url: http://a:1, id: x }\n      - { url: http://b:1, id: x }\n',
      expected: 'balancer.yaml:5:32: pools.web.backends[1].id: duplicate backend id "x" (also pools.web.backends[0]); give one of them an id',
    },
    {
      name: 'duplicate backend urls (same default id)',
      text: 'pools:\n  web:\n    backends:\n      - { url: "http://a:80" }\n      - { url: "http://A" }\n',
      expected: 'balancer.yaml:5:16: pools.web.backends[1].url: duplicate backend id "a:80" (also pools.web.backends[0]); give one of them an id',
    },
    {
      name: 'duplicate backend urls with distinct ids',
      text: 'pools:\n  web:\n    backends:\n      - { url: "http://a:1", id: one }\n      - { url: "http://a:1", id: two }\n',
      expected: 'balancer.yaml:5:16: pools.web.backends[1].url: duplicate backend url http://a:1 (also pools.web.backends[0])',
    },
    {
      name: 'route to a missing pool',
      text: 'routes:\n  - pool: wbe\npools:\n  web: {}\n',
      expected: 'balancer.yaml:2:11: routes[0].pool: no pool named "wbe" (did you mean "web"?)',
    },
    {
      name: 'route to a missing pool, nothing close',
      text: 'routes:\n  - pool: zzz\npools:\n  web: {}\n  api: {}\n',
      expected: 'balancer.yaml:2:11: routes[0].pool: no pool named "zzz" (pools: web, api)',
    },
    {
      name: 'several pools and no routes',
      text: 'pools:\n  web: {}\n  api: {}\n',
      expected:
        'balancer.yaml:1:1: routes: there are 2 pools (web, api) but no routes; add routes to say which requests go to which pool',
    },
    {
      name: 'bad strategy with a suggestion',
      text: 'pools:\n  web:\n    strategy: roundrobin\n',
      expected:
        'balancer.yaml:3:15: pools.web.strategy: must be one of random, round-robin, weighted, least-request, peak-ewma, ring-hash, maglev, got string "roundrobin" (did you mean "round-robin"?)',
    },
    {
      name: 'health check timeout not below interval',
      text: 'pools:\n  web:\n    healthCheck: { interval: 1s, timeout: 1s }\n',
      expected: 'balancer.yaml:3:43: pools.web.healthCheck.timeout: must be less than interval (1s), got 1s',
    },
    {
      name: 'health check path without slash',
      text: 'pools:\n  web:\n    healthCheck: { path: healthz }\n',
      expected: 'balancer.yaml:3:26: pools.web.healthCheck.path: must start with / and contain no spaces, got string "healthz"',
    },
    {
      name: 'bad expected status',
      text: 'pools:\n  web:\n    healthCheck: { expectedStatuses: [200, "300-200"] }\n',
      expected: 'balancer.yaml:3:44: pools.web.healthCheck.expectedStatuses[1]: must be a range with the lower status first, got string "300-200"',
    },
    {
      name: 'bad pool name',
      text: 'pools:\n  "web pool": {}\n',
      expected: 'balancer.yaml:2:3: pools["web pool"]: pool names may contain only letters, digits and _ . -, got string "web pool"',
    },
    {
      name: 'route pathPrefix without slash',
      text: 'routes:\n  - match: { pathPrefix: api }\n    pool: web\npools:\n  web: {}\n',
      expected: 'balancer.yaml:2:26: routes[0].match.pathPrefix: must start with / and contain no spaces, got string "api"',
    },
    {
      name: 'route host not a host name',
      text: 'routes:\n  - match: { host: "a b.com" }\n    pool: web\npools:\n  web: {}\n',
      expected: 'balancer.yaml:2:20: routes[0].match.host: must be a host name like api.example.com or *.example.com, got string "a b.com"',
    },
    {
      name: 'listen without port',
      text: 'listen: localhost\n',
      expected: 'balancer.yaml:1:9: listen: must be host:port, [ipv6]:port or :port, got string "localhost"',
    },
    {
      name: 'listen with unbracketed IPv6',
      text: 'listen: "::1:8080"\n',
      expected: 'balancer.yaml:1:9: listen: must put an IPv6 address in brackets ([::1]:8080), got string "::1:8080"',
    },
    {
      name: 'bad CIDR',
      text: 'trustedProxies: [10.0.0.0/33]\n',
      expected: 'balancer.yaml:1:18: trustedProxies[0]: must have a prefix length from 0 to 32, got string "10.0.0.0/33"',
    },
    {
      name: 'not an IP',
      text: 'trustedProxies: [localhost]\n',
      expected: 'balancer.yaml:1:18: trustedProxies[0]: must be an IP address or CIDR like 10.0.0.0/8 or fd00::/8, got string "localhost"',
    },
    {
      name: 'cluster with both secret and secretFile',
      text: 'cluster:\n  nodeId: n1\n  listen: 127.0.0.1:7001\n  peers: { n1: 127.0.0.1:7001 }\n  secret: abc\n  secretFile: ./s\n',
      expected: 'balancer.yaml:6:15: cluster.secretFile: set exactly one of secret and secretFile',
    },
    {
      name: 'cluster node not among peers',
      text: 'cluster:\n  nodeId: n4\n  listen: 127.0.0.1:7001\n  peers: { n1: 127.0.0.1:7001, n2: 127.0.0.1:7002 }\n  secret: abc\n',
      expected: 'balancer.yaml:2:11: cluster.nodeId: must be one of the keys of peers, got "n4" (peers: n1, n2)',
    },
    {
      name: 'peer address with port 0',
      text: 'cluster:\n  nodeId: n1\n  listen: 127.0.0.1:7001\n  peers: { n1: "127.0.0.1:0" }\n  secret: abc\n',
      expected: 'balancer.yaml:4:16: cluster.peers.n1: must have a port from 1 to 65535, got string "127.0.0.1:0"',
    },
    {
      name: 'heartbeat not below election timeout',
      text: 'cluster:\n  nodeId: n1\n  listen: 127.0.0.1:7001\n  peers: { n1: 127.0.0.1:7001 }\n  secret: abc\n  heartbeatInterval: 2s\n',
      expected: 'balancer.yaml:6:22: cluster.heartbeatInterval: must be less than electionTimeout (1s), got 2s',
    },
    {
      name: 'admin with token and tokenFile',
      text: 'admin:\n  token: a\n  tokenFile: ./t\n',
      expected: 'balancer.yaml:3:14: admin.tokenFile: set token or tokenFile, not both',
    },
    {
      name: 'bad log level',
      text: 'log: { level: verbose }\n',
      expected: 'balancer.yaml:1:15: log.level: must be one of debug, info, warn, error, silent, got string "verbose"',
    },
    {
      name: 'bad workers',
      text: 'workers: many\n',
      expected: 'balancer.yaml:1:10: workers: must be auto or an integer from 0 to 256, got string "many"',
    },
    {
      name: 'retries above the limit',
      text: 'pools:\n  web:\n    retries: 11\n',
      expected: 'balancer.yaml:3:14: pools.web.retries: must be an integer from 0 to 10, got 11',
    },
    {
      name: 'max ejection below base',
      text: 'pools:\n  web:\n    outlierDetection: { baseEjectionTime: 1m, maxEjectionTime: 30s }\n',
      expected: 'balancer.yaml:3:64: pools.web.outlierDetection.maxEjectionTime: must be at least baseEjectionTime (1m), got 30s',
    },
    {
      name: 'empty value where a mapping belongs',
      text: 'pools:\n  web:\n    tls:\n',
      expected: 'balancer.yaml:3:9: pools.web.tls: expected a mapping, got an empty value',
    },
    {
      name: 'top level is not a mapping',
      text: '- a\n- b\n',
      expected: 'balancer.yaml:1:1: expected a mapping, got a list',
    },
    {
      name: 'YAML syntax error',
      text: 'pools:\n  web: {\n',
      expected: 'balancer.yaml:3:1: invalid YAML: Flow map in block collection must be sufficiently indented and end with a }',
    },
    {
      name: 'duplicate YAML keys',
      text: 'listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n',
      expected: 'balancer.yaml:2:1: invalid YAML: Map keys must be unique',
    },
  ];

  test.each(cases)('$name', ({ text, expected }) => {
    expect(problemLines(text)).toEqual([expected]);
  });

  test('every problem is reported at once, in file order', () => {
    const text = [
      'listen: nowhere', // 1
      'admin:', // 2
      '  listne: 127.0.0.1:9090', // 3
      'routes:', // 4
      '  - pool: missing', // 5
      'pools:', // 6
      '  web:', // 7
      '    strategy: fastest', // 8
      '    backends:', // 9
      '      - { url: "http://a:1", weight: -1 }', // 10
      '    timeouts: { connect: soon }', // 11
      'log: { access: maybe }', // 12
      '',
    ].join('\n');
    const lines = problemLines(text);
    expect(lines).toEqual([
      'balancer.yaml:1:9: listen: must be host:port, [ipv6]:port or :port, got string "nowhere"',
      'balancer.yaml:3:3: admin.listne: unknown key (did you mean "listen"?)',
      'balancer.yaml:5:11: routes[0].pool: no pool named "missing" (pools: web)',
      'balancer.yaml:8:15: pools.web.strategy: must be one of random, round-robin, weighted, least-request, peak-ewma, ring-hash, maglev, got string "fastest"',
      'balancer.yaml:10:38: pools.web.backends[0].weight: must be a whole number from 1 to 10000 (to stop sending to a backend, drain it), got -1',
      'balancer.yaml:11:26: pools.web.timeouts.connect: must be a duration like 250ms, 2s, 1.5m or 1h, got string "soon"',
      'balancer.yaml:12:16: log.access: expected true or false, got string "maybe"',
    ]);
  });

  test('problems carry their path separately from the message', () => {
    const result = validateConfigText('pools:\n  web:\n    retries: -1\n', FILE);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems[0]).toEqual({
      path: 'pools.web.retries',
      line: 3,
      column: 14,
      message: 'pools.web.retries: must be an integer from 0 to 10, got -1',
    });
  });

  test('peak-ewma and its ewma settings, with defaults and bad values', () => {
    const config = valid('pools:\n  p:\n    strategy: peak-ewma\n    ewma: { decay: 30s, initial: 2ms }\n  q: {}\nroutes:\n  - { pool: p }\n');
    expect(config.pools['p']!.strategy).toBe('peak-ewma');
    expect(config.pools['p']!.ewma).toEqual({ decayMs: 30_000, initialMs: 2 });
    expect(config.pools['q']!.ewma).toEqual({ decayMs: 10_000, initialMs: 10 });
    expect(problemLines('pools:\n  p:\n    ewma: { decay: 0, inital: 5ms }\n')).toEqual([
      'balancer.yaml:3:20: pools.p.ewma.decay: must be at least 1ms, got number 0',
      'balancer.yaml:3:23: pools.p.ewma.inital: unknown key (did you mean "initial"?)',
    ]);
  });

  test('log.accessFile needs log.access: true', () => {
    expect(valid('log: { access: true, accessFile: /var/log/balancer/access.log }\n').log).toEqual({ level: 'info', access: true, accessFile: '/var/log/balancer/access.log' });
    expect(valid('').log.accessFile).toBeNull();
    expect(problemLines('log: { accessFile: access.log }')).toEqual([
      'balancer.yaml:1:20: log.accessFile: accessFile is set but access is not true: set log.access: true to write the access log',
    ]);
  });

  test('formatProblem without a position', () => {
    expect(formatProblem('x.yaml', { path: 'pools', message: 'pools: broken' })).toBe('x.yaml: pools: broken');
  });

  test('durations and sizes accept their documented forms', () => {
    const config = valid(
      'pools:\n  p:\n    slowStart: 1.5s\n    timeouts: { connect: 250ms, response: 1m, idle: 1h, tunnel: 30m }\nroutes:\n  - { pool: p, maxBodySize: 16kb }\n',
    );
    expect(config.pools['p']!.slowStartMs).toBe(1500);
    expect(config.pools['p']!.timeouts).toEqual({ connectMs: 250, responseMs: 60_000, idleMs: 3_600_000, tunnelMs: 1_800_000 });
    expect(config.routes[0]!.maxBodySize).toBe(16 * 1024);
    expect(problemLines('shutdown: { drainTimeout: 0.5ms }')).toEqual([
      'balancer.yaml:1:27: shutdown.drainTimeout: must be a whole number of milliseconds, got string "0.5ms"',
    ]);
  });
});

describe('the replicated part', () => {
  const body = { routes: [{ match: { pathPrefix: '/' }, pool: 'web' }], pools: { web: { backends: [{ url: 'http://127.0.0.1:9001' }] } } };

  test('plain values validate without positions', () => {
    const result = validateReplicated(body);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.pools['web']!.backends[0]!.id).toBe('127.0.0.1:9001');
    expect(Object.isFrozen(result.config)).toBe(true);
    const broken = validateReplicated({ pools: { web: { backends: [{ url: 'http://a:1', weight: 0 }] } } });
    expect(broken).toEqual({
      ok: false,
      problems: [{ path: 'pools.web.backends[0].weight', message: 'pools.web.backends[0].weight: must be a whole number from 1 to 10000 (to stop sending to a backend, drain it), got 0' }],
    });
  });

  test('local keys are refused with an explanation', () => {
    const result = validateReplicatedText('listen: 127.0.0.1:1\npools: {}\nrutes: []\n', 'request body');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => formatProblem('request body', p))).toEqual([
      'request body:1:1: listen: is local to each node and cannot be set here; only routes and pools are replicated',
      'request body:3:1: rutes: unknown key (did you mean "routes"?)',
    ]);
  });

  test('JSON bodies with positions', () => {
    const result = validateReplicatedText('{"pools": {"web": {"backends": [{"url": "http://a:1", "weight": "3"}]}}}', 'body');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(formatProblem('body', result.problems[0]!)).toBe('body:1:65: pools.web.backends[0].weight: expected an integer, got string "3"');
  });

  test('is deterministic: the same input gives equal output every time', () => {
    const first = validateReplicated(body);
    const second = validateReplicated(structuredClone(body));
    expect(second).toEqual(first);
  });

  test('validateConfig takes plain values too', () => {
    const result = validateConfig({ listen: ':1', pools: body.pools });
    expect(result.ok).toBe(true);
  });
});

describe('validateConfigText tells a caller what it parsed', () => {
  test('the document and the plain value of the text, local references expanded, routes and pools as written', () => {
    process.env['BALANCER_TEST_PARSED_TOKEN'] = 'from-env';
    const text = [
      'admin: { listen: 127.0.0.1:0, token: "${BALANCER_TEST_PARSED_TOKEN}" }',
      'routes: [{ match: { pathPrefix: / }, pool: web }]',
      'pools:',
      '  web:',
      '    backends:',
      '      - { url: http://127.0.0.1:9001, id: web-1, weight: 3 }',
      '',
    ].join('\n');
    const seen: ParsedConfigText[] = [];
    const result = validateConfigText(text, FILE, (parsed) => seen.push(parsed));
    expect(result.ok).toBe(true);
    expect(seen).toHaveLength(1);
    const fresh = parseDocument(text).toJS() as Record<string, unknown>;
    const value = seen[0]!.value as Record<string, unknown>;
    // Validation leaves the value as parsed: the caller may take it for what the file says.
    expect(value['routes']).toEqual(fresh['routes']);
    expect(value['pools']).toEqual(fresh['pools']);
    expect(value['admin']).toEqual({ listen: '127.0.0.1:0', token: 'from-env' });
    expect(seen[0]!.document.toJS()).toEqual(value);
    delete process.env['BALANCER_TEST_PARSED_TOKEN'];
  });
});
