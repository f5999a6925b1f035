// `balancer top` against a running node: a real terminal (tmux) showing rates and a backend going down, q to quit;
// plain lines when stdout is a pipe.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { BIN, runCli, startBalancer, type RunningNode } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const haveTmux = spawnSync('sh', ['-c', 'command -v tmux']).status === 0;
if (!haveTmux) console.warn('\n*** SKIPPING the balancer top terminal test: tmux is missing (apt-get install -y tmux) ***\n');

let dir: string;
let node: RunningNode;
let proxy: string;
let admin: string;
const backends: TestBackend[] = [];
let web2Healthy = true;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-top-'));
  backends.push(await startBackend('web-1'), await startBackend('web-2'));
  backends[1]!.handle((req, res) => {
    if (req.url === '/healthz') return void res.writeHead(web2Healthy ? 200 : 503).end();
    res.writeHead(200, { 'x-backend': 'web-2' }).end('web-2');
  });
  ({ node, proxy, admin } = await startBalancer(
    dir,
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0, token: t }',
      'pools:',
      '  web:',
      '    healthCheck: { path: /healthz, interval: 500ms, timeout: 450ms, rise: 1, fall: 1 }',
      '    backends:',
      `      - { url: ${backends[0]!.url}, id: web-1 }`,
      `      - { url: ${backends[1]!.url}, id: web-2 }`,
      '',
    ],
  ));
});

afterAll(async () => {
  node?.child.kill('SIGKILL');
  for (const backend of backends) await backend.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!haveTmux)('balancer top in a terminal (tmux)', () => {
  const session = `balancer-top-${process.pid}`;
  const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });
  const screen = (): string => tmux('capture-pane', '-p', '-t', session);
  const alive = (): boolean => spawnSync('tmux', ['has-session', '-t', session]).status === 0;

  afterAll(() => {
    if (alive()) tmux('kill-session', '-t', session);
  });

  it('shows pools and backends with live rates, follows a backend going down, and quits on q', async () => {
    const command = [process.execPath, BIN, 'top', '--admin', admin, '--token', 't'].map((part) => `'${part}'`).join(' ');
    tmux('new-session', '-d', '-s', session, '-x', '150', '-y', '30', `${command}; sleep 30`);
    // Traffic while the screen is watched (bounded: 400 requests at most).
    let sent = 0;
    const web1Row = (): string | undefined => screen().split('\n').find((line) => /^\s+web-1\s/.test(line));
    await eventually(async () => {
      for (let i = 0; i < 10 && sent < 400; i++, sent++) await request(`${proxy}/`);
      const row = web1Row();
      // Columns: BACKEND STATE REQ/S 5XX P50 P99 INFLIGHT EWMA; a measured rate and latency percentiles.
      return row !== undefined && /web-1\s+up\s+\d+(\.\d)?\s+0\.0%\s+\S+ms\s+\S+ms\s+\d+\s+\S+ms/.test(row) && !/up\s+0\.0\s/.test(row);
    }, 'a request rate for web-1 on the screen', 15_000, 100);
    const first = screen();
    expect(first).toContain('balancer top');
    expect(first).toMatch(/POOL\s+BACKEND\s+STATE\s+REQ\/S\s+5XX\s+P50\s+P99\s+INFLIGHT\s+EWMA/);
    // Both pass their checks (a check that timed out on a loaded machine comes back at the next one).
    await eventually(() => /^web\s+round-robin\s+2\/2 up/m.test(screen()), 'both backends up', 10_000, 100);

    web2Healthy = false;
    await eventually(() => /^\s+web-2\s+down\s/m.test(screen()), 'web-2 shown down', 10_000, 100);
    expect(screen()).toMatch(/^web\s+round-robin\s+1\/2 up/m);

    const panePid = Number(tmux('display-message', '-p', '-t', session, '#{pane_pid}').trim());
    const topRunning = (): boolean => spawnSync('pgrep', ['-P', String(panePid), '-f', 'balancer.js top']).stdout.toString().trim() !== '';
    expect(topRunning()).toBe(true);
    tmux('send-keys', '-t', session, 'q');
    await eventually(() => !topRunning(), 'top to quit on q', 10_000, 100);
    web2Healthy = true;
  });
});

describe('balancer top without a terminal', () => {
  it('prints plain lines, one per backend per refresh, and stops after --count', async () => {
    for (let i = 0; i < 5; i++) await request(`${proxy}/`);
    const result = await runCli(['top', '--admin', admin, '--token', 't', '--count', '2', '--interval', '250ms']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain('\u001b[');
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z pool=web backend=web-[12] state=(up|down) rps=\S+ 5xx=\S+ p50=\S+ p99=\S+ inflight=\d+ ewma=\S+$/);
    }
    // The first refresh has no interval to measure over; the second has one.
    expect(lines[0]).toContain('rps=-');
    expect(lines[2]).toMatch(/rps=\d/);
  });

  it('exits 3 when nothing answers at --admin, and 2 on a bad --interval', async () => {
    const unreachable = await runCli(['top', '--admin', '127.0.0.1:1', '--token', 't', '--count', '1']);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toContain('cannot reach admin API');
    const bad = await runCli(['top', '--admin', admin, '--interval', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--interval must be a duration');
  });
});
