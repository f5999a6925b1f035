// Worker mode with real processes: every worker builds the same hash table and reads the same sticky cookies as the others.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBalancer, type RunningNode } from '../helpers/process.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';

let dir: string;
let node: RunningNode;
let proxy: string;
const backends: TestBackend[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-affinity-workers-'));
  for (let i = 1; i <= 3; i++) backends.push(await startBackend(`b${i}`));
  const lines = backends.map((b) => `      - { url: ${b.url}, id: ${b.name} }`);
  ({ node, proxy } = await startBalancer(
    dir,
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0, token: t }',
      'workers: 2',
      'routes:',
      '  - { match: { pathPrefix: /sticky }, pool: sticky }',
      '  - { match: { pathPrefix: / }, pool: hashed }',
      'pools:',
      '  hashed:',
      '    strategy: maglev',
      '    hashOn: { header: x-user }',
      '    backends:',
      ...lines,
      '  sticky:',
      '    strategy: round-robin',
      '    sticky: { cookie: SRV }',
      '    backends:',
      ...lines,
      '',
    ],
  ));
});

afterAll(async () => {
  node?.child.kill('SIGKILL');
  for (const backend of backends) await backend.close();
  await rm(dir, { recursive: true, force: true });
});

describe('affinity with workers: 2', () => {
  it('sends a user to one backend whichever worker takes the connection, and any worker honours a sticky cookie', async () => {
    for (let user = 0; user < 12; user++) {
      const seen = new Set<string>();
      // A connection per request: the kernel hands them to both workers.
      for (let i = 0; i < 6; i++) {
        const res = await request(`${proxy}/`, { headers: { 'x-user': `user-${user}` } });
        expect(res.status).toBe(200);
        seen.add(String(res.headers['x-backend']));
      }
      expect([...seen], `user-${user}`).toHaveLength(1);
    }
    const first = await request(`${proxy}/sticky`);
    const cookie = String(first.headers['set-cookie']?.[0]).split(';')[0]!;
    expect(cookie).toMatch(/^SRV=/);
    for (let i = 0; i < 10; i++) {
      const res = await request(`${proxy}/sticky`, { headers: { cookie } });
      expect(res.headers['x-backend']).toBe(first.headers['x-backend']);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
  });
});
