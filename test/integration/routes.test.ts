// Routes end to end: real backends that record exactly what reached them, matching of every kind, normalised paths and bypass attempts.

import { describe, expect, it } from 'vitest';
import http from 'node:http';
import { perTestResources } from '../helpers/gateway.js';
import { rawExchange, type TestBackend } from '../helpers/backend.js';

const { backend, gateway } = perTestResources();

/** A request whose target is sent exactly as written (URL parsing would normalise it first). */
function send(port: number, path: string, options: { method?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

function pools(list: Record<string, TestBackend>): string {
  return `pools:\n${Object.entries(list)
    .map(([name, b]) => `  ${name}: { backends: [ { url: ${b.url}, id: ${b.name} } ] }`)
    .join('\n')}\n`;
}

function seenUrls(b: TestBackend): string[] {
  return b.seen.map((seen) => `${seen.method} ${seen.url}`);
}

describe('route matching through the proxy', () => {
  it('every kind of match picks its pool, first match wins, and the backend receives the request as sent', async () => {
    const [exact, segments, regex, canary, posts, beta, rest] = await Promise.all(['exact', 'segments', 'regex', 'canary', 'posts', 'beta', 'rest'].map((name) => backend(name)));
    const gw = await gateway(`routes:
  - name: health
    match: { path: /health }
    pool: exact
  - name: canary
    match: { pathPrefix: /, headers: { X-Canary: always } }
    pool: canary
  - name: api
    match: { pathPrefix: /api, pathPrefixSegments: true, methods: [GET, HEAD] }
    pool: segments
  - name: users
    match: { pathRegex: "/users/[0-9]+(/.*)?" }
    pool: regex
  - name: writes
    match: { methods: [POST] }
    pool: posts
  - name: beta
    match: { query: { beta: "1" } }
    pool: beta
  - name: rest
    pool: rest
${pools({ exact: exact!, segments: segments!, regex: regex!, canary: canary!, posts: posts!, beta: beta!, rest: rest! })}`);
    const cases: Array<[string, string, http.OutgoingHttpHeaders, string]> = [
      ['GET', '/health', {}, 'exact'],
      ['GET', '/health/x', {}, 'rest'],
      ['GET', '/api', {}, 'segments'],
      ['GET', '/api/v1/items?limit=5&x=%2F', {}, 'segments'],
      ['GET', '/apiary', {}, 'rest'],
      ['POST', '/api/v1/items', {}, 'posts'],
      ['GET', '/users/42/orders', {}, 'regex'],
      ['GET', '/users/abc', {}, 'rest'],
      ['GET', '/anything?beta=1', {}, 'beta'],
      ['GET', '/api/x', { 'x-canary': 'always' }, 'canary'],
    ];
    for (const [method, path, headers, expected] of cases) {
      const res = await send(gw.port, path, { method, headers });
      expect(`${method} ${path} -> ${String(res.headers['x-backend'])}`).toBe(`${method} ${path} -> ${expected}`);
    }
    expect(seenUrls(segments!)).toEqual(['GET /api', 'GET /api/v1/items?limit=5&x=%2F']);
    expect(seenUrls(regex!)).toEqual(['GET /users/42/orders']);
    expect(seenUrls(rest!)).toEqual(['GET /health/x', 'GET /apiary', 'GET /users/abc']);
  });
});

describe('path normalisation before routing', () => {
  async function protectedSetup(extra = '') {
    const [admin, pub] = await Promise.all([backend('admin'), backend('pub')]);
    const gw = await gateway(`${extra}routes:
  - match: { pathPrefix: /admin, pathPrefixSegments: true }
    pool: admin
  - match: { pathPrefix: / }
    pool: pub
${pools({ admin: admin!, pub: pub! })}`);
    return { admin: admin!, pub: pub!, gw };
  }

  it('dot segments, doubled slashes and escaped letters cannot reach /admin through another route; the backend gets the normalised path', async () => {
    const { admin, pub, gw } = await protectedSetup();
    for (const path of ['/pub/../admin/users', '/pub/%2e%2e/admin/users', '//admin//users', '/%61dmin/users', '/./admin/./users', '/../../admin/users?q=/../x']) {
      const res = await send(gw.port, path);
      expect([path, res.status, res.headers['x-backend']]).toEqual([path, 200, 'admin']);
    }
    expect(seenUrls(admin)).toEqual([
      'GET /admin/users',
      'GET /admin/users',
      'GET /admin/users',
      'GET /admin/users',
      'GET /admin/users',
      'GET /admin/users?q=/../x',
    ]);
    expect(pub.seen).toEqual([]);
  });

  it('%2F and %5C are refused with 400 before any backend sees them', async () => {
    const { admin, pub, gw } = await protectedSetup();
    for (const path of ['/pub/..%2Fadmin', '/pub/..%5cadmin', '/admin%2fusers']) {
      const res = await send(gw.port, path);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringContaining('escaped slash'), requestId: res.headers['x-request-id'] } });
    }
    const broken = await send(gw.port, '/a%zz');
    expect(broken.status).toBe(400);
    expect(broken.body).toContain('invalid percent-escape');
    expect(admin.seen).toEqual([]);
    expect(pub.seen).toEqual([]);
  });

  it('with limits.rejectEncodedSlash false, %2F stays escaped for routes and backend alike', async () => {
    const { admin, pub, gw } = await protectedSetup('limits: { rejectEncodedSlash: false }\n');
    const res = await send(gw.port, '/pub/..%2fadmin');
    expect(res.headers['x-backend']).toBe('pub');
    expect(seenUrls(pub)).toEqual(['GET /pub/..%2Fadmin']);
    expect(admin.seen).toEqual([]);
  });

  it('a raw request line with dot segments is normalised the same way', async () => {
    const { admin, gw } = await protectedSetup();
    const answer = await rawExchange(gw.port, 'GET /x/../admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(seenUrls(admin)).toEqual(['GET /admin']);
  });
});

