// The shipped systemd unit: systemd-analyze verify accepts it (no running systemd needed), and it keeps the sandboxing it promises.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/process.js';

const UNIT = join(REPO, 'examples', 'systemd', 'balancer.service');

function run(command: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const analyze = await run('systemd-analyze', ['--version']);
const haveAnalyze = analyze.code === 0;

/** Directive lines of the unit as [key, value], comments and blank lines left out. */
function directives(text: string): Array<[string, string]> {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('['))
    .map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)] as [string, string];
    });
}

describe('examples/systemd/balancer.service', () => {
  it('has the service settings and sandboxing a production unit needs', async () => {
    const unit = new Map(directives(await readFile(UNIT, 'utf8')));
    expect(unit.get('Type')).toBe('simple');
    expect(unit.get('Restart')).toBe('on-failure');
    expect(unit.get('NoNewPrivileges')).toBe('yes');
    expect(unit.get('ProtectSystem')).toBe('strict');
    expect(unit.get('ReadWritePaths')!.split(' ')).toEqual(expect.arrayContaining(['/etc/balancer', '/var/lib/balancer']));
    expect(unit.get('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(unit.get('ExecStart')).toMatch(/\/bin\/balancer\.js start -c \/etc\/balancer\/balancer\.yaml$/);
    expect(unit.get('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    // V8 compiles code at run time: this would kill balancer at start.
    expect(unit.has('MemoryDenyWriteExecute')).toBe(false);
  });

  it.skipIf(!haveAnalyze)('passes systemd-analyze verify without a warning', async () => {
    // verify checks that ExecStart's program exists: point it at this machine's node.
    const dir = await mkdtemp(join(tmpdir(), 'balancer-systemd-'));
    try {
      const copy = join(dir, 'balancer.service');
      await writeFile(copy, (await readFile(UNIT, 'utf8')).replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      const result = await run('systemd-analyze', ['verify', '--man=no', copy]);
      // verify exits 0 on unknown keys and bad values, only printing them: any output is a failure here.
      expect({ code: result.code, stderr: result.stderr.trim() }).toEqual({ code: 0, stderr: '' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
