// Line diffs between config versions: a shortest edit script, and unified hunks a reviewer (or `patch`) reads.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { diffLines, unifiedDiff } from '../../src/config/diff.js';

function lcsLength(a: readonly string[], b: readonly string[]): number {
  const table = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      table[i]![j] = a[i - 1] === b[j - 1] ? table[i - 1]![j - 1]! + 1 : Math.max(table[i - 1]![j]!, table[i]![j - 1]!);
    }
  }
  return table[a.length]![b.length]!;
}

const textLines = fc.array(fc.constantFrom('a', 'b', 'c', 'd', '  - { url: x }', ''), { maxLength: 30 });

describe('diffLines', () => {
  it('property: the script turns a into b with the fewest changes', () => {
    fc.assert(
      fc.property(textLines, textLines, (a, b) => {
        const ops = diffLines(a, b);
        expect(ops.filter((op) => op.kind !== '+').map((op) => op.line)).toEqual(a);
        expect(ops.filter((op) => op.kind !== '-').map((op) => op.line)).toEqual(b);
        expect(ops.filter((op) => op.kind !== ' ').length).toBe(a.length + b.length - 2 * lcsLength(a, b));
      }),
      { numRuns: 500 },
    );
  });
});

describe('unifiedDiff', () => {
  it('is empty for equal texts and labels its hunks like diff -u', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n', { from: 'v1', to: 'v2' })).toBe('');
    const before = ['pools:', '  web:', '    backends:', '      - { url: http://10.0.0.1, id: a }', '      - { url: http://10.0.0.2, id: b }', ''].join('\n');
    const after = ['pools:', '  web:', '    backends:', '      - { url: http://10.0.0.1, id: a, weight: 3 }', '      - { url: http://10.0.0.2, id: b }', '      - { url: http://10.0.0.3, id: c }', ''].join('\n');
    expect(unifiedDiff(before, after, { from: 'v4', to: 'v7' })).toBe(
      [
        '--- v4',
        '+++ v7',
        '@@ -1,5 +1,6 @@',
        ' pools:',
        '   web:',
        '     backends:',
        '-      - { url: http://10.0.0.1, id: a }',
        '+      - { url: http://10.0.0.1, id: a, weight: 3 }',
        '       - { url: http://10.0.0.2, id: b }',
        '+      - { url: http://10.0.0.3, id: c }',
        '',
      ].join('\n'),
    );
  });

  it('property: GNU patch applies every diff it writes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'balancer-diff-'));
    try {
      fc.assert(
        fc.property(textLines, textLines, (a, b) => {
          const before = a.map((line) => `${line}\n`).join('');
          const after = b.map((line) => `${line}\n`).join('');
          const diff = unifiedDiff(before, after, { from: 'old', to: 'new' });
          if (diff === '') {
            expect(before).toBe(after);
            return;
          }
          writeFileSync(join(dir, 'file'), before);
          writeFileSync(join(dir, 'change.diff'), diff);
          execFileSync('patch', ['-s', '--no-backup-if-mismatch', join(dir, 'file'), join(dir, 'change.diff')], { stdio: 'pipe' });
          expect(execFileSync('cat', [join(dir, 'file')]).toString()).toBe(after);
        }),
        { numRuns: 60 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
