// Routes edited through the admin API of one node of a three-process cluster are served alike by every node, and `balancer routes list|test` shows them.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, httpCall, startSeededCluster, type ProcessCluster } from '../helpers/process-cluster.js';
import { runCli } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

describe('routes in a three-process cluster', () => {
  let cluster: ProcessCluster;
  let web: TestBackend;
  let api: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend: web } = await startSeededCluster(ids, 'web', 'web'));
    api = await startBackend('api');
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await Promise.all([web, api].map((backend) => backend?.close()));
  });

  it('a route set PUT on a follower reaches every node, which all match, rewrite, redirect and answer alike', async () => {
    const leader = await cluster.waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    const seed = (await cluster.config(leader)).version;
    const put = await cluster.api(follower, 'PUT', '/api/v1/config', {
      body: {
        routes: [
          { name: 'api', match: { pathPrefix: '/api', pathPrefixSegments: true, methods: ['GET'] }, rewrite: { stripPrefix: '/api' }, headers: { request: { set: { 'X-Route': 'api' } } }, pool: 'api' },
          { name: 'old', match: { pathPrefix: '/old' }, redirect: { path: '/new', status: 308 } },
          { name: 'health', match: { path: '/health' }, respond: { status: 200, body: 'ok' } },
          { name: 'rest', pool: 'web' },
        ],
        pools: { web: { backends: [{ url: web.url, id: 'web' }] }, api: { backends: [{ url: api.url, id: 'api' }] } },
      },
    });
    expect(put.status, put.body).toBe(200);
    const version = put.json<{ version: number }>().version;
    expect(version).toBeGreaterThan(seed);
    await cluster.waitForVersion(ids, version);
    for (const id of ids) {
      const proxy = cluster.node(id).proxy;
      const before = api.seen.length;
      const viaApi = await eventually(async () => {
        const res = await httpCall(`${proxy}/api/../api/items?x=1`, { timeoutMs: 5_000 });
        return res.status === 200 ? res : undefined;
      }, `${id} serves the api route`);
      expect(viaApi.headers['x-backend']).toBe('api');
      expect(api.seen.slice(before).map((seen) => `${seen.url} ${String(seen.headers['x-route'])}`)).toEqual(['/items?x=1 api']);
      const old = await httpCall(`${proxy}/old/page`, { headers: { host: 'shop.example.com' } });
      expect([old.status, old.headers.location]).toEqual([308, 'http://shop.example.com/new']);
      const health = await httpCall(`${proxy}/health`);
      expect([health.status, health.body]).toEqual([200, 'ok']);
      const posted = await httpCall(`${proxy}/api/items`, { method: 'POST', body: 'x' });
      expect(posted.headers['x-backend']).toBe('web');
    }
    // A catastrophic pattern is refused on any node, naming the route, and nothing changes.
    const refused = await cluster.api(follower, 'PUT', '/api/v1/config', {
      body: { routes: [{ match: { pathRegex: '/(a+)+$' }, pool: 'web' }], pools: { web: { backends: [{ url: web.url, id: 'web' }] } } },
    });
    expect(refused.status).toBe(422);
    expect(refused.body).toContain('routes[0].match.pathRegex');
    expect(refused.body).toContain('nested quantifiers');
    expect((await cluster.config(leader)).version).toBe(version);

    const cli = (args: string[]) => runCli([...args, '--admin', cluster.node(follower).admin, '--token', ADMIN_TOKEN]);
    const listed = await cli(['routes', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/0\s+api\s+pathPrefix=\/api pathPrefixSegments=true methods=\["GET"\]\s+pool api\s+rewrite stripPrefix=\/api; header rules/);
    expect(listed.stdout).toMatch(/1\s+old\s+pathPrefix=\/old\s+redirect path=\/new status=308/);
    const tested = await cli(['routes', 'test', 'GET', 'http://shop.example.com/api//v2/../items?q=1', '-H', 'X-Extra: yes']);
    expect(tested.code, tested.stderr).toBe(0);
    expect(tested.stdout).toContain('matched route #0 (api) (path /api/items)');
    expect(tested.stdout).toContain('forwarded to pool api as:\n  GET /items?q=1\n  host: shop.example.com\n');
    expect(tested.stdout).toContain('  x-route: api\n');
    expect(tested.stdout).toContain('  x-extra: yes\n');
    const missed = await cli(['routes', 'test', 'DELETE', '/health/x']);
    expect(missed.stdout).toContain('matched route #3 (rest)');
  });
});
