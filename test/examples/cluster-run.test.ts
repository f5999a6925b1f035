// examples/cluster/run.sh as the walkthrough uses it, on a port base of free ports: refuses taken ports, appends to logs, and its kill hint kills the actual leader.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';
import { ephemeralLow, portIsFree } from '../helpers/ports.js';

/** Offsets from the port base of every port run.sh uses (Raft, proxies, demo backends, admin). */
const OFFSETS = [1, 2, 3, 1081, 1082, 1083, 2001, 2002, 2003, 2091, 2092, 2093];

let root: string;
let example: string;
let base: number;
let data: string;

function sh(script: string, args: readonly string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', [script, ...args], { cwd: root, timeout: 90_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A base whose twelve ports are all free now (tests take no fixed ports). */
async function freeBase(): Promise<number> {
  // Below the ephemeral range, like freePort: an outgoing connection elsewhere on the machine cannot take one of
  // them between this check and run.sh's nodes binding them (it did once: EADDRINUSE on a Raft port at base 46000).
  const bases = Math.floor((await ephemeralLow() - 10_000 - Math.max(...OFFSETS)) / 100);
  for (let attempt = 0; attempt < 50; attempt++) {
    const candidate = 10_000 + Math.floor(Math.random() * bases) * 100;
    const free = await Promise.all(OFFSETS.map((offset) => portIsFree(candidate + offset)));
    if (free.every(Boolean)) return candidate;
  }
  throw new Error('no free port base found');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function pidOf(node: string): Promise<number> {
  return Number((await readFile(join(data, `${node}.pid`), 'utf8')).trim());
}

async function roleOf(node: string): Promise<string | null> {
  const admin = base + 2090 + Number(node.slice(1));
  try {
    const res = await fetch(`http://127.0.0.1:${admin}/api/v1/cluster`, { headers: { authorization: 'Bearer example-token' } });
    return ((await res.json()) as { role: string }).role;
  } catch {
    return null;
  }
}

beforeAll(async () => {
  // A copy of the example beside links to the built code, so the test writes nothing into the repository.
  root = await mkdtemp(join(tmpdir(), 'balancer-run-sh-'));
  example = join(root, 'examples', 'cluster');
  await mkdir(join(root, 'examples'), { recursive: true });
  await cp(join(REPO, 'examples', 'cluster'), example, { recursive: true, filter: (source) => !source.includes(`${join('examples', 'cluster', 'data')}`) });
  await symlink(join(REPO, 'bin'), join(root, 'bin'));
  await symlink(join(REPO, 'dist'), join(root, 'dist'));
  base = await freeBase();
  data = join(example, 'data', `base-${base}`);
});

afterAll(async () => {
  await sh(join(example, 'stop.sh'), ['--port-base', String(base), '--wipe']);
  await rm(root, { recursive: true, force: true });
});

describe('examples/cluster/run.sh --port-base N', () => {
  it('fails naming the taken port and its role, and starts nothing', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(base + 1082, '127.0.0.1', () => resolve()));
    try {
      const result = await sh(join(example, 'run.sh'), ['--port-base', String(base)]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${base + 1082} (n2-proxy): EADDRINUSE`);
      expect(result.stderr).toContain('--port-base N');
      expect((await readdir(data)).filter((name) => name.endsWith('.pid'))).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it('runs on the ports of the base, names the leader the cluster reports, and its kill hint kills that node', async () => {
    const started = await sh(join(example, 'run.sh'), ['--port-base', String(base)]);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    expect(started.stdout).toContain(`n1    http://127.0.0.1:${base + 1081}    http://127.0.0.1:${base + 2091}    127.0.0.1:${base + 1}`);
    const res = await fetch(`http://127.0.0.1:${base + 1082}/`);
    expect(await res.text()).toMatch(/^hello from web-\d \(pool web\)/);

    // run.sh names the node that said it leads (no election since: every node is up and the cluster is quiet).
    const named = /leader now: (n\d)/.exec(started.stdout)?.[1];
    expect(named).toBeDefined();
    expect(await roleOf(named!)).toBe('leader');

    // The hint asks the cluster when it runs: whichever node leads then is the one killed.
    const hint = started.stdout.split('\n').find((line) => line.trim().startsWith('kill -9'))!.trim();
    let leaderBefore: string | undefined;
    await eventually(async () => {
      for (const node of ['n1', 'n2', 'n3']) if ((await roleOf(node)) === 'leader') leaderBefore = node;
      return leaderBefore !== undefined;
    }, 'a leader', 15_000);
    const pids = { n1: await pidOf('n1'), n2: await pidOf('n2'), n3: await pidOf('n3') };
    const killed = await new Promise<number>((resolve) => execFile('sh', ['-c', hint], { cwd: root }, (error) => resolve(error === null ? 0 : 1)));
    expect(killed).toBe(0);
    await eventually(() => !alive(pids[leaderBefore as keyof typeof pids]), 'the leader to be gone', 5_000);
    for (const node of ['n1', 'n2', 'n3'] as const) if (node !== leaderBefore) expect(alive(pids[node])).toBe(true);

    // leader.sh names the new leader once the survivors elected one.
    let newLeader = '';
    await eventually(async () => {
      const asked = await sh(join(example, 'leader.sh'), ['--port-base', String(base)]);
      newLeader = asked.stdout.trim();
      return asked.code === 0;
    }, 'a new leader', 20_000, 200);
    expect(newLeader).not.toBe(leaderBefore);
    expect(await roleOf(newLeader)).toBe('leader');

    // run.sh again starts only the killed node, and its log keeps the first run's lines.
    const logBefore = await readFile(join(data, `${leaderBefore!}.log`), 'utf8');
    const again = await sh(join(example, 'run.sh'), ['--port-base', String(base)]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`started ${leaderBefore!} (pid`);
    expect(again.stdout.match(/is already running/g)).toHaveLength(3);
    const logAfter = await readFile(join(data, `${leaderBefore!}.log`), 'utf8');
    expect(logAfter.startsWith(logBefore)).toBe(true);
    expect(logAfter.match(/^--- run\.sh starting /gm)).toHaveLength(2);
    // Four processes start, elect, are killed and restarted on two shared cores: 20-30 s at a load of 15.
  });
});