describe('rewriting, redirects and fixed answers through the proxy', () => {
  it('the backend receives the rewritten path with the query kept, and the Host the route names', async () => {
    const [api, legacy, users, named] = await Promise.all(['api', 'legacy', 'users', 'named'].map((name) => backend(name)));
    const gw = await gateway(`routes:
  - match: { pathPrefix: /api, pathPrefixSegments: true }
    rewrite: { stripPrefix: /api }
    pool: api
  - match: { pathPrefix: /v1/ }
    rewrite: { replacePrefix: { from: /v1/, to: /internal/v2/ }, host: legacy.internal }
    pool: legacy
  - match: { pathRegex: "/users/([0-9]+)/profile" }
    rewrite: { pathRegex: { pattern: "/users/([0-9]+)/profile", replacement: "/profiles?id=$1" } }
    pool: users
  - match: { pathPrefix: /named }
    rewrite: { hostFromBackend: true }
    pool: named
${pools({ api: api!, legacy: legacy!, users: users!, named: named! })}`);
    await send(gw.port, '/api/items?limit=5', { headers: { host: 'shop.example.com' } });
    await send(gw.port, '/api', { headers: { host: 'shop.example.com' } });
    await send(gw.port, '/pub/../v1/orders/7?x=%2F', { headers: { host: 'shop.example.com' } });
    await send(gw.port, '/users/42/profile', { headers: { host: 'shop.example.com' } });
    await send(gw.port, '/named/x', { headers: { host: 'shop.example.com' } });
    expect(seenUrls(api!)).toEqual(['GET /items?limit=5', 'GET /']);
    expect(api!.seen[0]!.headers.host).toBe('shop.example.com');
    expect(seenUrls(legacy!)).toEqual(['GET /internal/v2/orders/7?x=%2F']);
    expect(legacy!.seen[0]!.headers.host).toBe('legacy.internal');
    expect(legacy!.seen[0]!.headers['x-forwarded-host']).toBe('shop.example.com');
    expect(seenUrls(users!)).toEqual(['GET /profiles?id=42']);
    expect(named!.seen[0]!.headers.host).toBe(`127.0.0.1:${named!.port}`);
  });

  it('redirects and fixed answers come from the route, the request body is drained and the connection kept', async () => {
    const [web] = await Promise.all([backend('web')]);
    const gw = await gateway(`routes:
  - match: { host: old.example.com }
    redirect: { host: new.example.com, status: 301 }
  - match: { pathPrefix: /secure }
    redirect: { scheme: https, port: 8443 }
  - match: { path: /robots.txt }
    respond: { status: 200, body: "User-agent: *\\nDisallow: /\\n" }
  - match: { pathPrefix: /internal, pathPrefixSegments: true }
    respond: { status: 403, body: '{"error":"forbidden"}', contentType: application/json }
  - pool: web
${pools({ web: web! })}`);
    const moved = await send(gw.port, '/a/./b?q=1', { headers: { host: 'old.example.com:8080' } });
    expect([moved.status, moved.headers.location]).toEqual([301, 'http://new.example.com/a/b?q=1']);
    const secure = await send(gw.port, '/secure/x', { headers: { host: 'shop.example.com' } });
    expect([secure.status, secure.headers.location]).toEqual([302, 'https://shop.example.com:8443/secure/x']);
    const robots = await send(gw.port, '/robots.txt');
    expect([robots.status, robots.headers['content-type'], robots.body]).toEqual([200, 'text/plain; charset=utf-8', 'User-agent: *\nDisallow: /\n']);
    // A body on a keep-alive connection, then a second request on it: the answer did not leave the body behind.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const first = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/internal/x', method: 'POST', agent, headers: { 'content-length': '5' } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end('hello');
    });
    expect(first).toEqual({ status: 403, body: '{"error":"forbidden"}' });
    const second = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: gw.port, path: '/x', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
    agent.destroy();
    expect(second).toBe(200);
    expect(seenUrls(web!)).toEqual(['GET /x']);
  });
});

