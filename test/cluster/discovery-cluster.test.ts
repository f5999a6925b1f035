// Three real Apps in a Raft cluster with a pool found in DNS: each node resolves for itself, and a drain of a discovered backend is replicated.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { AppCluster } from '../helpers/app-cluster.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { eventually } from '../helpers/wait.js';

const IDS = ['n1', 'n2', 'n3'];

interface Status {
  pools: Array<{ discovery?: { found: number }; backends: Array<{ id: string; state: string; discovered?: boolean }> }>;
}

describe('DNS discovery in a cluster', () => {
  let cluster: AppCluster;
  let dns: TestDnsServer;
  const backends: TestBackend[] = [];

  beforeAll(async () => {
    for (let i = 1; i <= 2; i++) backends.push(await startBackend(`b${i}`));
    dns = await startDnsServer({
      srv: { '_http._tcp.web.test': backends.map((b) => ({ priority: 1, weight: 1, port: b.port, target: 'lo.web.test' })) },
      a: { 'lo.web.test': ['127.0.0.1'] },
    });
    cluster = await AppCluster.start({
      ids: IDS,
      token: 'discovery-cluster-token',
      secret: 'discovery-cluster-secret',
      replicated: ['pools:', '  web:', `    discovery: { dns: { name: _http._tcp.web.test, type: SRV, interval: 1s, servers: ["${dns.address}"] } }`],
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    for (const backend of backends) await backend.close();
    await dns?.close();
  });

  async function status(id: string): Promise<Status> {
    return (await (await cluster.admin(id, '/api/v1/status')).json()) as Status;
  }

  it('every node finds the backends itself, and a drain through one node drains the backend on all', async () => {
    const ids = backends.map((b) => `127.0.0.1:${b.port}`).sort();
    for (const id of IDS) {
      await eventually(async () => (await status(id)).pools[0]?.backends.map((b) => b.id).join(' ') === ids.join(' '), `${id} to find both backends`, 20_000);
      expect((await status(id)).pools[0]!.backends.every((b) => b.discovered === true)).toBe(true);
    }
    // The replicated config names the DNS settings only, never what a node found.
    const config = (await (await cluster.admin('n1', '/api/v1/config')).json()) as { pools: { web: { backends: unknown[] } } };
    expect(config.pools.web.backends).toEqual([]);

    const drained = ids[0]!;
    const patched = await cluster.admin('n2', `/api/v1/pools/web/backends/${encodeURIComponent(drained)}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ drain: true }),
    });
    expect(patched.status).toBe(200);
    for (const id of IDS) {
      await eventually(async () => (await status(id)).pools[0]!.backends.find((b) => b.id === drained)?.state === 'draining', `${id} to drain ${drained}`, 20_000);
    }
    const drainedBackend = backends.find((b) => `127.0.0.1:${b.port}` === drained)!;
    const before = drainedBackend.seen.length;
    for (const id of IDS) for (let i = 0; i < 5; i++) expect((await request(`${cluster.proxyUrl(id)}/`)).status).toBe(200);
    expect(drainedBackend.seen.length).toBe(before);
  });
});
