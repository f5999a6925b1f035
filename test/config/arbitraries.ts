// fast-check generators of mostly valid routes+pools in file form, shared by the property tests.

import fc from 'fast-check';

const durationArb = (min: number, max: number) => {
  const forms = [fc.integer({ min, max }), fc.integer({ min, max }).map((ms) => `${ms}ms`)];
  const lowSeconds = Math.max(1, Math.ceil(min / 1000));
  const highSeconds = Math.floor(max / 1000);
  if (lowSeconds <= highSeconds) forms.push(fc.integer({ min: lowSeconds, max: highSeconds }).map((s) => `${s}s`));
  return fc.oneof(...forms);
};

const hostArb = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `10.0.${a}.${b}`),
  fc.constantFrom('localhost', 'api.internal', 'Backend.Example.com', '[::1]', '[fd00::5]'),
);

const urlArb = fc
  .tuple(fc.constantFrom('http', 'https'), hostArb, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }), fc.boolean())
  .map(([scheme, host, port, slash]) => `${scheme}://${host}${port === undefined ? '' : `:${port}`}${slash ? '/' : ''}`);

const backendArb = fc.record(
  {
    url: urlArb,
    weight: fc.integer({ min: 1, max: 10_000 }),
    id: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
    drain: fc.boolean(),
    backup: fc.boolean(),
  },
  { requiredKeys: ['url'] },
);

const healthCheckArb = fc.record(
  {
    path: fc.constantFrom('/', '/healthz', '/status?full=1'),
    interval: durationArb(1000, 60_000),
    unhealthyInterval: durationArb(1, 120_000),
    timeout: durationArb(1, 999),
    rise: fc.integer({ min: 1, max: 100 }),
    fall: fc.integer({ min: 1, max: 100 }),
    expectedStatuses: fc.oneof(fc.constant('200-399'), fc.constant(204), fc.constant(['200-299', 404]), fc.constant([200])),
    host: fc.constantFrom('health.internal', 'LOCALHOST'),
    jitter: fc.constantFrom(0, 0.1, 0.25, 1),
    reuseConnection: fc.boolean(),
  },
  { requiredKeys: [] },
);

const rateLimitArb = fc.record(
  {
    requestsPerSecond: fc.constantFrom(0.5, 1, 2.5, 10, 1000),
    burst: fc.integer({ min: 1, max: 100 }),
    by: fc.constantFrom('sourceIp', { header: 'X-Api-Key' }),
    maxKeys: fc.integer({ min: 1, max: 1_000_000 }),
  },
  { requiredKeys: ['requestsPerSecond'] },
);

const discoveryArb = fc.record({
  dns: fc.record(
    {
      name: fc.constantFrom('web.internal', 'Web.Internal.'),
      type: fc.constantFrom('A', 'AAAA'),
      port: fc.integer({ min: 1, max: 65535 }),
      scheme: fc.constantFrom('http', 'https'),
      interval: durationArb(1_000, 120_000),
      servers: fc.constantFrom(['127.0.0.1:53'], ['[::1]:5353', '10.0.0.1:53']),
      drain: fc.constantFrom([], ['10.0.0.1:80', '[fd00::1]:8080']),
    },
    { requiredKeys: ['name'] },
  ),
});

