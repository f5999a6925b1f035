// Per-client rate limits on routes and pools (429 with Retry-After and RateLimit-*), and limits.maxConnectionsPerIp, on real sockets.

import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { request, type SimpleResponse } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';
import { perTestResources } from '../helpers/gateway.js';

const { backend, gateway } = perTestResources();

/** A client on its own loopback address (127.0.0.0/8 is all loopback on Linux): a second client to the gateway. */
function clientAt(address: string): http.Agent {
  return new http.Agent({ localAddress: address, keepAlive: true });
}

async function scrape(adminUrl: string): Promise<string> {
  return (await request(`${adminUrl}/metrics`)).body;
}

function rateLimitHeaders(res: SimpleResponse): Record<string, unknown> {
  const { headers } = res;
  return {
    'retry-after': headers['retry-after'],
    'ratelimit-limit': headers['ratelimit-limit'],
    'ratelimit-remaining': headers['ratelimit-remaining'],
    'ratelimit-reset': headers['ratelimit-reset'],
    'ratelimit-policy': headers['ratelimit-policy'],
  };
}

describe('rate limits', () => {
  it("answers a burst past a route's limit with 429 and the right headers while another client is served", async () => {
    const b = await backend('b');
    // One request per 1000 s after a burst of 3: nothing refills while the test runs, so the counts are exact.
    const gw = await gateway(
      `routes:\n  - name: api\n    match: { pathPrefix: /api }\n    pool: web\n    rateLimit: { requestsPerSecond: 0.001, burst: 3 }\n  - { name: other, pool: web }\npools:\n  web:\n    backends:\n      - { url: ${b.url} }\n`,
    );
    const first = clientAt('127.0.0.1');
    const second = clientAt('127.0.0.2');
    const burst: SimpleResponse[] = [];
    for (let i = 0; i < 6; i++) burst.push(await request(`${gw.url}/api/x`, { agent: first }));
    expect(burst.map((res) => res.status)).toEqual([200, 200, 200, 429, 429, 429]);
    const refused = burst[3]!;
    expect(rateLimitHeaders(refused)).toEqual({
      'retry-after': '1000',
      'ratelimit-limit': '3',
      'ratelimit-remaining': '0',
      'ratelimit-reset': '3000',
      'ratelimit-policy': '3;w=3000',
    });
    expect(JSON.parse(refused.body).error.code).toBe('RATE_LIMITED');
    expect(refused.headers['x-request-id']).toEqual(expect.any(String));
    // The refused requests never reached the backend.
    expect(b.seen.length).toBe(3);
    // The other client has a bucket of its own, and the first client's other routes are not limited.
    for (let i = 0; i < 3; i++) expect((await request(`${gw.url}/api/x`, { agent: second })).status).toBe(200);
    expect((await request(`${gw.url}/api/x`, { agent: second })).status).toBe(429);
    expect((await request(`${gw.url}/elsewhere`, { agent: first })).status).toBe(200);
    const metrics = await scrape(gw.adminUrl);
    expect(metrics).toContain('balancer_rate_limited_total{route="api"} 4');
    expect(metrics).toContain('balancer_requests_total{pool="web",backend="",route="api",code="4xx"} 4');
    first.destroy();
    second.destroy();
  });

  it("limits a pool's clients by a header, across the routes that lead to it", async () => {
    const b = await backend('b');
    const gw = await gateway(
      `routes:\n  - { name: one, match: { pathPrefix: /one }, pool: web }\n  - { name: two, pool: web }\npools:\n  web:\n    rateLimit: { requestsPerSecond: 0.001, burst: 2, by: { header: X-Api-Key } }\n    backends:\n      - { url: ${b.url} }\n`,
    );
    const key = (value: string) => ({ headers: { 'x-api-key': value } });
    expect((await request(`${gw.url}/one`, key('k1'))).status).toBe(200);
    expect((await request(`${gw.url}/two`, key('k1'))).status).toBe(200);
    const refused = await request(`${gw.url}/one`, key('k1'));
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body).error.message).toContain('pool "web"');
    expect(refused.headers['ratelimit-limit']).toBe('2');
    // Another key is another client, although it comes from the same address.
    expect((await request(`${gw.url}/two`, key('k2'))).status).toBe(200);
    const metrics = await scrape(gw.adminUrl);
    expect(metrics).toContain('balancer_rate_limited_total{route="one"} 1');
  });

  it('keeps the buckets over a config change that leaves the limit alone', async () => {
    const b = await backend('b');
    const gw = await gateway(`pools:\n  web:\n    rateLimit: { requestsPerSecond: 0.001, burst: 1 }\n    backends:\n      - { url: ${b.url} }\n`);
    expect((await request(`${gw.url}/`)).status).toBe(200);
    expect((await request(`${gw.url}/`)).status).toBe(429);
    const changed = await request(`${gw.adminUrl}/api/v1/pools/web/backends/${encodeURIComponent(`127.0.0.1:${b.port}`)}`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer test-token', 'content-type': 'application/json' },
      body: JSON.stringify({ weight: 5 }),
    });
    expect(changed.status).toBe(200);
    expect((await request(`${gw.url}/`)).status).toBe(429);
    // With no routes the counter has no route label.
    expect(await scrape(gw.adminUrl)).toContain('balancer_rate_limited_total 2');
  });
});

describe('limits.maxConnectionsPerIp', () => {
  it('closes connections past the per-address limit and serves other addresses', async () => {
    const b = await backend('b');
    const gw = await gateway(`limits: { maxConnectionsPerIp: 2 }\npools:\n  web:\n    backends:\n      - { url: ${b.url} }\n`);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2, localAddress: '127.0.0.1' });
    await Promise.all([request(`${gw.url}/`, { agent }), request(`${gw.url}/`, { agent })]);
    // Two keep-alive connections from 127.0.0.1 are open: a third from it is closed at once, unanswered.
    const third = await new Promise<string>((resolve) => {
      const socket = net.connect({ port: gw.port, host: '127.0.0.1', localAddress: '127.0.0.1' }, () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(`closed:${data}`));
    });
    expect(third).toBe('closed:');
    // Another address is not affected, and the open connections still serve.
    const other = new http.Agent({ keepAlive: false, localAddress: '127.0.0.2' });
    expect((await request(`${gw.url}/`, { agent: other })).status).toBe(200);
    expect((await request(`${gw.url}/`, { agent })).status).toBe(200);
    // Once a connection closes, the address may open another.
    agent.destroy();
    const again = new http.Agent({ keepAlive: false, localAddress: '127.0.0.1' });
    // The server sees the close a moment after the client: until then the slot is still taken.
    await eventually(async () => (await request(`${gw.url}/`, { agent: again }).then((res) => res.status, () => 0)) === 200, 'a new connection once one closed');
    other.destroy();
  });
});
