// balancer_backend_connections: the connections each backend has open for requests, read when /metrics is scraped.

import { describe, expect, it } from 'vitest';
import { request } from '../helpers/backend.js';
import { perTestResources } from '../helpers/gateway.js';

const { backend, gateway } = perTestResources();

/** The gauge's value for one backend of pool web, or null when it has no series. */
async function connections(adminUrl: string, id: string): Promise<number | null> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith(`balancer_backend_connections{pool="web",backend="${id}"} `));
  return line === undefined ? null : Number(line.split(' ')[1]);
}

describe('balancer_backend_connections', () => {
  it('counts the kept-alive connections of each HTTP/1.1 backend, and none once they are closed for being unused', async () => {
    const one = await backend('one');
    const two = await backend('two');
    const gw = await gateway(`pools:\n  web:\n    strategy: round-robin\n    backends:\n      - { url: ${one.url}, id: one }\n      - { url: ${two.url}, id: two }\n`);
    expect(await connections(gw.adminUrl, 'one')).toBe(0);
    // One after another: each backend's one connection is kept alive and reused.
    for (let i = 0; i < 6; i++) expect((await request(`${gw.url}/n/${i}`)).status).toBe(200);
    expect(await connections(gw.adminUrl, 'one')).toBe(1);
    expect(await connections(gw.adminUrl, 'two')).toBe(1);
    // Closed after 4 s unused (DEFAULTS.upstream.freeSocketTimeoutMs).
    await expect.poll(() => connections(gw.adminUrl, 'one'), { timeout: 15_000, interval: 200 }).toBe(0);
  });
});
