import { execFileSync } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as Undici from 'undici';
import { Pool, addWellKnownHeaderNames, buildConnector, undiciPart } from '../../src/proxy/undici-parts.js';
import '../../src/proxy/upstream.js';
import { prepareRequestHeaders } from '../../src/proxy/headers.js';
import { assignRequestId } from '../../src/proxy/request-id.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

describe('undici parts', () => {
  it('are the very classes undici exports', () => {
    expect(Pool).toBe(Undici.Pool);
    expect(buildConnector).toBe(Undici.buildConnector);
  });

  it('a later undici that moved or changed those files costs the index, not the start', () => {
    const index = { Pool: Undici.Pool, buildConnector: Undici.buildConnector };
    const moved = (id: string): unknown => {
      if (id === 'undici') return index;
      throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
    };
    expect(undiciPart(moved, 'undici/lib/dispatcher/pool.js', 'Pool')).toBe(Undici.Pool);
    // A file that is there but holds something else now.
    const changed = (id: string): unknown => (id === 'undici' ? index : { somethingElse: true });
    expect(undiciPart(changed, 'undici/lib/core/connect.js', 'buildConnector')).toBe(Undici.buildConnector);
    // Any other failure to load is not hidden.
    const broken = (): unknown => {
      throw new SyntaxError('Unexpected token');
    };
    expect(() => undiciPart(broken, 'undici/lib/dispatcher/pool.js', 'Pool')).toThrow(SyntaxError);
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

  it('every field the proxy adds to a forwarded request is one of undici\'s well-known names, mapped to itself', () => {
    const headers: Record<string, string | string[] | undefined> = { host: 'app.example' };
    prepareRequestHeaders(headers, { remoteAddress: '192.0.2.7', encrypted: false, trusted: false }, false, ['Host', 'app.example']);
    assignRequestId({ headers } as unknown as IncomingMessage, false);
    const added = Object.keys(headers).filter((name) => name !== 'host');
    expect(added.sort()).toEqual(['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id']);
    // The very table undici's Request consults (the Pool's own module instance).
    const { headerNameLowerCasedRecord } = createRequire(join(REPO, 'src/proxy/undici-parts.ts'))('undici/lib/core/constants.js') as {
      headerNameLowerCasedRecord: Record<string, string>;
    };
    for (const name of added) expect(headerNameLowerCasedRecord[name]).toBe(name);
  });

  it('adding well-known names: only lower-case tokens, nothing overwritten, nothing done without the table', () => {
    const record: Record<string, string> = Object.assign(Object.create(null) as object, { 'content-type': 'content-type', Accept: 'accept', accept: 'accept' });
    const load = (): unknown => ({ headerNameLowerCasedRecord: record });
    expect(addWellKnownHeaderNames(load, ['accept', 'x-trace-hop'])).toEqual(['x-trace-hop']);
    expect(record['x-trace-hop']).toBe('x-trace-hop');
    expect(() => addWellKnownHeaderNames(load, ['X-Upper'])).toThrow(/lower-case header name/);
    expect(() => addWellKnownHeaderNames(load, ['bad name'])).toThrow(/lower-case header name/);
    const missing = (id: string): unknown => {
      throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
    };
    expect(addWellKnownHeaderNames(missing, ['x-trace-hop'])).toEqual([]);
    expect(addWellKnownHeaderNames(() => ({ headerNameLowerCasedRecord: { other: 1 } }), ['x-trace-hop'])).toEqual([]);
  });
});
