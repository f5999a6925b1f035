// A standalone gateway's balancer.yaml emptied, truncated or stripped of backends while traffic runs: it keeps serving what it served.

import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startTraffic, type TrafficTally } from '../helpers/traffic.js';
import { eventually } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setup(): Promise<{ gw: TestGateway; api: TestBackend; web: TestBackend }> {
  const api = await startBackend('api-1');
  const web = await startBackend('web-1');
  cleanups.push(() => api.close(), () => web.close());
  const gw = await startGateway(
    [
      'routes:',
      '  - match: { pathPrefix: /api }',
      '    pool: api',
      '  - match: { pathPrefix: / }',
      '    pool: web',
      'pools:',
      '  api:',
      '    backends:',
      `      - { url: ${api.url}, id: api-1 }`,
      '  web:',
      '    backends:',
      `      - { url: ${web.url}, id: web-1 }`,
      '',
    ].join('\n'),
  );
  cleanups.push(() => gw.stop());
  return { gw, api, web };
}

function expectAllServed(tally: TrafficTally): void {
  expect(tally.total).toBeGreaterThan(0);
  expect(Object.keys(tally.byOutcome), `${JSON.stringify(tally.byOutcome)} ${tally.examples.join('\n')}`).toEqual(['200']);
}

async function underTraffic(gw: TestGateway, action: () => Promise<void>): Promise<TrafficTally> {
  const load = startTraffic([`${gw.url}/`, `${gw.url}/api/x`], { maxMs: 30_000 });
  await eventually(() => load.total > 20, 'traffic to flow');
  await action();
  return load.stop();
}

const logged = (gw: TestGateway, prefix: string): Record<string, unknown> | undefined => gw.logs.find((line) => String(line['msg']).startsWith(prefix));

describe('a standalone gateway whose file is damaged', () => {
  it('ignores an emptied file and a file cut before routes and pools, and keeps serving', async () => {
    const { gw } = await setup();
    const original = await readFile(gw.file, 'utf8');
    expectAllServed(
      await underTraffic(gw, async () => {
        await truncate(gw.file, 0);
        await eventually(() => logged(gw, 'config file ignored') !== undefined, 'the empty file to be ignored');
      }),
    );
    expect(gw.app.store.version).toBe(1);
    expect(await readFile(gw.file, 'utf8')).toBe('');

    await writeFile(gw.file, original);
    const ignoredBefore = gw.logs.filter((line) => String(line['msg']).startsWith('config file ignored')).length;
    expectAllServed(
      await underTraffic(gw, async () => {
        await truncate(gw.file, original.indexOf('routes:'));
        await eventually(
          () => gw.logs.filter((line) => String(line['msg']).startsWith('config file ignored')).length > ignoredBefore,
          'the truncated file to be ignored',
        );
      }),
    );
    expect(gw.app.store.version).toBe(1);
  });

  it('refuses an edit that leaves a routed pool without backends: saved as .rejected-, the file shows what serves', async () => {
    const { gw } = await setup();
    const original = await readFile(gw.file, 'utf8');
    const stripped = original.replace(/( {4}backends:\n {6}- \{ url: [^\n]*id: web-1 \}\n)/, '    backends: []\n');
    expect(stripped).not.toBe(original);
    expectAllServed(
      await underTraffic(gw, async () => {
        await writeFile(gw.file, stripped);
        await eventually(() => logged(gw, 'config edit refused') !== undefined, 'the refusal');
      }),
    );
    const refused = logged(gw, 'config edit refused')!;
    expect(String(refused['msg'])).toContain('pool "web" would have no backends');
    expect(await readFile(String(refused['saved']), 'utf8')).toBe(stripped);
    expect((await readdir(gw.dir)).filter((name) => name.startsWith('balancer.yaml.rejected-'))).toHaveLength(1);
    await eventually(async () => isDeepStrictEqual(parse(await readFile(gw.file, 'utf8')), parse(original)), 'the file to show what serves');
    expect(gw.app.store.version).toBe(1);
  });

  it('keeps an invalid edit as .rejected- when an admin API change rewrites the file', async () => {
    const { gw, api } = await setup();
    const invalid = (await readFile(gw.file, 'utf8')).replace('pool: web', 'pool: wbe');
    await writeFile(gw.file, invalid);
    await eventually(() => logged(gw, 'config edit rejected') !== undefined, 'the invalid edit to be logged');
    const headers = { authorization: 'Bearer test-token', 'content-type': 'application/json' };
    const added = await request(`${gw.adminUrl}/api/v1/pools/web/backends`, { method: 'POST', headers, body: JSON.stringify({ url: api.url, id: 'extra' }) });
    expect(added.status, added.body).toBe(201);
    const saved = logged(gw, 'the config file held an edit that was never applied')!;
    expect(await readFile(String(saved['saved']), 'utf8')).toBe(invalid);
    const rewritten = await readFile(gw.file, 'utf8');
    expect(rewritten).toContain('id: extra');
  });

  it('the admin API refuses removing the last backend of a routed pool or every pool, unless forced', async () => {
    const { gw } = await setup();
    const headers = { authorization: 'Bearer test-token', 'content-type': 'application/json' };
    const removeLast = await request(`${gw.adminUrl}/api/v1/pools/web/backends/web-1`, { method: 'DELETE', headers });
    expect(removeLast.status, removeLast.body).toBe(409);
    expect(JSON.parse(removeLast.body).error.code).toBe('UNSAFE_CHANGE');
    const emptyAll = await request(`${gw.adminUrl}/api/v1/config`, { method: 'PUT', headers, body: JSON.stringify({ routes: [], pools: {} }) });
    expect(emptyAll.status, emptyAll.body).toBe(409);
    expect((await request(`${gw.url}/`)).status).toBe(200);
    const badForce = await request(`${gw.adminUrl}/api/v1/pools/web/backends/web-1?force=maybe`, { method: 'DELETE', headers });
    expect(badForce.status).toBe(400);
    const forced = await request(`${gw.adminUrl}/api/v1/pools/web/backends/web-1?force=true`, { method: 'DELETE', headers });
    expect(forced.status, forced.body).toBe(200);
    expect((await request(`${gw.url}/`)).status).toBe(503);
    expect(await readFile(gw.file, 'utf8')).toContain('backends: []');
  });
});
