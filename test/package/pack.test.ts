// The npm package as a new user meets it: packed, installed offline into an empty project (and globally), then validate and start.

import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from '../helpers/process.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';

/** The environment without what an enclosing `npm test` sets, so the nested npm behaves as a user's would. */
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));

function run(command: string, args: readonly string[], cwd: string, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: cleanEnv, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

let dir: string;
let tarball: string;
let files: string[];
let backend: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-pack-'));
  backend = await startBackend('b');
  // dist/ is built by `npm test` (and land.sh) before this runs; packing skips the prepack build so that it never
  // rewrites dist/ under tests running beside it.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], REPO);
  expect(packed.code, packed.stderr).toBe(0);
  const info = (JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!;
  tarball = join(dir, info.filename);
  files = info.files.map((file) => file.path);
});

afterAll(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('builds on prepack and ships what runs balancer, and no tests, sources, secrets or build state', async () => {
    const manifest = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(manifest.scripts['prepack']).toBe('npm run build');
    for (const needed of ['bin/balancer.js', 'dist/cli/main.js', 'dist/app.js', 'README.md', 'LICENSE', 'balancer.schema.json', 'examples/systemd/balancer.service']) {
      expect(files).toContain(needed);
    }
    const allowed = /^(bin|dist|docs|examples|node_modules)\/|^(README\.md|LICENSE|package\.json|balancer\.yaml|balancer\.schema\.json)$/;
    expect(files.filter((path) => !allowed.test(path))).toEqual([]);
    expect(files.filter((path) => path.endsWith('.secret') || path.includes('/data/') || path.startsWith('test/') || path.startsWith('src/'))).toEqual([]);
    // The incremental build's state (tsconfig.json's tsBuildInfoFile, in dist/) is the builder's, not the user's.
    expect(files.filter((path) => path.endsWith('.tsbuildinfo'))).toEqual([]);
  });
});

describe('the tarball installed offline', () => {
  const config = (): string =>
    `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\npools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`;

  it('in an empty project: npx balancer validate, then npx balancer start serves and stops on SIGTERM', async () => {
    const project = join(dir, 'project');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), '{ "name": "try-balancer", "version": "1.0.0", "private": true }\n');
    // Its dependencies are bundled in the tarball: nothing is fetched.
    const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project);
    expect(installed.code, installed.stderr).toBe(0);

    await writeFile(join(project, 'balancer.yaml'), config());
    const valid = await run('npx', ['--no', 'balancer', 'validate', '-c', 'balancer.yaml'], project);
    expect({ code: valid.code, stdout: valid.stdout }).toEqual({ code: 0, stdout: 'balancer.yaml: valid\n' });
    await writeFile(join(project, 'broken.yaml'), 'pools:\n  web:\n    strategy: fastest\n');
    const invalid = await run('npx', ['--no', 'balancer', 'validate', '-c', 'broken.yaml'], project);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^broken\.yaml:3:15: /m);

    const child = spawn('npx', ['--no', 'balancer', 'start', '-c', 'balancer.yaml'], { cwd: project, env: cleanEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // npx may exit on the signal before balancer (same process group, same pipes) has written its last lines:
    // the pipes close only once every process holding them has exited.
    const outputClosed = Promise.all([once(child.stdout, 'close'), once(child.stderr, 'close')]);
    let output = '';
    try {
      const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`balancer did not start: ${output}`)), 60_000);
        const onData = (chunk: Buffer): void => {
          output += chunk.toString();
          const line = output.split('\n').find((text) => text.includes('"balancer started"'));
          if (line === undefined) return;
          clearTimeout(timer);
          resolve(JSON.parse(line) as Record<string, unknown>);
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('exit', () => reject(new Error(`balancer exited: ${output}`)));
      });
      const res = await request(`http://${String(started['proxy'])}/from-the-package`);
      expect(res.status).toBe(200);
      expect(backend.seen.some((seen) => seen.url === '/from-the-package')).toBe(true);
      // SIGTERM to the group, as a terminal's Ctrl-C or systemd's stop sends it: balancer drains and stops.
      process.kill(-child.pid!, 'SIGTERM');
      await Promise.all([exited, outputClosed]);
      expect(output).toContain('"msg":"stopped"');
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    }
  }, 240_000);

  it('globally (npm install -g): a working balancer command', async () => {
    const prefix = join(dir, 'global');
    const installed = await run('npm', ['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball], dir);
    expect(installed.code, installed.stderr).toBe(0);
    await writeFile(join(dir, 'global.yaml'), config());
    const valid = await run(join(prefix, 'bin', 'balancer'), ['validate', '-c', join(dir, 'global.yaml')], dir);
    expect({ code: valid.code, stderr: valid.stderr }).toEqual({ code: 0, stderr: '' });
  }, 240_000);
});
