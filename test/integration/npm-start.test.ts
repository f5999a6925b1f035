// `npm start` as a newcomer runs it: the script execs node, so npm's only child is the balancer and a signal to npm reaches it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { REPO } from '../helpers/process.js';

let dir: string;
let backend: TestBackend;
const pidsToKill: number[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-npm-start-'));
  backend = await startBackend('b');
});

afterAll(async () => {
  for (const pid of pidsToKill) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

/** Running (a zombie left for a parent that does not reap it has exited). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The pids whose parent is `pid` (from ps, so it works for any process; ps exits 1 when there is none). */
function childrenOf(pid: number): number[] {
  let out: string;
  try {
    out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return [];
  }
  return out === '' ? [] : out.split(/\s+/).map(Number);
}

interface NpmRun {
  readonly npm: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly closed: Promise<void>;
  /** Everything npm and the balancer wrote so far (stdout and stderr). */
  output(): string;
  /** Resolves with the first output line containing `text`, parsed as JSON; rejects after timeoutMs. */
  waitForLine(text: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** `npm start -- -c FILE` in the repository, as a newcomer runs it; its pid is killed after the tests in any case. */
function npmStart(file: string): NpmRun {
  const npm = spawn('npm', ['start', '--silent', '--', '-c', file], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  pidsToKill.push(npm.pid!);
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    output += chunk.toString();
    for (const wake of [...waiters]) wake();
  };
  npm.stdout!.on('data', onData);
  npm.stderr!.on('data', onData);
  return {
    npm,
    exited: new Promise((resolve) => npm.on('exit', (code) => resolve(code))),
    closed: new Promise((resolve) => npm.on('close', () => resolve())),
    output: () => output,
    waitForLine: (text, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no output line with ${text}: ${output}`));
        }, timeoutMs);
        const check = (): void => {
          // Complete lines only: a chunk can end in the middle of one.
          const line = output.split('\n').slice(0, -1).find((candidate) => candidate.includes(text));
          if (line === undefined) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(JSON.parse(line) as Record<string, unknown>);
        };
        waiters.add(check);
        check();
      }),
  };
}

describe('npm start', () => {
  it('runs the balancer as npm\'s only child process, and SIGTERM to npm drains it and exits 0', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(
      file,
      `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\nshutdown: { drainTimeout: 10s }\n` +
        `pools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`,
    );
    const run = npmStart(file);
    const npm = run.npm;
    const started = await run.waitForLine('"balancer started"');

    // The process tree is npm -> node (no shell in between that would keep signals from the balancer).
    const children = childrenOf(npm.pid!);
    // Whatever runs under npm is killed after the test, even when an assertion below fails.
    for (const child of children) pidsToKill.push(child, ...childrenOf(child));
    expect(children).toHaveLength(1);
    const balancerPid = children[0]!;
    expect(started['pid']).toBe(balancerPid);
    const cmdline = (await readFile(`/proc/${balancerPid}/cmdline`, 'utf8')).split('\0');
    expect(cmdline[0]).toMatch(/node$/);
    expect(cmdline).toContain('bin/balancer.js');

    // A request in flight when the signal arrives is answered: the balancer drains rather than dying.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
    backend.handle((_req, res) => {
      arrived();
      void held.then(() => res.writeHead(200).end('late answer'));
    });
    const inFlight = request(`http://${String(started['proxy'])}/`);
    await requestArrived;

    npm.kill('SIGTERM');
    await run.waitForLine('"shutting down"', 15_000);
    release();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('late answer');

    expect(await run.exited).toBe(0);
    await run.closed;
    expect(run.output()).toContain('"msg":"stopped"');
    expect(isAlive(balancerPid)).toBe(false);
  });

  it('stops the balancer when npm itself is killed with a signal it cannot pass on (SIGKILL)', async () => {
    const file = join(dir, 'balancer-kill.yaml');
    await writeFile(file, `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\npools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`);
    const run = npmStart(file);
    const npm = run.npm;
    await run.waitForLine('"balancer started"');
    const [balancerPid] = childrenOf(npm.pid!);
    pidsToKill.push(balancerPid!);
    npm.kill('SIGKILL');
    // Orphaned, it notices within about a second that npm is gone and stops as on SIGTERM (bounded wait).
    for (let i = 0; i < 300 && isAlive(balancerPid!); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(isAlive(balancerPid!)).toBe(false);
    expect(run.output()).toContain('"signal":"npm start exited"');
    expect(run.output()).toContain('"msg":"stopped"');
  });
});
