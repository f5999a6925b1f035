// Three real Apps in a Raft cluster, one replicated pool: a hash key and a sticky cookie lead to the same backend whichever node serves the request.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { AppCluster } from '../helpers/app-cluster.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'affinity-cluster-token';
const IDS = ['n1', 'n2', 'n3'];

/** Every node's routes and pools: one ring-hash pool and one sticky pool over the same backends. */
function replicated(backends: readonly TestBackend[]): string[] {
  return [
    'routes:',
    '  - { match: { pathPrefix: /sticky }, pool: sticky }',
    '  - { match: { pathPrefix: / }, pool: hashed }',
    'pools:',
    '  hashed:',
    '    strategy: ring-hash',
    '    hashOn: { header: x-user }',
    '    backends:',
    ...backends.map((b) => `      - { url: ${b.url}, id: ${b.name} }`),
    '  sticky:',
    '    strategy: random',
    '    sticky: { cookie: SRV }',
    '    backends:',
    ...backends.map((b) => `      - { url: ${b.url}, id: ${b.name} }`),
  ];
}

describe('affinity across cluster nodes', () => {
  let cluster: AppCluster;
  let apps: ReadonlyMap<string, App>;
  const backends: TestBackend[] = [];

  beforeAll(async () => {
    for (let i = 1; i <= 4; i++) backends.push(await startBackend(`b${i}`));
    cluster = await AppCluster.start({ ids: IDS, token: TOKEN, secret: 'affinity-cluster-secret', replicated: replicated(backends) });
    apps = cluster.apps;
  });

  afterAll(async () => {
    await cluster.stop();
    for (const backend of backends) await backend.close();
  });

  const proxy = (id: string, path: string, headers: Record<string, string> = {}) => request(`http://127.0.0.1:${apps.get(id)!.addresses.proxy.port}${path}`, { headers });

  it('sends the same header value to the same backend on every node, and honours a cookie set by another node', async () => {
    await eventually(
      async () => (await Promise.all(IDS.map((id) => fetch(`http://127.0.0.1:${apps.get(id)!.addresses.admin.port}/readyz`)))).every((r) => r.status === 200),
      'every node ready',
      15_000,
      50,
    );
    const placements = new Set<string>();
    for (let user = 0; user < 20; user++) {
      const seen = new Set<string>();
      for (const id of IDS) {
        for (let i = 0; i < 2; i++) {
          const res = await proxy(id, '/', { 'x-user': `user-${user}` });
          expect(res.status).toBe(200);
          seen.add(String(res.headers['x-backend']));
        }
      }
      expect([...seen], `user-${user} across ${IDS.join(', ')}`).toHaveLength(1);
      placements.add([...seen][0]!);
    }
    expect(placements.size).toBeGreaterThan(1);

    const first = await proxy('n1', '/sticky');
    const cookie = String(first.headers['set-cookie']?.[0]).split(';')[0]!;
    expect(cookie).toMatch(/^SRV=/);
    for (const id of IDS) {
      for (let i = 0; i < 3; i++) {
        const res = await proxy(id, '/sticky', { cookie });
        expect(res.headers['x-backend'], `node ${id}`).toBe(first.headers['x-backend']);
        expect(res.headers['set-cookie']).toBeUndefined();
      }
    }
  });
});
