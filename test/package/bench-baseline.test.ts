// The bench's --baseline target: an earlier build of balancer, named by its commit, refused when it is not a checkout.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { baselineTarget, balancerBuilt } from '../../bench/lib/targets.js';

const made: string[] = [];
function checkout(withBin: boolean): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'bench-baseline-'));
  made.push(dir);
  if (withBin) {
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin/balancer.js'), '');
  }
  return dir;
}

afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('bench --baseline', () => {
  it('names the earlier build by its commit and date', () => {
    const dir = checkout(true);
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', dir, ...args], {
        encoding: 'utf8',
        env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t', GIT_COMMITTER_DATE: '2026-11-30T02:00:00Z', GIT_AUTHOR_DATE: '2026-11-30T02:00:00Z' },
      }).trim();
    git('init', '-q');
    git('add', '.');
    git('commit', '-q', '-m', 'before');
    const commit = git('rev-parse', '--short', 'HEAD');
    const target = baselineTarget(dir);
    expect(target).toMatchObject({ id: 'baseline', kind: 'balancer', workers: 0, repo: dir });
    expect(target.label).toBe(`balancer at ${commit} 2026-11-30 (--baseline)`);
  });

  it('names a build outside git by its directory', () => {
    const dir = checkout(true);
    expect(baselineTarget(dir).label).toBe(`balancer at ${dir} (--baseline)`);
  });

  it('refuses a directory that holds no balancer, saying what is missing', () => {
    const dir = checkout(false);
    expect(() => baselineTarget(dir)).toThrow(`--baseline ${dir}: no bin/balancer.js there`);
  });

  it('counts a checkout as built only once it has dist/', () => {
    const dir = checkout(true);
    expect(balancerBuilt(dir)).toBe(false);
    mkdirSync(join(dir, 'dist/cli'), { recursive: true });
    writeFileSync(join(dir, 'dist/cli/main.js'), '');
    expect(balancerBuilt(dir)).toBe(true);
  });
});
