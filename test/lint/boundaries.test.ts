// The import boundaries are enforced by `npm run lint`: a module that reaches across one is an error, its neighbours are not.

import { join } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/process.js';

const eslint = new ESLint({ cwd: REPO });

/** The boundary errors ESLint reports for `source` as if it were the file at `path` (nothing is written). */
async function boundaryErrors(path: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(REPO, path) });
  return result!.messages.filter((message) => message.severity === 2).map((message) => `${message.ruleId}: ${message.message}`);
}

const WRONG: ReadonlyArray<readonly [string, string]> = [
  ['src/proxy/wrong.ts', "import { RaftNode } from '../raft/runtime/node.js';\nexport const x = RaftNode;\n"],
  ['src/balancer/wrong.ts', "import { ClusterStore } from '../cluster/store.js';\nexport const x = ClusterStore;\n"],
  ['src/health/wrong.ts', "import { parseIfMatch } from '../admin/api.js';\nexport const x = parseIfMatch;\n"],
  ['src/balancer/wrong.ts', "import type { NodeStatus } from '../control/types.js';\nexport type X = NodeStatus;\n"],
  ['src/proxy/wrong.ts', "import { poolStatusViews } from '../control/status.js';\nexport const x = poolStatusViews;\n"],
  ['src/raft/core/wrong.ts', "import { readFile } from 'node:fs/promises';\nexport const x = readFile;\n"],
  ['src/raft/core/wrong.ts', "import { DiskStorage } from '../runtime/storage.js';\nexport const x = DiskStorage;\n"],
  ['src/raft/core/wrong.ts', "import { systemClock } from '../../clock.js';\nexport const x = systemClock;\n"],
  ['src/raft/runtime/wrong.ts', "import { validateConfig } from '../../config/validate.js';\nexport const x = validateConfig;\n"],
  ['src/config/wrong.ts', "import { ClusterStore } from '../cluster/store.js';\nexport const x = ClusterStore;\n"],
];

const ALLOWED: ReadonlyArray<readonly [string, string]> = [
  ['src/proxy/fine.ts', "import { validateConfig } from '../config/validate.js';\nexport const x = validateConfig;\n"],
  ['src/raft/core/fine.ts', "import type { Clock } from '../../clock.js';\nimport { BalancerError } from '../../errors.js';\nimport type { Entry } from './types.js';\nexport type X = [Clock, Entry, BalancerError];\n"],
  ['src/cluster/fine.ts', "import { RaftNode } from '../raft/runtime/node.js';\nexport const x = RaftNode;\n"],
  ['src/control/fine.ts', "import type { PoolStatusView } from '../balancer/pool-status.js';\nexport type X = PoolStatusView;\n"],
];

describe('import boundaries (npm run lint)', () => {
  it.each(WRONG)('refuses a wrong import in %s', async (path, source) => {
    const errors = await boundaryErrors(path, source);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^@typescript-eslint\/no-restricted-imports: /);
  });

  it.each(ALLOWED)('lets %s import what it may', async (path, source) => {
    expect(await boundaryErrors(path, source)).toEqual([]);
  });
});
