// Keeps the Raft core pure: no I/O, clocks, randomness or environment access, only core imports.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const coreDir = join(root, 'src', 'raft', 'core');
const coreFiles = readdirSync(coreDir).filter((f) => f.endsWith('.ts'));

/** What a core module may import: sibling core modules, types from clock.ts, and the pure error type. */
function importProblems(file: string, text: string): string[] {
  const problems: string[] = [];
  const importRe = /^\s*(import|export)\s+(type\s+)?[^;]*?from\s+['"]([^'"]+)['"]/gms;
  for (const match of text.matchAll(importRe)) {
    const typeOnly = match[2] !== undefined;
    const source = match[3]!;
    if (/^\.\/[a-z-]+\.js$/.test(source)) continue;
    if (source === '../../clock.js' && typeOnly) continue;
    if (source === '../../errors.js') continue;
    problems.push(`${file}: imports ${source}${typeOnly ? ' (type)' : ''}`);
  }
  if (/\bimport\s*\(/.test(text)) problems.push(`${file}: dynamic import`);
  if (/^\s*import\s+['"]/m.test(text)) problems.push(`${file}: side-effect import`);
  return problems;
}

const FORBIDDEN = ['Date', 'Math.random', 'setTimeout', 'setInterval', 'setImmediate', 'process', 'require', 'performance', 'globalThis', 'fetch', 'queueMicrotask'];

function forbiddenMentions(file: string, text: string): string[] {
  return FORBIDDEN.filter((word) => new RegExp(`(^|[^\\w.])${word.replace('.', '\\.')}\\b`).test(text)).map((word) => `${file}: mentions ${word}`);
}

describe('Raft core purity', () => {
  it('finds the core modules', () => {
    expect(coreFiles).toEqual(expect.arrayContaining(['raw-node.ts', 'raft.ts', 'log.ts', 'storage.ts', 'types.ts']));
  });

  it('imports nothing but core modules, clock types and the error type', () => {
    const problems = coreFiles.flatMap((f) => importProblems(f, readFileSync(join(coreDir, f), 'utf8')));
    expect(problems).toEqual([]);
  });

  it('never touches time, randomness, timers, the process or require', () => {
    const problems = coreFiles.flatMap((f) => forbiddenMentions(f, readFileSync(join(coreDir, f), 'utf8')));
    expect(problems).toEqual([]);
  });

  it('the error module the core uses is itself import-free and pure', () => {
    const text = readFileSync(join(root, 'src', 'errors.ts'), 'utf8');
    expect(/^\s*import\b/m.test(text)).toBe(false);
    expect(forbiddenMentions('errors.ts', text)).toEqual([]);
  });

  it('the checks catch what they are meant to catch', () => {
    expect(importProblems('x.ts', "import { readFileSync } from 'node:fs';")).toHaveLength(1);
    expect(importProblems('x.ts', "import { systemRandom } from '../../clock.js';")).toHaveLength(1);
    expect(importProblems('x.ts', "import type { Random } from '../../clock.js';")).toEqual([]);
    expect(importProblems('x.ts', "import { x } from '../runtime/node.js';")).toHaveLength(1);
    expect(forbiddenMentions('x.ts', 'const t = Date.now();')).toHaveLength(1);
    expect(forbiddenMentions('x.ts', 'const r = Math.random();')).toHaveLength(1);
    expect(forbiddenMentions('x.ts', 'if (process.env.X) {}')).toHaveLength(1);
    expect(forbiddenMentions('x.ts', 'this.raft.process(m)')).toEqual([]);
  });
});
