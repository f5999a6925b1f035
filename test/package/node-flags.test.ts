// The V8 flags balancer runs with (docs/design.md says why) are the same wherever it is started, and node accepts them.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/process.js';
import { BALANCER_NODE_FLAGS } from '../../bench/lib/targets.js';

const read = (file: string): string => readFileSync(join(REPO, file), 'utf8');
const flagsIn = (command: string): string[] => command.split(/\s+/).filter((word) => word.startsWith('--') && !word.startsWith('--demo'));

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
});
