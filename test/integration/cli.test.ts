// The balancer command as users run it: validate's exit codes and FILE:LINE:COL lines, start, SIGHUP, SIGTERM.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, startCli, REPO, START_TIMEOUT_MS, type RunningNode } from '../helpers/process.js';
import { startBackend, request, type TestBackend } from '../helpers/backend.js';

let dir: string;
const running: RunningNode[] = [];
let b1: TestBackend;
let b2: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-cli-'));
  b1 = await startBackend('one');
  b2 = await startBackend('two');
});

afterAll(async () => {
  for (const node of running) node.child.kill('SIGKILL');
  await b1.close();
  await b2.close();
  await rm(dir, { recursive: true, force: true });
});

describe('balancer validate', () => {
  it('accepts the shipped balancer.yaml', async () => {
    const result = await runCli(['validate', '-c', join(REPO, 'balancer.yaml')]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('exits 1 with one FILE:LINE:COL line per problem', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      [
        'listen: 127.0.0.1:8080',
        'pools:',
        '  web:',
        '    strategy: fastest',
        '    backends:',
        '      - { url: ftp://x:1, weight: 0 }',
        '      - { url: http://127.0.0.1:1, wieght: 2 }',
        'routes:',
        '  - { match: { pathPrefix: / }, pool: wbe }',
        '',
      ].join('\n'),
    );
    const result = await runCli(['validate', '-c', file]);
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) expect(line).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
    expect(result.stderr).toContain(':4:');
    expect(result.stderr).toMatch(/did you mean "weight"/);
    expect(result.stderr).toMatch(/did you mean "web"/);
  });
});

describe('balancer start', () => {
  it('serves, reloads on SIGHUP, and exits 0 on SIGTERM', async () => {
    const file = join(dir, 'run.yaml');
    const write = (url: string) => writeFile(file, `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\npools:\n  web:\n    backends:\n      - { url: ${url} }\n`);
    await write(b1.url);
    const node = startCli(['start', '-c', file]);
    running.push(node);
    const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'start', START_TIMEOUT_MS);
    const proxy = String(started['proxy']);
    expect((await request(`http://${proxy}/`)).headers['x-backend']).toBe('one');
    await write(b2.url);
    node.child.kill('SIGHUP');
    await node.waitFor((line) => line['msg'] === 'config reloaded from file', 'reload');
    expect((await request(`http://${proxy}/`)).headers['x-backend']).toBe('two');
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });

  it('refuses to start on an invalid config, listing the problems', async () => {
    const file = join(dir, 'invalid.yaml');
    await writeFile(file, 'listen: nowhere\npools: {}\n');
    const result = await runCli(['start', '-c', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/invalid\.yaml:1:9: /);
  });
});

describe('usage errors and --version', () => {
  it('every usage error exits 2, help and --version exit 0, and --version prints the package version', async () => {
    const { version } = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(join(REPO, 'package.json'), 'utf8'))) as { version: string };
    const shown = await runCli(['--version']);
    expect(shown).toMatchObject({ code: 0, stdout: `${version}\n` });
    expect((await runCli(['--help'])).code).toBe(0);
    const results = await Promise.all([
      runCli(['frobnicate']),
      runCli(['start', '--bogus']),
      runCli(['backends', 'add', 'web']),
      runCli(['backends', 'weight', 'web', 'web-1', '0', '--admin', '127.0.0.1:1']),
      runCli(['config', 'rollback', 'latest', '--admin', '127.0.0.1:1']),
    ]);
    for (const result of results) expect(result.code, result.stderr).toBe(2);
    expect(results[0]!.stderr).toContain("unknown command 'frobnicate'");
    expect(results[3]!.stderr).toContain('weight must be a whole number from 1 to 10000');
  });
});