const poolArb = fc.record(
  {
    strategy: fc.constantFrom('random', 'round-robin', 'weighted', 'least-request', 'peak-ewma'),
    backends: fc.uniqueArray(backendArb, { maxLength: 5, selector: (b) => (b.id ?? b.url).toLowerCase().replace(/\/$/, '') }),
    healthCheck: healthCheckArb,
    outlierDetection: fc.record(
      {
        enabled: fc.boolean(),
        consecutiveGatewayFailures: fc.integer({ min: 0, max: 1000 }),
        consecutive5xx: fc.integer({ min: 0, max: 1000 }),
        baseEjectionTime: durationArb(1, 30_000),
        maxEjectionTime: durationArb(30_000, 600_000),
        maxEjectionPercent: fc.constantFrom(0, 10, 33.5, 100),
        activeCheckUnejects: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    timeouts: fc.record({ connect: durationArb(1, 10_000), response: durationArb(1, 100_000), idle: durationArb(1, 100_000), tunnel: durationArb(1, 10_000_000) }, { requiredKeys: [] }),
    retries: fc.integer({ min: 0, max: 10 }),
    retryBudget: fc.record({ percent: fc.constantFrom(0, 20, 12.5), minConcurrent: fc.integer({ min: 0, max: 50 }) }, { requiredKeys: [] }),
    panicThreshold: fc.constantFrom(0, 50, 99.5),
    slowStart: durationArb(0, 60_000),
    ewma: fc.record({ decay: durationArb(1, 60_000), initial: durationArb(0, 1_000) }, { requiredKeys: [] }),
    circuitBreaker: fc.record({ maxRequestsPerBackend: fc.integer({ min: 0, max: 100 }), maxPendingPerBackend: fc.integer({ min: 0, max: 100 }) }, { requiredKeys: [] }),
    connections: fc.record({ max: fc.integer({ min: 0, max: 1000 }) }, { requiredKeys: [] }),
    tls: fc
      .tuple(fc.record({ ca: fc.constantFrom('./ca.pem', '/etc/ssl/ca.pem'), serverName: fc.constantFrom('api.internal') }, { requiredKeys: [] }), fc.boolean())
      // A client certificate is a pair: cert and key together or neither.
      .map(([tls, withClientCertificate]) => (withClientCertificate ? { ...tls, cert: './client.pem', key: './client-key.pem' } : tls)),
    sticky: fc.record(
      {
        cookie: fc.constantFrom('SRV', 'backend_id', 'x-sticky'),
        ttl: fc.constantFrom('1s', '1h', 60_000),
        secure: fc.boolean(),
        httpOnly: fc.boolean(),
        sameSite: fc.constantFrom('Strict', 'Lax'),
      },
      { requiredKeys: ['cookie'] },
    ),
    rateLimit: rateLimitArb,
    discovery: discoveryArb,
  },
  { requiredKeys: [] },
).chain((pool) =>
  // Hashing strategies need hashOn (and only they take it); ring-hash alone takes ringSize.
  fc.record(
    {
      strategy: fc.constantFrom('ring-hash', 'maglev'),
      hashOn: fc.oneof(fc.constant('sourceIp'), fc.record({ header: fc.constantFrom('X-User', 'x-tenant') }), fc.record({ cookie: fc.constantFrom('session', 'uid') }), fc.record({ query: fc.constantFrom('user', 'q') })),
      ringSize: fc.integer({ min: 1, max: 4096 }),
      use: fc.boolean(),
    },
    { requiredKeys: ['strategy', 'hashOn', 'use'] },
  ).map((hashing) => {
    if (pool.strategy !== undefined || !hashing.use) return pool;
    const { ringSize, use: _use, ...rest } = hashing;
    return { ...pool, ...rest, ...(hashing.strategy === 'ring-hash' && ringSize !== undefined ? { ringSize } : {}) };
  }),
);

const poolNameArb = fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/).filter((name) => name !== '__proto__');

const routeArb = (poolNames: readonly string[]) =>
  fc.record(
    {
      match: fc.record(
        { host: fc.constantFrom('api.example.com', '*.Example.com', 'localhost'), pathPrefix: fc.constantFrom('/', '/v1', '/api/') },
        { requiredKeys: [] },
      ),
      pool: fc.constantFrom(...poolNames),
      maxBodySize: fc.oneof(fc.constant(0), fc.constant('16kb'), fc.integer({ min: 0, max: 1_000_000 }), fc.constant('1gb')),
      rateLimit: rateLimitArb,
    },
    { requiredKeys: ['pool'] },
  );

/** `{ routes, pools }` in file form; most of them valid. */
export const replicatedFileArb = fc
  .dictionary(poolNameArb, poolArb, { minKeys: 0, maxKeys: 4 })
  .chain((pools) => {
    const names = Object.keys(pools);
    if (names.length === 0) return fc.constant({ routes: [] as unknown[], pools });
    return fc.array(routeArb(names), { minLength: names.length > 1 ? 1 : 0, maxLength: 4 }).map((routes) => ({ routes: routes as unknown[], pools }));
  });
