// Worker processes serve the backends the primary found in DNS, and keep rate-limit buckets of their own.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBalancer, type RunningNode } from '../helpers/process.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';

let dir: string;
let node: RunningNode;
let proxy: string;
let admin: string;
let dns: TestDnsServer;
let one: TestBackend;
let two: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-discovery-workers-'));
  one = await startBackend('one');
  two = await startBackend('two');
  dns = await startDnsServer();
  dns.setTtl(1);
  // SRV: both backends on 127.0.0.1, told apart by their ports.
  dns.setZone({
    srv: { '_http._tcp.web.test': [{ priority: 1, weight: 1, port: one.port, target: 'lo.web.test' }] },
    a: { 'lo.web.test': ['127.0.0.1'] },
  });
  ({ node, proxy, admin } = await startBalancer(
    dir,
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0, token: t }',
      'workers: 2',
      'routes:',
      '  - name: limited',
      '    match: { pathPrefix: /limited }',
      '    pool: web',
      '    rateLimit: { requestsPerSecond: 0.001, burst: 2 }',
      '  - { name: open, pool: web }',
      'pools:',
      '  web:',
      `    discovery: { dns: { name: _http._tcp.web.test, type: SRV, interval: 1s, servers: ["${dns.address}"] } }`,
      '',
    ],
  ));
});

afterAll(async () => {
  node?.child.kill('SIGKILL');
  await one?.close();
  await two?.close();
  await dns?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('worker processes', () => {
  it('serve the backends the primary found in DNS, and follow the answers', async () => {
    for (let i = 0; i < 4; i++) expect((await request(`${proxy}/`)).status).toBe(200);
    expect(one.seen.length).toBe(4);
    dns.setZone({
      srv: { '_http._tcp.web.test': [{ priority: 1, weight: 1, port: one.port, target: 'lo.web.test' }, { priority: 1, weight: 1, port: two.port, target: 'lo.web.test' }] },
      a: { 'lo.web.test': ['127.0.0.1'] },
    });
    await eventually(async () => {
      await request(`${proxy}/`);
      return two.seen.length > 0;
    }, 'a worker sending traffic to the backend DNS added', 20_000);
    const res = await fetch(`${admin}/api/v1/status`, { headers: { authorization: 'Bearer t' } });
    const status = (await res.json()) as { pools: Array<{ backends: Array<{ id: string; discovered?: boolean }> }> };
    // Sorted by id, so the order is the ports' as text.
    expect(status.pools[0]!.backends.map((backend) => [backend.id, backend.discovered])).toEqual(
      [`127.0.0.1:${one.port}`, `127.0.0.1:${two.port}`].sort().map((id) => [id, true]),
    );
  });

  it('limit each client in each worker: one keep-alive connection meets the limit of its worker', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await request(`${proxy}/limited`, { agent })).status);
    agent.destroy();
    expect(statuses).toEqual([200, 200, 429, 429]);
    // The primary sums what its workers counted.
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toContain('balancer_rate_limited_total{route="limited"} 2');
  });
});
