// Backends from DNS on real sockets: a loopback DNS server whose answers change under load, with no failed request.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';
import { perTestResources } from '../helpers/gateway.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { formatStatus } from '../../src/cli/views.js';
import type { NodeStatus } from '../../src/control/types.js';

const { gateway } = perTestResources();
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface AddressedBackend {
  readonly address: string;
  /** Requests it received, in order of arrival. */
  readonly arrivals: number[];
  /** Milliseconds each answer is held back (0: at once). */
  delayMs: number;
}

/** An HTTP server on one loopback address (127.0.0.0/8 is all loopback on Linux), answering its own address. */
async function backendAt(address: string, port: number): Promise<AddressedBackend & { port: number }> {
  const backend: AddressedBackend = { address, arrivals: [], delayMs: 0 };
  const server = http.createServer((req, res) => {
    backend.arrivals.push(performance.now());
    req.resume();
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(address);
    };
    if (backend.delayMs > 0) setTimeout(answer, backend.delayMs);
    else answer();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return Object.assign(backend, { port: (server.address() as AddressInfo).port });
}

async function dnsServer(): Promise<TestDnsServer> {
  const server = await startDnsServer();
  cleanups.push(() => server.close());
  return server;
}

/** Bounded load: `concurrency` clients sending GETs back to back until stop() (or the count or time limit). */
function load(url: string, concurrency: number) {
  const answers: Array<{ status: number; body: string }> = [];
  const failures: string[] = [];
  let stopped = false;
  const deadline = performance.now() + 40_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const client = async (): Promise<void> => {
    while (!stopped && answers.length + failures.length < 100_000 && performance.now() < deadline) {
      try {
        const res = await request(url, { agent });
        if (res.status === 200) answers.push({ status: res.status, body: res.body });
        else failures.push(`${res.status} ${res.body}`);
      } catch (error) {
        failures.push(String(error));
      }
    }
  };
  const running = Promise.all(Array.from({ length: concurrency }, client));
  return {
    answers,
    failures,
    servedBy: (address: string) => answers.filter((answer) => answer.body === address).length,
    async stop() {
      stopped = true;
      await running;
      agent.destroy();
    },
  };
}

async function status(adminUrl: string): Promise<NodeStatus> {
  const res = await request(`${adminUrl}/api/v1/status`, { headers: { authorization: 'Bearer test-token' } });
  return JSON.parse(res.body) as NodeStatus;
}

async function backendIds(adminUrl: string): Promise<string[]> {
  return (await status(adminUrl)).pools[0]!.backends.map((backend) => backend.id);
}

describe('backends from DNS', () => {
  it('follows answers that change under load, finishing requests on removed backends, with no failed request', async () => {
    const first = await backendAt('127.0.0.2', 0);
    const port = first.port;
    await Promise.all([backendAt('127.0.0.3', port), backendAt('127.0.0.4', port), backendAt('127.0.0.5', port)]);
    const dns = await dnsServer();
    dns.setTtl(1);
    dns.setZone({ a: { 'web.test': ['127.0.0.2', '127.0.0.3'] } });
    const gw = await gateway(`pools:\n  web:\n    discovery: { dns: { name: web.test, port: ${port}, interval: 1s, servers: ["${dns.address}"] } }\n`);
    // Resolved when the pool was built: both backends are there before the first request.
    expect(await backendIds(gw.adminUrl)).toEqual([`127.0.0.2:${port}`, `127.0.0.3:${port}`]);
    const traffic = load(`${gw.url}/`, 6);
    try {
      await eventually(() => traffic.servedBy('127.0.0.2') > 20 && traffic.servedBy('127.0.0.3') > 20, 'traffic on both discovered backends', 20_000);

      // 127.0.0.2 leaves DNS while it holds requests: they finish there; no new ones go to it.
      first.delayMs = 200;
      await eventually(() => first.arrivals.length > 0 && traffic.answers.length > 0, 'requests in flight');
      dns.setZone({ a: { 'web.test': ['127.0.0.3', '127.0.0.4'] } });
      await eventually(async () => !(await backendIds(gw.adminUrl)).includes(`127.0.0.2:${port}`), 'the removed backend gone from the pool', 20_000);
      await eventually(() => traffic.servedBy('127.0.0.4') > 20, 'traffic on the added backend', 20_000);
      const settledAt = first.arrivals.length;
      const answered = traffic.answers.length;
      await eventually(() => traffic.answers.length > answered + 200, 'more traffic after the change', 20_000);
      expect(first.arrivals.length).toBe(settledAt);

      // DNS fails: the last answer stays and keeps serving; when DNS answers again, its answer is taken.
      dns.setMode('servfail');
      await eventually(async () => ((await status(gw.adminUrl)).pools[0]!.discovery?.failures ?? 0) > 0, 'a failed lookup', 20_000);
      expect(await backendIds(gw.adminUrl)).toEqual([`127.0.0.3:${port}`, `127.0.0.4:${port}`]);
      expect(gw.logs.some((line) => line['msg'] === 'DNS lookup failed; keeping the last answer' && line['name'] === 'web.test')).toBe(true);
      const beforeRecovery = traffic.servedBy('127.0.0.5');
      expect(beforeRecovery).toBe(0);
      dns.setZone({ a: { 'web.test': ['127.0.0.4', '127.0.0.5'] } });
      dns.setMode('answer');
      await eventually(() => traffic.servedBy('127.0.0.5') > 20, 'traffic on the backend DNS named after recovering', 20_000);
    } finally {
      await traffic.stop();
    }
    expect(traffic.failures).toEqual([]);
    expect(traffic.answers.length).toBeGreaterThan(300);
    // Each discovered backend has its own series, labelled address:port.
    const metrics = (await request(`${gw.adminUrl}/metrics`)).body;
    expect(metrics).toMatch(new RegExp(`balancer_requests_total\\{pool="web",backend="127\\.0\\.0\\.5:${port}",code="2xx"\\} [1-9]`));
    expect(metrics).not.toContain(`backend="127.0.0.2:${port}"`);
  });

  it('resolves a backend URL that names a host, follows DNS when it moves, and keeps the address while DNS fails', async () => {
    const first = await backendAt('127.0.0.2', 0);
    const port = first.port;
    await backendAt('127.0.0.3', port);
    const dns = await dnsServer();
    dns.setTtl(1);
    dns.setZone({ a: { 'api.test': ['127.0.0.2'] } });
    const gw = await gateway(`pools:\n  api:\n    discovery: { dns: { servers: ["${dns.address}"], interval: 1s } }\n    backends:\n      - { url: http://api.test:${port} }\n`);
    expect((await request(`${gw.url}/`)).body).toBe('127.0.0.2');
    expect((await status(gw.adminUrl)).pools[0]!.backends[0]).toMatchObject({ id: `api.test:${port}`, url: `http://api.test:${port}`, address: '127.0.0.2' });
    dns.setZone({ a: { 'api.test': ['127.0.0.3'] } });
    await eventually(async () => (await request(`${gw.url}/`)).body === '127.0.0.3', 'connections to the new address', 20_000);
    // The same backend (its id, health and series), only its address moved.
    expect((await status(gw.adminUrl)).pools[0]!.backends.map((backend) => [backend.id, backend.address])).toEqual([[`api.test:${port}`, '127.0.0.3']]);
    dns.setMode('servfail');
    await eventually(() => gw.logs.some((line) => line['msg'] === 'DNS lookup failed; keeping the last answer' && line['name'] === 'api.test'), 'a failed lookup', 20_000);
    for (let i = 0; i < 5; i++) expect((await request(`${gw.url}/`)).body).toBe('127.0.0.3');
  });

  it('shows discovered backends in status, and drains them (only drain) through the API', async () => {
    const first = await backendAt('127.0.0.2', 0);
    const port = first.port;
    await backendAt('127.0.0.3', port);
    const dns = await dnsServer();
    dns.setZone({
      srv: { '_http._tcp.web.test': [{ priority: 1, weight: 3, port, target: 'a.web.test' }, { priority: 1, weight: 1, port, target: 'b.web.test' }] },
      a: { 'a.web.test': ['127.0.0.2'], 'b.web.test': ['127.0.0.3'] },
    });
    const gw = await gateway(`pools:\n  web:\n    discovery: { dns: { name: _http._tcp.web.test, type: SRV, servers: ["${dns.address}"] } }\n`);
    const pool = (await status(gw.adminUrl)).pools[0]!;
    expect(pool.discovery).toEqual({ name: '_http._tcp.web.test', type: 'SRV', servers: [dns.address], found: 2, failures: 0, lastError: null });
    expect(pool.backends.map((backend) => [backend.id, backend.weight, backend.discovered])).toEqual([
      [`127.0.0.2:${port}`, 3, true],
      [`127.0.0.3:${port}`, 1, true],
    ]);
    const printed = formatStatus(await status(gw.adminUrl), false);
    expect(printed).toContain(`dns SRV _http._tcp.web.test (${dns.address}): 2 found`);
    expect(printed).toContain(`http://127.0.0.2:${port} (dns)`);

    const patch = (id: string, body: unknown) =>
      request(`${gw.adminUrl}/api/v1/pools/web/backends/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        headers: { authorization: 'Bearer test-token', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const weighted = await patch(`127.0.0.2:${port}`, { weight: 5 });
    expect(weighted.status).toBe(409);
    expect(JSON.parse(weighted.body).error.message).toContain('found in DNS');
    expect((await patch('127.0.0.9:1', { drain: true })).status).toBe(404);
    expect((await patch(`127.0.0.2:${port}`, { drain: true })).status).toBe(200);
    const drained = (await status(gw.adminUrl)).pools[0]!.backends.find((backend) => backend.id === `127.0.0.2:${port}`)!;
    expect(drained.state).toBe('draining');
    // The drain is in the replicated config (so every node drains it), not the backend itself.
    const config = JSON.parse((await request(`${gw.adminUrl}/api/v1/config`, { headers: { authorization: 'Bearer test-token' } })).body);
    expect(config.pools.web).toEqual({ backends: [], discovery: { dns: { name: '_http._tcp.web.test', type: 'SRV', servers: [dns.address], drain: [`127.0.0.2:${port}`] } } });
    const before = first.arrivals.length;
    for (let i = 0; i < 20; i++) expect((await request(`${gw.url}/`)).body).toBe('127.0.0.3');
    expect(first.arrivals.length).toBe(before);
    expect((await patch(`127.0.0.2:${port}`, { drain: false })).status).toBe(200);
    await eventually(async () => (await request(`${gw.url}/`)).body === '127.0.0.2', 'the undrained backend back in rotation');
    const removed = await request(`${gw.adminUrl}/api/v1/pools/web/backends/${encodeURIComponent(`127.0.0.2:${port}`)}`, { method: 'DELETE', headers: { authorization: 'Bearer test-token' } });
    expect(removed.status).toBe(404);
    expect(JSON.parse(removed.body).error.message).toContain('only drain applies');
  });
});
