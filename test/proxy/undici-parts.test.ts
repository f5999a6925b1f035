import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as Undici from 'undici';
import { Pool, buildConnector } from '../../src/proxy/undici-parts.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

describe('undici parts', () => {
  it('are the very classes undici exports', () => {
    expect(Pool).toBe(Undici.Pool);
    expect(buildConnector).toBe(Undici.buildConnector);
  });

  it('a balancer process loads undici without its index (fetch, WebSocket, caches, mocks)', () => {
    // A fresh process: this one has loaded undici's index through the test above.
    const script = [
      "import { createRequire } from 'node:module';",
      `await import(${JSON.stringify(join(REPO, 'dist/cli/main.js'))});`,
      `const cache = createRequire(${JSON.stringify(join(REPO, 'package.json'))}).cache;`,
      "process.stdout.write(JSON.stringify(Object.keys(cache).filter((f) => f.includes('/node_modules/undici/'))));",
    ].join('\n');
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' })) as string[];
    const relative = loaded.map((file) => file.slice(file.indexOf('/node_modules/undici/') + '/node_modules/undici/'.length));
    expect(relative).toContain('lib/dispatcher/pool.js');
    expect(relative).toContain('lib/core/connect.js');
    expect(relative).not.toContain('index.js');
    expect(relative.filter((file) => /^lib\/(web|mock|cache|api)\//.test(file))).toEqual([]);
  });
});
