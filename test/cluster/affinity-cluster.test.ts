// Three real Apps in a Raft cluster, one replicated pool: a hash key and a sticky cookie lead to the same backend whichever node serves the request.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { memoryLogger } from '../../src/log.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { freePort } from '../helpers/ports.js';
import { eventually } from '../helpers/wait.js';

const TOKEN = 'affinity-cluster-token';
const IDS = ['n1', 'n2', 'n3'];

function nodeYaml(id: string, peers: Record<string, string>, backends: readonly TestBackend[]): string {
  return [
    'listen: 127.0.0.1:0',
    'admin:',
    '  listen: 127.0.0.1:0',
    `  token: ${TOKEN}`,
    'cluster:',
    `  nodeId: ${id}`,
    `  listen: ${peers[id]}`,
    '  dataDir: ./data',
    `  peers: { ${Object.entries(peers).map(([k, v]) => `${k}: "${v}"`).join(', ')} }`,
    '  secret: affinity-cluster-secret',
    '  electionTimeout: 300ms',
    '  heartbeatInterval: 50ms',
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
    '',
  ].join('\n');
}

describe('affinity across cluster nodes', () => {
  let root = '';
  const apps = new Map<string, App>();
  const backends: TestBackend[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'balancer-affinity-cluster-'));
    for (let i = 1; i <= 4; i++) backends.push(await startBackend(`b${i}`));
    const peers: Record<string, string> = {};
    for (const id of IDS) peers[id] = `127.0.0.1:${await freePort()}`;
    await Promise.all(
      IDS.map(async (id) => {
        const dir = join(root, id);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'balancer.yaml'), nodeYaml(id, peers, backends));
        apps.set(id, await App.start({ configPath: join(dir, 'balancer.yaml'), logger: memoryLogger('info') }));
      }),
    );
  });

  afterAll(async () => {
    for (const app of apps.values()) await app.stop(0);
    for (const backend of backends) await backend.close();
    await rm(root, { recursive: true, force: true });
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
