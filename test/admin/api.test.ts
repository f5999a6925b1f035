import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAdminServer } from '../../src/admin/api.js';
import { BalancerError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { closeServer, createFakeControl, listenLocal, type FakeControl } from './fake-control.js';

const TOKEN = 's3cret-token';
const auth = { Authorization: `Bearer ${TOKEN}` };

let control: FakeControl;
let base: string;
const logger = memoryLogger();
const server = createAdminServer({
  control: new Proxy({} as FakeControl, { get: (_t, key) => Reflect.get(control, key) }),
  metrics: createMetrics({ collectDefault: false }),
  token: TOKEN,
  logger,
  bodyLimit: 4096,
});

beforeAll(async () => {
  base = await listenLocal(server);
});
afterAll(() => closeServer(server));
beforeEach(() => {
  control = createFakeControl();
});

async function errorOf(res: Response): Promise<{ code: string; message: string; details: unknown[] }> {
  const body = (await res.json()) as { error: { code: string; message: string; details: unknown[] } };
  return body.error;
}

describe('admin API authentication', () => {
  it('answers 401 with WWW-Authenticate without a token', async () => {
    const res = await fetch(`${base}/api/v1/status`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await errorOf(res)).code).toBe('UNAUTHORIZED');
  });

  it('answers 403 to a wrong token, including one that is a prefix of the right one', async () => {
    for (const wrong of ['nope', TOKEN.slice(0, -1), TOKEN + 'x']) {
      const res = await fetch(`${base}/api/v1/status`, { headers: { Authorization: `Bearer ${wrong}` } });
      expect(res.status).toBe(403);
      expect((await errorOf(res)).code).toBe('FORBIDDEN');
    }
  });

  it('answers 200 with the right token and the scheme in any case', async () => {
    const res = await fetch(`${base}/api/v1/status`, { headers: { Authorization: `bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { pools: { name: string }[] };
    expect(body.pools.map((p) => p.name)).toEqual(['web', 'api']);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('authenticates before routing: unknown API paths are 401 without a token', async () => {
    expect((await fetch(`${base}/api/v1/nothing-here`)).status).toBe(401);
  });

  it('serves /metrics, /healthz, /readyz and the dashboard page without a token', async () => {
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await metrics.text()).toContain('balancer_config_version');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    control.isReady = false;
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toBe('not ready: the test said so\n');
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe');
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const html = await page.text();
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });
});

describe('admin API with no token configured', () => {
  it('refuses reads and writes with instructions, and logs them once at start', async () => {
    const log = memoryLogger();
    const noToken = createAdminServer({ control: createFakeControl(), metrics: createMetrics({ collectDefault: false }), token: null, logger: log });
    const url = await listenLocal(noToken);
    try {
      for (const [method, path] of [['GET', '/api/v1/status'], ['DELETE', '/api/v1/pools/web/backends/web-1']] as const) {
        const res = await fetch(`${url}${path}`, { method, headers: auth });
        expect(res.status).toBe(403);
        const error = await errorOf(res);
        expect(error.code).toBe('ADMIN_TOKEN_NOT_SET');
        expect(error.message).toContain('BALANCER_ADMIN_TOKEN');
        expect(error.message).toContain('admin.tokenFile');
      }
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
      const warnings = log.lines.filter((l) => l['level'] === 'warn' && String(l['msg']).includes('admin.token'));
      expect(warnings).toHaveLength(1);
    } finally {
      await closeServer(noToken);
    }
  });
});

describe('admin API request validation', () => {
  it('answers 400 to malformed JSON', async () => {
    const res = await fetch(`${base}/api/v1/pools/web/backends`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: '{"url": ',
    });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe('BAD_REQUEST');
  });

  it('answers 400 listing every wrong or unknown field', async () => {
    const res = await fetch(`${base}/api/v1/pools/web/backends`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ weight: 'heavy', wieght: 2 }),
    });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.details).toEqual([
      { path: 'url', message: 'url is required' },
      { path: 'weight', message: 'weight must be a number' },
      { path: 'wieght', message: expect.stringContaining('unknown field') },
    ]);
  });

  it('answers 415 to a wrong or missing content type', async () => {
    for (const type of ['text/plain', 'application/yaml', 'application/json; charset=latin1']) {
      const res = await fetch(`${base}/api/v1/pools/web/backends`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': type },
        body: '{"url":"http://127.0.0.1:9003"}',
      });
      expect(res.status, type).toBe(415);
      expect((await errorOf(res)).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    expect(control.calls.filter((c) => c.method === 'addBackend')).toHaveLength(0);
  });

  it('answers 413 to a body over the limit, declared up front', async () => {
    const res = await fetch(`${base}/api/v1/config`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ routes: [], pools: {}, padding: 'x'.repeat(5000) }),
    });
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe('PAYLOAD_TOO_LARGE');
    expect(control.calls.filter((c) => c.method === 'putConfig')).toHaveLength(0);
  });

  it('answers 413 to a chunked body once it streams past the limit', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/api/v1/config`, {
        method: 'PUT',
        headers: { ...auth, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      // Keep writing (bounded) until the server answers; it must not wait for the end of the body.
      let sent = 0;
      const pump = (): void => {
        if (sent >= 64 * 1024) return;
        sent += 1024;
        req.write('x'.repeat(1024), () => setImmediate(pump));
      };
      pump();
    });
    expect(status).toBe(413);
  });

  it('passes a 422 from the control plane through with every detail', async () => {
    const details = [
      { path: 'pools.web.backends[0].url', line: 3, column: 12, message: 'url must be http or https' },
      { path: 'routes[0].pool', line: 7, column: 11, message: 'unknown pool nope' },
    ];
    control.failWrites = new BalancerError('CONFIG_INVALID', 'config has 2 problems', { details });
    const res = await fetch(`${base}/api/v1/config`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'application/yaml' },
      body: 'routes: []\npools: {}\n',
    });
    expect(res.status).toBe(422);
    const error = await errorOf(res);
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.details).toEqual(details);
  });

  it('parses YAML bodies and hands the source text to the validator', async () => {
    const yamlText = 'routes: []\npools:\n  web:\n    backends:\n      - url: http://127.0.0.1:9001 # keep\n';
    const res = await fetch(`${base}/api/v1/config`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'text/yaml' },
      body: yamlText,
    });
    expect(res.status).toBe(200);
    const call = control.calls.find((c) => c.method === 'putConfig')!;
    expect(call.args[0]).toEqual({ routes: [], pools: { web: { backends: [{ url: 'http://127.0.0.1:9001' }] } } });
    expect(call.args[1]).toEqual({ sourceText: yamlText, force: false, origin: { via: 'api' } });
  });

  it('passes ?force=true through to config replacement and backend removal, and refuses a malformed force', async () => {
    const put = await fetch(`${base}/api/v1/config?force=true`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ routes: [], pools: {} }),
    });
    expect(put.status).toBe(200);
    expect(control.calls.find((c) => c.method === 'putConfig')!.args[1]).toMatchObject({ force: true });
    const del = await fetch(`${base}/api/v1/pools/web/backends/web-1?force`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(200);
    expect(control.calls.find((c) => c.method === 'removeBackend')!.args[2]).toEqual({ force: true, origin: { via: 'api' } });
    const bad = await fetch(`${base}/api/v1/pools/web/backends/web-1?force=yes-please`, { method: 'DELETE', headers: auth });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).message).toContain('force must be true or false');
  });

  it('passes an Idempotency-Key through as the write\'s request id, and refuses a malformed one', async () => {
    const key = { ...auth, 'Idempotency-Key': 'deploy-42:add.web-9' };
    const put = await fetch(`${base}/api/v1/config`, { method: 'PUT', headers: { ...key, 'Content-Type': 'application/json' }, body: JSON.stringify({ routes: [], pools: {} }) });
    expect(put.status).toBe(200);
    expect(control.calls.find((c) => c.method === 'putConfig')!.args[1]).toMatchObject({ requestId: 'deploy-42:add.web-9' });
    const post = await fetch(`${base}/api/v1/pools/web/backends`, { method: 'POST', headers: { ...key, 'Content-Type': 'application/json' }, body: JSON.stringify({ url: 'http://127.0.0.1:9009' }) });
    expect(post.status).toBe(201);
    expect(control.backendWriteOptions.at(-1)).toMatchObject({ requestId: 'deploy-42:add.web-9' });
    const patch = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'PATCH', headers: { ...key, 'Content-Type': 'application/json' }, body: JSON.stringify({ weight: 2 }) });
    expect(patch.status).toBe(200);
    expect(control.backendWriteOptions.at(-1)).toMatchObject({ requestId: 'deploy-42:add.web-9' });
    const del = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'DELETE', headers: key });
    expect(del.status).toBe(200);
    expect(control.calls.find((c) => c.method === 'removeBackend')!.args[2]).toMatchObject({ force: false, requestId: 'deploy-42:add.web-9' });
    // Without the header the store makes its own id.
    await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ weight: 3 }) });
    expect(control.backendWriteOptions.at(-1)).not.toHaveProperty('requestId');
    const bad = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'PATCH', headers: { ...auth, 'Idempotency-Key': 'has spaces', 'Content-Type': 'application/json' }, body: JSON.stringify({ weight: 2 }) });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).message).toContain('Idempotency-Key');
  });

  it('answers 409 UNSAFE_CHANGE with every reason when the store refuses a change that would take traffic down', async () => {
    control.failWrites = new BalancerError('UNSAFE_CHANGE', 'refused: pool "web" would have no backends', { details: [{ path: '', message: 'pool "web" would have no backends' }] });
    const res = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(409);
    const error = await errorOf(res);
    expect(error.code).toBe('UNSAFE_CHANGE');
    expect(error.details).toHaveLength(1);
  });

  it('answers 400 with positions to YAML that does not parse', async () => {
    const res = await fetch(`${base}/api/v1/config`, {
      method: 'PUT',
      headers: { ...auth, 'Content-Type': 'application/yaml' },
      body: 'routes: []\npools: {web: [\n',
    });
    expect(res.status).toBe(400);
    const error = await errorOf(res);
    expect(error.details.length).toBeGreaterThan(0);
    expect(error.details[0]).toMatchObject({ line: expect.any(Number), column: expect.any(Number) });
  });

  it('answers 503 with Retry-After when there is no leader', async () => {
    control.failWrites = new BalancerError('NO_LEADER', 'no Raft leader is known');
    const res = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect((await errorOf(res)).code).toBe('NO_LEADER');
  });

  it('answers 500 INTERNAL to unexpected errors without leaking them, and logs them', async () => {
    control.failWrites = new Error('disk on fire at /var/secret/path');
    const res = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).toContain('"INTERNAL"');
    expect(text).not.toContain('disk on fire');
    expect(logger.lines.some((l) => l['level'] === 'error' && JSON.stringify(l).includes('disk on fire'))).toBe(true);
  });
});

