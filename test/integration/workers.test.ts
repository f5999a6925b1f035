// Worker mode with real processes: the primary keeps health and metrics, workers serve, a dead worker is replaced.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCli, type RunningNode } from '../helpers/process.js';
import { startBackend, request, eventually, type TestBackend } from '../helpers/backend.js';

let dir: string;
let node: RunningNode;
let proxy: string;
let admin: string;
let good: TestBackend;
let sick: TestBackend;
let sickHealthy = true;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-workers-'));
  good = await startBackend('good');
  sick = await startBackend('sick');
  sick.handle((req, res) => {
    if (req.url === '/healthz') res.writeHead(sickHealthy ? 200 : 500).end();
    else res.writeHead(500, { 'x-backend': 'sick' }).end('boom');
  });
  const file = join(dir, 'balancer.yaml');
  await writeFile(
    file,
    [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0, token: t }',
      'workers: 2',
      // Far beyond the test's timeout: a shutdown that waited for the drain deadline fails the test by itself.
      'shutdown: { drainTimeout: 60s }',
      'routes:',
      '  - { match: { pathPrefix: /outlier }, pool: outlier }',
      '  - { match: { pathPrefix: / }, pool: web }',
      'pools:',
      // Passive detection only: an active check passing would end the ejection early (Envoy's rule).
      '  outlier:',
      '    retries: 0',
      '    outlierDetection: { consecutive5xx: 3, baseEjectionTime: 1m, maxEjectionPercent: 50 }',
      '    backends:',
      `      - { url: ${good.url}, id: good }`,
      `      - { url: ${sick.url}, id: sick }`,
      '  web:',
      '    retries: 0',
      '    outlierDetection: { enabled: false }',
      // Generous timeout and fall: 2, so the good backend never fails its checks on a loaded machine (both down
      // would put the pool in panic mode and send traffic to the sick one).
      '    healthCheck: { path: /healthz, interval: 500ms, timeout: 450ms, rise: 1, fall: 2, jitter: 0 }',
      '    backends:',
      `      - { url: ${good.url}, id: good }`,
      `      - { url: ${sick.url}, id: sick }`,
      '',
    ].join('\n'),
  );
  node = startCli(['start', '-c', file]);
  const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'start', 30_000);
  proxy = `http://${String(started['proxy'])}`;
  admin = `http://${String(started['admin'])}`;
});

afterAll(async () => {
  node?.child.kill('SIGKILL');
  await good.close();
  await sick.close();
  await rm(dir, { recursive: true, force: true });
});

interface Status {
  pools: Array<{ name: string; backends: Array<{ id: string; state: string }> }>;
}

async function stateOf(pool: string, id: string): Promise<string> {
  const res = await fetch(`${admin}/api/v1/status`, { headers: { authorization: 'Bearer t' } });
  const status = (await res.json()) as Status;
  return status.pools.find((p) => p.name === pool)!.backends.find((b) => b.id === id)!.state;
}

describe('workers: auto|N', () => {
  it('serves through worker processes and sums their requests in /metrics', async () => {
    const before = good.seen.length;
    for (let i = 0; i < 20; i++) await request(`${proxy}/`);
    expect(good.seen.length).toBeGreaterThan(before);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    const total = [...metrics.matchAll(/^balancer_requests_total\{pool="web",backend="(good|sick)",code="(2xx|5xx)"\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[3]), 0);
    expect(total).toBe(20);
  });

  it('passive failures seen by workers eject the backend in the primary, and workers stop using it', async () => {
    for (let i = 0; i < 40 && (await stateOf('outlier', 'sick')) !== 'ejected'; i++) await request(`${proxy}/outlier`);
    expect(await stateOf('outlier', 'sick')).toBe('ejected');
    // The ejection reaches every worker: from now on only the good backend answers.
    await eventually(async () => {
      const answers = await Promise.all(Array.from({ length: 10 }, () => request(`${proxy}/outlier`)));
      return answers.every((a) => a.status === 200);
    }, 'workers to stop sending to the ejected backend', 5_000, 50);
  });

  it('health from the primary reaches the workers', async () => {
    sickHealthy = false;
    await eventually(async () => (await stateOf('web', 'sick')) === 'down', 'sick to be down by checks', 10_000, 50);
    const answers = await Promise.all(Array.from({ length: 10 }, () => request(`${proxy}/`)));
    expect(answers.every((a) => a.headers['x-backend'] === 'good')).toBe(true);
  });

  it('replaces a worker that dies, and keeps serving', async () => {
    const { execFileSync } = await import('node:child_process');
    const workers = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
    expect(workers.length).toBe(2);
    process.kill(workers[0]!, 'SIGKILL');
    await node.waitFor((line) => line['msg'] === 'data-plane worker died; restarting it', 'worker restart', 10_000);
    await eventually(() => {
      const now = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
      return now.length === 2 && !now.includes(workers[0]!);
    }, 'a replacement worker', 10_000, 50);
    for (let i = 0; i < 10; i++) expect((await request(`${proxy}/`)).status).toBe(200);
  });

  it('drains the workers and exits 0 on SIGTERM, even with a worker still starting', async () => {
    const { execFileSync } = await import('node:child_process');
    const workers = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
    process.kill(workers[0]!, 'SIGKILL');
    await eventually(() => node.lines.filter((line) => line['msg'] === 'data-plane worker died; restarting it').length === 2, 'second worker restart', 10_000, 20);
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    // It exited well before the 60 s drain deadline (within this test's timeout): the starting worker was stopped,
    // not waited for.
    expect(node.lines.some((line) => line['msg'] === 'stopped')).toBe(true);
  });
});
