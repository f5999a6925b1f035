// Worker mode with real processes: the primary keeps health and metrics, workers serve, a dead worker is replaced.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBalancer, type RunningNode } from '../helpers/process.js';
import { startBackend, request, type TestBackend } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';

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
  ({ node, proxy, admin } = await startBalancer(
    dir,
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
    ],
  ));
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

/** Every sample of a scrape by series (`name{labels}`), and the type of each family. */
async function scrape(): Promise<{ samples: Map<string, number>; types: Map<string, string> }> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { samples, types };
}

/** The family a sample belongs to: histogram samples end in _bucket, _sum or _count. */
function familyOf(series: string, types: Map<string, string>): string {
  const name = series.replace(/\{.*$/, '');
  if (types.has(name)) return name;
  return name.replace(/_(bucket|sum|count)$/, '');
}

/** Counter and histogram series of `before` that are lower (or gone) in `after`. */
function wentDown(before: Awaited<ReturnType<typeof scrape>>, after: Awaited<ReturnType<typeof scrape>>): string[] {
  const lower: string[] = [];
  for (const [series, value] of before.samples) {
    const type = before.types.get(familyOf(series, before.types));
    if (type !== 'counter' && type !== 'histogram') continue;
    const now = after.samples.get(series);
    if (now === undefined || now < value) lower.push(`${series}: ${value} -> ${String(now)}`);
  }
  return lower;
}

function requestsOf(result: Awaited<ReturnType<typeof scrape>>, pool: string): number {
  let total = 0;
  for (const [series, value] of result.samples) if (series.startsWith(`balancer_requests_total{pool="${pool}",`)) total += value;
  return total;
}

describe('workers: auto|N', () => {
  it('serves through worker processes and sums their requests in /metrics', async () => {
    const before = good.seen.length;
    for (let i = 0; i < 20; i++) await request(`${proxy}/`);
    expect(good.seen.length).toBeGreaterThan(before);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    const total = [...metrics.matchAll(/^balancer_requests_total\{pool="web",backend="(good|sick)",(?:route="[^"]*",)?code="(2xx|5xx)"\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[3]), 0);
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

  it('replaces a worker that dies, and keeps serving; summed counters never go down', async () => {
    const { execFileSync } = await import('node:child_process');
    const workers = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
    expect(workers.length).toBe(2);
    // Enough requests over new connections that both workers have served some.
    for (let i = 0; i < 40; i++) expect((await request(`${proxy}/`)).status).toBe(200);
    const before = await scrape();
    process.kill(workers[0]!, 'SIGKILL');
    await node.waitFor((line) => line['msg'] === 'data-plane worker died; restarting it', 'worker restart', 10_000);
    // Scraped while the dead worker is not yet replaced: its counts are still in.
    const whileDown = await scrape();
    expect(wentDown(before, whileDown)).toEqual([]);
    await eventually(() => {
      const now = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
      return now.length === 2 && !now.includes(workers[0]!);
    }, 'a replacement worker', 10_000, 50);
    for (let i = 0; i < 10; i++) expect((await request(`${proxy}/`)).status).toBe(200);
    const after = await scrape();
    expect(wentDown(whileDown, after)).toEqual([]);
    // Exact: nothing was served between the first scrape (which fetched every worker's counts) and the kill.
    expect(requestsOf(after, 'web')).toBe(requestsOf(before, 'web') + 10);
  });

  it('does not sum per-process gauges: the fd limit is one process\'s, state gauges are the primary\'s', async () => {
    const { samples } = await scrape();
    const limits = await readFile(`/proc/${String(node.child.pid)}/limits`, 'utf8');
    const maxOpenFiles = Number(/^Max open files\s+(\d+)/m.exec(limits)![1]);
    expect(samples.get('process_max_fds')).toBe(maxOpenFiles);
    expect(samples.get('balancer_config_version')).toBe(1);
    expect(samples.get('balancer_backend_up{pool="web",backend="good"}')).toBe(1);
    expect(samples.get('balancer_backend_draining{pool="web",backend="good"}')).toBe(0);
    expect(samples.get('nodejs_version_info{version="' + process.version + '",major="' + process.versions.node.split('.')[0] + '",minor="' + process.versions.node.split('.')[1] + '",patch="' + process.versions.node.split('.')[2] + '"}')).toBe(1);
    // Memory and open fds are the whole service's: more than the primary alone uses.
    const primaryRss = Number(/^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${String(node.child.pid)}/status`, 'utf8'))![1]) * 1024;
    expect(samples.get('process_resident_memory_bytes')!).toBeGreaterThan(primaryRss);
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
