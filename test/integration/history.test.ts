// A standalone gateway's config history: versions since start from the file, the API and the CLI, and a rollback that rewrites the file.

import { readFile, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { request, startBackend } from '../helpers/backend.js';
import { startGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('config history on a single node', () => {
  it('keeps every version since start with its source, and rolls back through the API', async () => {
    const [one, two] = await Promise.all([startBackend('one'), startBackend('two')]);
    cleanups.push(() => one.close(), () => two.close());
    const gw = await startGateway(`pools:\n  web:\n    backends:\n      - { url: ${one.url}, id: one }\n`);
    cleanups.push(() => gw.stop());
    const headers = { authorization: 'Bearer test-token', 'content-type': 'application/json' };

    await writeFile(gw.file, (await readFile(gw.file, 'utf8')) + `      - { url: ${two.url}, id: two }\n`);
    await eventually(() => gw.app.store.version === 2, 'the file edit to apply');
    const patched = await request(`${gw.adminUrl}/api/v1/pools/web/backends/two`, {
      method: 'PATCH',
      headers: { ...headers, 'x-request-id': 'ticket-9' },
      body: JSON.stringify({ weight: 4 }),
    });
    expect(patched.status, patched.body).toBe(200);

    const history = JSON.parse((await request(`${gw.adminUrl}/api/v1/config/history`, { headers })).body) as {
      current: number;
      versions: { version: number; change: string; source: { kind: string; file?: string }; clientRequestId?: string }[];
    };
    expect(history.current).toBe(3);
    expect(history.versions.map((v) => [v.version, v.source.kind, v.change])).toEqual([
      [3, 'api', 'update backend web/two: weight 4'],
      [2, 'file', 'file edit'],
      [1, 'file', 'loaded at start'],
    ]);
    expect(history.versions[0]!.clientRequestId).toBe('ticket-9');
    expect(history.versions[1]!.source.file).toBe(gw.file);

    const rolled = await request(`${gw.adminUrl}/api/v1/config/rollback`, { method: 'POST', headers, body: JSON.stringify({ version: 1 }) });
    expect(rolled.status, rolled.body).toBe(200);
    expect(JSON.parse(rolled.body)).toEqual({ version: 4, rolledBackTo: 1 });
    expect(await readFile(gw.file, 'utf8')).not.toContain('id: two');
    for (let i = 0; i < 4; i++) expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('one');
  });
});

describe('dashboard history on a single node', () => {
  it('counts the requests the node serves, read from its own counters', async () => {
    const one = await startBackend('one');
    cleanups.push(() => one.close());
    const gw = await startGateway(`pools:\n  web:\n    backends:\n      - { url: ${one.url}, id: one }\n`);
    cleanups.push(() => gw.stop());
    const headers = { authorization: 'Bearer test-token' };
    // Requests keep arriving until a sample shows them: the sampler runs once a second on its own clock.
    const served = await eventually(async () => {
      for (let i = 0; i < 5; i++) expect((await request(`${gw.url}/`)).status).toBe(200);
      const snapshot = JSON.parse((await request(`${gw.adminUrl}/api/v1/history`, { headers })).body) as {
        pools: { name: string; requestsPerSecond: Array<number | null>; p99: Array<number | null> }[];
      };
      const web = snapshot.pools.find((pool) => pool.name === 'web');
      const index = web?.requestsPerSecond.findIndex((rate) => rate !== null && rate > 0) ?? -1;
      return index >= 0 ? { rate: web!.requestsPerSecond[index]!, p99: web!.p99[index] } : undefined;
    }, 'a history sample with requests');
    expect(served.rate).toBeGreaterThan(0);
    expect(served.p99).toBeGreaterThan(0);
  });
});
