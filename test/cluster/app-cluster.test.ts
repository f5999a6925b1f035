// Three real Apps with cluster sections in their YAML: the App builds a ClusterStore, the admin API answers through Raft.

import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { ClusterStore } from '../../src/cluster/store.js';
import { AppCluster } from '../helpers/app-cluster.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'cluster-test-token';
const IDS = ['a1', 'a2', 'a3'];

describe('Apps in a cluster', () => {
  let cluster: AppCluster;
  let apps: ReadonlyMap<string, App>;

  beforeAll(async () => {
    cluster = await AppCluster.start({
      ids: IDS,
      token: TOKEN,
      secret: 'app-cluster-secret',
      clusterLines: ['  snapshotEvery: 50'],
      replicated: ['pools:', '  web:', '    backends:', '      - { url: http://127.0.0.1:9100, id: seed }'],
    });
    apps = cluster.apps;
  });

  afterAll(async () => {
    await cluster.stop();
  });

  const admin = (id: string, path: string, init: RequestInit = {}): Promise<Response> => cluster.admin(id, path, init);

  it('becomes ready everywhere, and the admin API writes and reads through any node', async () => {
    for (const app of apps.values()) expect(app.store).toBeInstanceOf(ClusterStore);
    await eventually(async () => (await Promise.all(IDS.map((id) => admin(id, '/readyz')))).every((r) => r.status === 200), 'readyz on all', 5000);

    const statuses = await Promise.all(IDS.map(async (id) => (await (await admin(id, '/api/v1/cluster')).json()) as { role: string; leader: string }));
    const leader = statuses.find((s) => s.role === 'leader')!.leader;
    expect(statuses.every((s) => s.leader === leader)).toBe(true);
    const follower = IDS.find((id) => id !== leader)!;

    const put = await admin(follower, '/api/v1/config', {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'if-match': '"1"' },
      body: JSON.stringify({ routes: [], pools: { web: { backends: [{ url: 'http://127.0.0.1:9101', id: 'put' }] } } }),
    });
    // Version 1 is not necessarily the seed's index: a stale If-Match answers 412, a current one 200.
    const current = (await (await admin(follower, '/api/v1/config')).json()) as { version: number };
    if (put.status === 412) {
      const retry = await admin(follower, '/api/v1/config', {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'if-match': `"${current.version}"` },
        body: JSON.stringify({ routes: [], pools: { web: { backends: [{ url: 'http://127.0.0.1:9101', id: 'put' }] } } }),
      });
      expect(retry.status).toBe(200);
    } else {
      expect(put.status).toBe(200);
    }
    const other = IDS.find((id) => id !== leader && id !== follower)!;
    const read = await admin(other, '/api/v1/config');
    const body = (await read.json()) as { version: number; pools: Record<string, unknown> };
    expect(JSON.stringify(body.pools)).toContain('9101');
    expect(read.headers.get('etag')).toBe(`"${body.version}"`);

    // Every node's file follows, local sections kept.
    await eventually(async () => (await Promise.all(IDS.map((id) => readFile(apps.get(id)!.file, 'utf8')))).every((t) => t.includes('9101')), 'files rewritten', 5000);
    expect(await readFile(apps.get(other)!.file, 'utf8')).toContain(`nodeId: ${other}`);

    const metrics = await (await fetch(`http://127.0.0.1:${apps.get(leader)!.addresses.admin.port}/metrics`)).text();
    expect(metrics).toMatch(/^balancer_raft_is_leader 1$/m);
    expect(metrics).toMatch(/^balancer_raft_term [1-9]/m);
  });
});
