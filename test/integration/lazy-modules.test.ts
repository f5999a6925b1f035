// A single gateway process without workers or a cluster never loads Raft, the cluster store, the worker supervisor, the dashboard page or the YAML writer: each is loaded by its first use.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { REPO, START_TIMEOUT_MS, startCli, type RunningNode } from '../helpers/process.js';

/**
 * Module resolution hooks (node:module register) that append every module URL the child resolves to a file: ESM
 * modules, ours all are, and the dynamic imports that load the lazy parts go through them.
 */
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.LOADED_MODULES_LOG, resolved.url + '\\n');
  return resolved;
}
`;

const TOKEN = 'lazy-modules-test-token';
const DIST = pathToFileURL(join(REPO, 'dist')).href;
/** Loaded only by a cluster section, `workers` above 0, the first GET / of the admin listener, the first config change or diff. */
const LAZY = ['/raft/', '/cluster/', '/workers/supervisor.js', '/admin/dashboard.js', '/config/write.js'];

let dir: string;
let backend: TestBackend;
let node: RunningNode;
let log: string;
let proxy: string;
let admin: string;

const loadedOurs = async (): Promise<string[]> =>
  (await readFile(log, 'utf8'))
    .split('\n')
    .filter((url) => url.startsWith(DIST))
    .map((url) => url.slice(DIST.length));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-lazy-modules-'));
  backend = await startBackend('b');
  await writeFile(join(dir, 'hooks.mjs'), HOOKS);
  await writeFile(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
  log = join(dir, 'loaded.txt');
  await writeFile(log, '');
  const file = join(dir, 'balancer.yaml');
  await writeFile(
    file,
    [
      'listen: 127.0.0.1:0',
      `admin: { listen: 127.0.0.1:0, token: ${TOKEN} }`,
      'pools:',
      '  web:',
      '    backends:',
      `      - { url: ${backend.url}, id: web-1 }`,
      '',
    ].join('\n'),
  );
  node = startCli(['start', '-c', file], {
    env: { NODE_OPTIONS: `--import=${pathToFileURL(join(dir, 'register.mjs')).href}`, LOADED_MODULES_LOG: log },
  });
  const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'balancer started', START_TIMEOUT_MS);
  proxy = `http://${String(started['proxy'])}`;
  admin = `http://${String(started['admin'])}`;
}, START_TIMEOUT_MS + 10_000);

afterAll(async () => {
  node?.child.kill('SIGKILL');
  await backend?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('modules a single gateway process loads', () => {
  it('serving requests and the admin API loads none of the parts it does not use', async () => {
    expect((await request(`${proxy}/`)).status).toBe(200);
    expect((await request(`${admin}/api/v1/status`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    const loaded = await loadedOurs();
    // The hooks see our modules at all: the data plane's forwarder was loaded through them.
    expect(loaded).toContain('/proxy/forward.js');
    expect(loaded.filter((path) => LAZY.some((part) => path.includes(part)))).toEqual([]);
  });

  it('the dashboard page is loaded by its first visit, and served whole', async () => {
    const res = await request(`${admin}/`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.body).toContain('<!doctype html>');
    expect(await loadedOurs()).toContain('/admin/dashboard.js');
  });

  it('the YAML writer is loaded by the first change through the API, which is written to the file', async () => {
    const res = await request(`${admin}/api/v1/pools/web/backends/web-1`, {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ weight: 7 }),
    });
    expect(res.status).toBe(200);
    expect(await readFile(join(dir, 'balancer.yaml'), 'utf8')).toContain('weight: 7');
    expect(await loadedOurs()).toContain('/config/write.js');
  });
});
