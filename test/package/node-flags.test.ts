// The V8 flags balancer runs with (docs/design.md says why) are the same wherever it is started, node accepts them,
// and the data-plane workers run with them too.

import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, startBalancer } from '../helpers/process.js';
import { BALANCER_NODE_FLAGS } from '../../bench/lib/targets.js';

const read = (file: string): string => readFileSync(join(REPO, file), 'utf8');
const flagsIn = (command: string): string[] => command.split(/\s+/).filter((word) => word.startsWith('--') && !word.startsWith('--demo'));

/** The node options a running process was started with: the words of its command line between node and the script. */
async function nodeFlagsOf(pid: number): Promise<string[]> {
  const words = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  const script = words.findIndex((word, i) => i > 0 && !word.startsWith('--'));
  return words.slice(1, script);
}

/** The pids whose parent is `pid`, from /proc/N/stat (its fourth field, after the parenthesised command name). */
async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => null);
    if (stat === null) continue;
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (parent === pid) children.push(Number(entry));
  }
  return children;
}

describe('node flags', () => {
  it('bin/balancer.js, npm start, the operations guide and the bench use the same ones', () => {
    const shebang = read('bin/balancer.js').split('\n')[0]!;
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts['start']!;
    const podCommand = /command: (\[.*balancer\.js.*\])/.exec(read('docs/operations.md'))![1]!;
    const podFlags = (JSON.parse(podCommand) as string[]).filter((word) => word.startsWith('--'));
    expect(BALANCER_NODE_FLAGS.length).toBeGreaterThan(0);
    expect(flagsIn(shebang)).toEqual(BALANCER_NODE_FLAGS);
    expect(flagsIn(start)).toEqual(BALANCER_NODE_FLAGS);
    expect(podFlags).toEqual(BALANCER_NODE_FLAGS);
  });

  it('are flags this node accepts', () => {
    // node refuses an unknown or malformed V8 option at start-up ("bad option").
    expect(() => execFileSync(process.execPath, [...BALANCER_NODE_FLAGS, '-e', '0'], { stdio: 'pipe' })).not.toThrow();
    expect(() => execFileSync(process.execPath, ['--initial-old-space-sise=64', '-e', '0'], { stdio: 'pipe' })).toThrow();
  });

  it.skipIf(process.platform !== 'linux')('reach the data-plane workers (workers: 1) as they reach the primary', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'balancer-node-flags-'));
    const config = ['listen: 127.0.0.1:0', 'log: { level: info, access: false }', 'workers: 1', 'pools:', '  web:', '    backends:', '      - { url: http://127.0.0.1:9 }', ''];
    const { node } = await startBalancer(dir, config, { nodeFlags: BALANCER_NODE_FLAGS });
    try {
      await node.waitFor((line) => line['msg'] === 'data-plane workers started', 'the workers to listen');
      const primary = node.child.pid!;
      expect(await nodeFlagsOf(primary)).toEqual(BALANCER_NODE_FLAGS);
      const workers = await childrenOf(primary);
      expect(workers).toHaveLength(1);
      expect(await nodeFlagsOf(workers[0]!)).toEqual(BALANCER_NODE_FLAGS);
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