describe('header rules and request ids', () => {
  it('request and response rules set, add and remove fields with variables; the backend and the client see exactly that', async () => {
    const [web] = await Promise.all([backend('web')]);
    web!.handle((req, res) => {
      res.setHeader('x-powered-by', 'php');
      res.setHeader('x-request-id', 'backend-own-id');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
    const gw = await gateway(`routes:
  - match: { pathPrefix: /api }
    pool: web
    headers:
      request:
        set: { X-Client: "\${clientIp} via \${scheme}://\${host}", X-Tenant: fixed }
        add: { X-Tag: added }
        remove: [Cookie]
      response:
        set: { Strict-Transport-Security: max-age=63072000, X-Served-Id: "\${requestId}" }
        add: { Set-Cookie: c=3 }
        remove: [X-Powered-By]
  - match: { path: /teapot }
    respond: { status: 418, body: tea }
    headers: { response: { set: { X-Frame-Options: DENY } } }
${pools({ web: web! })}`);
    const res = await send(gw.port, '/api/x', { headers: { host: 'shop.example.com', cookie: 'secret=1', 'x-tag': 'client', 'x-tenant': 'forged' } });
    const echoed = JSON.parse(res.body) as { url: string; headers: Record<string, string> };
    const id = String(res.headers['x-request-id']);
    expect(echoed.headers['x-client']).toBe('127.0.0.1 via http://shop.example.com');
    expect(echoed.headers['x-tenant']).toBe('fixed');
    expect(echoed.headers['x-tag']).toBe('client, added');
    expect(echoed.headers['cookie']).toBeUndefined();
    expect(echoed.headers['x-request-id']).toBe(id);
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['strict-transport-security']).toBe('max-age=63072000');
    expect(res.headers['x-served-id']).toBe(id);
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2', 'c=3']);
    const teapot = await send(gw.port, '/teapot');
    expect([teapot.status, teapot.body, teapot.headers['x-frame-options']]).toEqual([418, 'tea', 'DENY']);
    expect(teapot.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('an id from a trusted proxy is kept end to end; from anyone else it is replaced; error bodies carry it; traceparent passes untouched', async () => {
    const [web] = await Promise.all([backend('web')]);
    const gw = await gateway(`trustedProxies: [127.0.0.1]
routes:
  - match: { pathPrefix: /api }
    pool: web
${pools({ web: web! })}`);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const kept = await send(gw.port, '/api/a', { headers: { 'x-request-id': 'edge-123', traceparent, tracestate: 'k=v' } });
    expect(kept.headers['x-request-id']).toBe('edge-123');
    expect(web!.seen[0]!.headers['x-request-id']).toBe('edge-123');
    expect(web!.seen[0]!.headers['traceparent']).toBe(traceparent);
    expect(web!.seen[0]!.headers['tracestate']).toBe('k=v');
    const generated = await send(gw.port, '/api/b');
    const id = String(generated.headers['x-request-id']);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(web!.seen[1]!.headers['x-request-id']).toBe(id);
    const missing = await send(gw.port, '/nowhere', { headers: { 'x-request-id': 'edge-404' } });
    expect(missing.status).toBe(404);
    expect(missing.headers['x-request-id']).toBe('edge-404');
    expect(JSON.parse(missing.body).error.requestId).toBe('edge-404');
  });

  it('an id from an untrusted client is replaced', async () => {
    const [web] = await Promise.all([backend('web')]);
    const gw = await gateway(pools({ web: web! }));
    const res = await send(gw.port, '/', { headers: { 'x-request-id': 'forged' } });
    expect(res.headers['x-request-id']).not.toBe('forged');
    expect(web!.seen[0]!.headers['x-request-id']).toBe(res.headers['x-request-id']);
  });

  it('refuses rules on framing and hop-by-hop fields and unknown variables, saying why', async () => {
    const { validateReplicated } = await import('../../src/config/validate.js');
    const problems = (headers: unknown): string[] => {
      const result = validateReplicated({ routes: [{ pool: 'a', headers }], pools: { a: { backends: [] } } });
      return result.ok ? [] : result.problems.map((problem) => problem.message);
    };
    expect(problems({ request: { set: { 'Content-Length': '5' } } })).toEqual([expect.stringContaining('Content-Length cannot be changed by header rules: balancer frames each message itself')]);
    expect(problems({ response: { add: { Connection: 'x' } } })).toEqual([expect.stringContaining('hop-by-hop')]);
    expect(problems({ request: { remove: ['Transfer-Encoding'] } })).toEqual([expect.stringContaining('transfer-encoding cannot be changed')]);
    expect(problems({ request: { set: { Host: 'x' } } })).toEqual([expect.stringContaining('use rewrite.host')]);
    expect(problems({ request: { set: { 'X-A': '${clientIP}' } } })).toEqual([expect.stringContaining('unknown variable ${clientIP}; the variables are ${clientIp}, ${requestId}, ${host}, ${scheme}')]);
  });
});

describe('the routes admin API', () => {
  it('lists routes with their labels and explains a request: redirect, fixed answer, refused path, no route, bad input', async () => {
    const [web] = await Promise.all([backend('web')]);
    const gw = await gateway(`routes:
  - name: https
    match: { host: shop.example.com, headers: { X-Forwarded-Proto: http } }
    redirect: { scheme: https }
    headers: { response: { set: { X-Why: upgrade } } }
  - match: { path: /ping }
    respond: { status: 200, body: pong }
  - match: { pathPrefix: /app }
    pool: web
${pools({ web: web! })}`);
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${gw.adminUrl}${path}`, {
        method,
        headers: { authorization: 'Bearer test-token', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const listed = await call('GET', '/api/v1/routes');
    expect(listed.body['routes']).toEqual([
      { index: 0, label: 'https', route: { name: 'https', match: { host: 'shop.example.com', headers: { 'x-forwarded-proto': 'http' } }, redirect: { scheme: 'https' }, headers: { response: { set: { 'x-why': 'upgrade' } } } } },
      { index: 1, label: '1', route: { match: { path: '/ping' }, respond: { status: 200, body: 'pong' } } },
      { index: 2, label: '2', route: { match: { pathPrefix: '/app' }, pool: 'web' } },
    ]);
    const redirect = await call('POST', '/api/v1/routes/test', { method: 'GET', url: 'http://shop.example.com/a?b=1', headers: { 'X-Forwarded-Proto': 'http' } });
    expect(redirect.body).toMatchObject({ outcome: 'redirect', route: { index: 0, label: 'https' }, answer: { status: 302, headers: { location: 'https://shop.example.com/a?b=1', 'x-why': 'upgrade' } } });
    expect((await call('POST', '/api/v1/routes/test', { method: 'GET', url: '/ping' })).body).toMatchObject({ outcome: 'respond', answer: { status: 200 } });
    expect((await call('POST', '/api/v1/routes/test', { method: 'GET', url: '/app/%2F' })).body).toMatchObject({ outcome: 'rejected', status: 400 });
    expect((await call('POST', '/api/v1/routes/test', { method: 'GET', url: '/nothing' })).body).toMatchObject({ outcome: 'no-route', status: 404, path: '/nothing' });
    expect((await call('POST', '/api/v1/routes/test', { method: 'GET /x', url: '/' })).status).toBe(400);
    expect((await call('POST', '/api/v1/routes/test', { method: 'GET', url: '/', headers: ['x'] })).status).toBe(400);
    expect(web!.seen).toEqual([]);
  });
});

describe('per-route timeout and retries', () => {
  it('retryOn gateway-error asks another backend after a 503 answer; without it the 503 is relayed', async () => {
    const [sick, well] = await Promise.all([backend('sick'), backend('well')]);
    sick!.handle((_req, res) => {
      res.writeHead(503, { 'x-backend': 'sick' });
      res.end('down');
    });
    const gw = await gateway(`routes:
  - match: { pathPrefix: /retry }
    retryOn: [gateway-error]
    pool: web
  - pool: web
pools:
  web:
    strategy: round-robin
    outlierDetection: { enabled: false }
    backends: [ { url: ${sick!.url}, id: sick }, { url: ${well!.url}, id: well } ]
`);
    const statuses: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await send(gw.port, '/retry/x');
      statuses.push(`${res.status} ${String(res.headers['x-backend'])}`);
    }
    expect(statuses).toEqual(['200 well', '200 well', '200 well', '200 well']);
    const plain: number[] = [];
    for (let i = 0; i < 2; i++) plain.push((await send(gw.port, '/plain')).status);
    expect(plain.sort()).toEqual([200, 503]);
    // A POST with a body is never retried after the backend saw it.
    const posted: number[] = [];
    for (let i = 0; i < 2; i++) {
      posted.push(
        await new Promise<number>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: gw.port, path: '/retry/p', method: 'POST', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end('body');
        }),
      );
    }
    expect(posted.sort()).toEqual([200, 503]);
  });

  it('retries: 0 on a route overrides the pool: a dead backend is not retried there', async () => {
    const [alive, dead] = await Promise.all([backend('alive'), backend('dead')]);
    await dead!.close();
    const gw = await gateway(`routes:
  - match: { pathPrefix: /once }
    retries: 0
    pool: web
  - pool: web
pools:
  web:
    strategy: round-robin
    retries: 2
    outlierDetection: { enabled: false }
    backends: [ { url: ${dead!.url}, id: dead }, { url: ${alive!.url}, id: alive } ]
`);
    const retried = [(await send(gw.port, '/x')).status, (await send(gw.port, '/x')).status];
    expect(retried).toEqual([200, 200]);
    const once = [(await send(gw.port, '/once')).status, (await send(gw.port, '/once')).status].sort();
    expect(once).toEqual([200, 503]);
  });

  it('a route timeout cuts a slow backend with retries in between: 504 ROUTE_TIMEOUT', async () => {
    const slow = await Promise.all([backend('s1'), backend('s2'), backend('s3')]);
    const held: http.ServerResponse[] = [];
    const reached = new Set<string>();
    for (const b of slow) {
      b.handle((_req, res) => {
        reached.add(b.name);
        held.push(res);
      });
    }
    const gw = await gateway(`routes:
  - match: { pathPrefix: /slow }
    timeout: 2s
    retries: 10
    retryOn: [5xx]
    pool: web
pools:
  web:
    strategy: round-robin
    # Eleven attempts of at least 300 ms each outlast the route's 2 s, so the route's timeout ends the exchange, and a
    # loaded machine still fits a retry in before it.
    timeouts: { response: 300ms }
    retryBudget: { minConcurrent: 10 }
    outlierDetection: { enabled: false }
    backends:
${slow.map((b) => `      - { url: ${b.url}, id: ${b.name} }`).join('\n')}
`);
    const res = await send(gw.port, '/slow/x');
    for (const response of held) response.destroy();
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body).error.code).toBe('ROUTE_TIMEOUT');
    // At least one response timeout was retried on another backend before the route's time ran out.
    expect(reached.size).toBeGreaterThanOrEqual(2);
  });

  it('refuses a policy on a route that forwards nothing, and bad retry conditions', async () => {
    const { validateReplicated } = await import('../../src/config/validate.js');
    const problems = (route: unknown): string[] => {
      const result = validateReplicated({ routes: [route], pools: { a: { backends: [] } } });
      return result.ok ? [] : result.problems.map((problem) => problem.message);
    };
    expect(problems({ respond: { status: 200 }, timeout: '1s' })).toEqual([expect.stringContaining('routes[0].timeout: applies to requests forwarded to a pool')]);
    expect(problems({ pool: 'a', retryOn: ['timeout'] })).toEqual([expect.stringContaining('must be one of connect-failure, reset, gateway-error, 5xx')]);
    expect(problems({ pool: 'a', retries: 11 })).toEqual([expect.stringContaining('routes[0].retries')]);
  });
});