describe('admin API config history', () => {
  it('lists the history without configs, newest first, and returns one version with its routes and pools', async () => {
    const list = await fetch(`${base}/api/v1/config/history`, { headers: auth });
    expect(list.status).toBe(200);
    const body = (await list.json()) as { current: number; versions: Record<string, unknown>[] };
    expect(body.current).toBe(3);
    expect(body.versions.map((v) => v['version'])).toEqual([3, 2]);
    expect(body.versions[1]).toEqual({
      version: 2,
      requestId: 'req-2',
      change: 'set config',
      at: '2026-11-30T01:00:00.000Z',
      source: { kind: 'file', node: 'n1', file: '/etc/balancer/balancer.yaml' },
      clientRequestId: 'deploy-42',
    });
    const one = await fetch(`${base}/api/v1/config/history/2`, { headers: auth });
    expect(one.headers.get('etag')).toBe('"2"');
    expect(await one.json()).toMatchObject({ version: 2, routes: [], pools: { web: { backends: [{ id: 'web-1' }] } } });
    expect((await fetch(`${base}/api/v1/config/history/9`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${base}/api/v1/config/history/two`, { headers: auth })).status).toBe(400);
  });

  it('diffs two versions', async () => {
    const res = await fetch(`${base}/api/v1/config/diff?from=2&to=3`, { headers: auth });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { from: number; to: number; diff: string };
    expect(body).toMatchObject({ from: 2, to: 3 });
    expect(body.diff).toContain('+      - { url: http://10.0.0.2:80, id: web-2 }');
    expect((await fetch(`${base}/api/v1/config/diff?from=2`, { headers: auth })).status).toBe(400);
  });

  it('rolls back with If-Match and force, answering the new version and the request id', async () => {
    const res = await fetch(`${base}/api/v1/config/rollback?force=true`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json', 'If-Match': '"3"', 'X-Request-Id': 'deploy-43', 'User-Agent': 'balancer-cli/9.9.9' },
      body: JSON.stringify({ version: 2 }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ version: 4, rolledBackTo: 2 });
    expect(res.headers.get('x-request-id')).toBe('rollback-4');
    expect(control.calls.find((c) => c.method === 'rollback')!.args).toEqual([2, { ifMatch: 3, force: true, origin: { via: 'cli', clientRequestId: 'deploy-43' } }]);
    const bad = await fetch(`${base}/api/v1/config/rollback`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ version: 0 }) });
    expect(bad.status).toBe(400);
  });

  it('answers every write with the X-Request-Id of its proposal', async () => {
    const res = await fetch(`${base}/api/v1/pools/web/backends/web-1`, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ weight: 2 }) });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('req-4');
  });
});

describe('admin API config versioning', () => {
  it('GET /api/v1/config carries the version as a strong ETag', async () => {
    const res = await fetch(`${base}/api/v1/config`, { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe('"3"');
    const body = (await res.json()) as { version: number; routes: unknown[]; pools: Record<string, unknown> };
    expect(body.version).toBe(3);
    expect(Object.keys(body.pools)).toEqual(['web', 'api']);
    expect(Array.isArray(body.routes)).toBe(true);
  });

  it('PUT with a current If-Match succeeds and returns the new ETag; a stale one is 412', async () => {
    const put = (ifMatch: string): Promise<Response> =>
      fetch(`${base}/api/v1/config`, {
        method: 'PUT',
        headers: { ...auth, 'Content-Type': 'application/json', 'If-Match': ifMatch },
        body: JSON.stringify({ version: 3, routes: [], pools: {} }),
      });
    const ok = await put('"3"');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).toBe('"4"');
    expect(await ok.json()).toEqual({ version: 4 });
    // The version field a GET returned is not passed on as config.
    expect(control.calls.find((c) => c.method === 'putConfig')!.args[0]).toEqual({ routes: [], pools: {} });
    const stale = await put('"3"');
    expect(stale.status).toBe(412);
    expect((await errorOf(stale)).code).toBe('VERSION_MISMATCH');
  });

  it('answers 400 to a malformed If-Match', async () => {
    for (const bad of ['3', 'W/"3"', '"abc"']) {
      const res = await fetch(`${base}/api/v1/config`, {
        method: 'PUT',
        headers: { ...auth, 'Content-Type': 'application/json', 'If-Match': bad },
        body: '{"routes":[],"pools":{}}',
      });
      expect(res.status, bad).toBe(400);
    }
  });
});

describe('admin API routes', () => {
  it('adds a backend: 201 with Location', async () => {
    const res = await fetch(`${base}/api/v1/pools/web/backends`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ url: 'http://127.0.0.1:9003', weight: 2, id: 'web 3' }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe('/api/v1/pools/web/backends/web%203');
    expect(await res.json()).toEqual({ version: 4, backend: { id: 'web 3', url: 'http://127.0.0.1:9003', weight: 2 } });
  });

  it('patches and deletes backends, decoding ids from the path', async () => {
    control.setBackend('web', 'web-1', { id: '10.0.0.1:80' });
    const patch = await fetch(`${base}/api/v1/pools/web/backends/10.0.0.1%3A80`, {
      method: 'PATCH',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ drain: true }),
    });
    expect(patch.status).toBe(200);
    expect(control.calls.at(-1)).toEqual({ method: 'updateBackend', args: ['web', '10.0.0.1:80', { drain: true }] });
    const del = await fetch(`${base}/api/v1/pools/web/backends/10.0.0.1:80`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(200);
    const missing = await fetch(`${base}/api/v1/pools/web/backends/10.0.0.1:80`, { method: 'DELETE', headers: auth });
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe('NOT_FOUND');
  });

  it('manages cluster membership and leadership', async () => {
    const json = { ...auth, 'Content-Type': 'application/json' };
    const cluster = await fetch(`${base}/api/v1/cluster`, { headers: auth });
    expect(((await cluster.json()) as { leader: string }).leader).toBe('n1');
    const add = await fetch(`${base}/api/v1/cluster/members`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ id: 'n4', address: '127.0.0.1:7004', learner: true }),
    });
    expect(add.status).toBe(200);
    expect(control.calls.at(-1)).toEqual({ method: 'addMember', args: ['n4', '127.0.0.1:7004', true] });
    expect((await fetch(`${base}/api/v1/cluster/members/n4`, { method: 'DELETE', headers: auth })).status).toBe(200);
    const transfer = await fetch(`${base}/api/v1/cluster/leader`, { method: 'POST', headers: json, body: '{"id":"n2"}' });
    expect(((await transfer.json()) as { leader: string }).leader).toBe('n2');
  });

  it('answers 404 JSON to unknown routes', async () => {
    const res = await fetch(`${base}/api/v1/pools`, { headers: auth });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await errorOf(res)).code).toBe('NOT_FOUND');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('answers 405 with Allow to a wrong method, including CORS preflights', async () => {
    const res = await fetch(`${base}/api/v1/config`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, PUT, HEAD');
    expect((await errorOf(res)).code).toBe('METHOD_NOT_ALLOWED');
    const preflight = await fetch(`${base}/metrics`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'GET' },
    });
    expect(preflight.status).toBe(405);
    const apiPreflight = await fetch(`${base}/api/v1/config`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'PUT' },
    });
    expect(apiPreflight.status).toBe(405);
  });

  it('never sends Access-Control-* headers', async () => {
    const responses = await Promise.all([
      fetch(`${base}/api/v1/status`, { headers: { ...auth, Origin: 'http://evil.example' } }),
      fetch(`${base}/metrics`, { headers: { Origin: 'http://evil.example' } }),
      fetch(`${base}/`, { headers: { Origin: 'http://evil.example' } }),
      fetch(`${base}/api/v1/status`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } }),
    ]);
    for (const res of responses) {
      for (const name of res.headers.keys()) expect(name.startsWith('access-control-')).toBe(false);
    }
  });
});
