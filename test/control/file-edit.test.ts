// readFileEdit, the front half of a config-file edit both stores share: what it returns, logs and counts for an invalid file, a file with no routes or pools, and an edit.

import { describe, expect, it } from 'vitest';
import { readFileEdit, type FileEditContext } from '../../src/control/file-edit.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics, type Metrics } from '../../src/metrics/types.js';

const FILE = '/etc/balancer/balancer.yaml';

function context(): FileEditContext & { logger: ReturnType<typeof memoryLogger>; reloads: string[] } {
  const reloads: string[] = [];
  const metrics: Metrics = { ...noopMetrics, configReload: (result) => reloads.push(result) };
  return { file: FILE, logger: memoryLogger(), metrics, servingVersion: 7, instead: 'nothing was proposed', reloads };
}

const VALID = [
  'listen: 127.0.0.1:8080',
  'admin: { listen: 127.0.0.1:9090, token: t }',
  'routes:',
  '  - pool: web',
  'pools:',
  '  web:',
  '    backends:',
  '      - { url: http://127.0.0.1:9001, id: web-1 }',
  '',
].join('\n');

describe('readFileEdit', () => {
  it('hands back only the routes and pools of a valid file, and logs and counts nothing', () => {
    const ctx = context();
    const reading = readFileEdit(VALID, ctx);
    expect(reading.kind).toBe('edit');
    if (reading.kind !== 'edit') return;
    expect(Object.keys(reading.config).sort()).toEqual(['pools', 'routes']);
    expect(reading.config.pools['web']?.backends.map((backend) => backend.id)).toEqual(['web-1']);
    expect(reading.config.routes.map((route) => route.pool)).toEqual(['web']);
    expect(ctx.logger.lines).toEqual([]);
    expect(ctx.reloads).toEqual([]);
  });

  it('logs every problem of an invalid file as FILE:LINE:COL, then one summary, and counts one failed reload', () => {
    const ctx = context();
    const text = VALID.replace('id: web-1', 'id: web-1, weight: -2').replace('listen: 127.0.0.1:8080', 'listen: nowhere');
    const reading = readFileEdit(text, ctx);
    expect(reading.kind).toBe('invalid');
    if (reading.kind !== 'invalid') return;
    expect(reading.problems).toHaveLength(2);
    expect(ctx.logger.lines.map((line) => [line['level'], line['msg']])).toEqual([
      ['error', `${FILE}:1:9: listen: must be host:port, [ipv6]:port or :port, got string "nowhere"`],
      ['error', expect.stringMatching(new RegExp(`^${FILE}:8:\\d+: pools\\.web\\.backends\\[0\\]\\.weight: `))],
      ['error', 'config edit rejected: the file is invalid; nothing was proposed'],
    ]);
    expect(ctx.logger.lines[2]).toMatchObject({ file: FILE, problems: 2 });
    expect(ctx.reloads).toEqual(['failure']);
  });

  it('refuses a file whose routes and pools are fine when a local section is not (a restart must load it)', () => {
    const ctx = context();
    expect(readFileEdit(VALID.replace('listen: 127.0.0.1:8080', 'listen: nowhere'), ctx).kind).toBe('invalid');
    expect(ctx.reloads).toEqual(['failure']);
  });

  it.each([
    ['an empty file', ''],
    ['a file of comments', '# being rewritten\n'],
    ['a file cut before routes and pools', 'listen: 127.0.0.1:8080\nadmin: { listen: 127.0.0.1:9090, token: t }\n'],
  ])('ignores %s: one warning with the serving version and a hint, no reload counted', (_name, text) => {
    const ctx = context();
    expect(readFileEdit(text, ctx)).toEqual({ kind: 'ignored' });
    expect(ctx.logger.lines).toHaveLength(1);
    expect(ctx.logger.lines[0]).toMatchObject({
      level: 'warn',
      msg: 'config file ignored: it is empty or has neither routes nor pools, so it is no edit of them; nothing was proposed',
      file: FILE,
      servingVersion: 7,
      hint: expect.stringContaining('GET /api/v1/config'),
    });
    expect(ctx.reloads).toEqual([]);
  });
});
