import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminServer } from '../../src/admin/api.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { closeServer, createFakeControl, listenLocal } from '../admin/fake-control.js';
import { freePort } from '../helpers/ports.js';

const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const EXAMPLES = resolve(import.meta.dirname, '../../examples/prometheus');
const havePromtool = existsSync(PROMTOOL);
const havePrometheus = existsSync(PROMETHEUS);
if (!havePromtool || !havePrometheus) {
  console.warn(
    `\n*** SKIPPING Prometheus tests: ${havePromtool ? '' : PROMTOOL + ' '}${havePrometheus ? '' : PROMETHEUS + ' '}missing ` +
      '(apt-get install -y prometheus) ***\n',
  );
}

/** A metrics registry with traffic of every kind recorded, as a running gateway would have. */
function busyMetrics(): ReturnType<typeof createMetrics> {
  const metrics = createMetrics();
  const web1 = metrics.backend('web', 'web-1');
  const web2 = metrics.backend('web', '127.0.0.1:9002');
  for (let i = 0; i < 50; i++) {
    web1.requestStarted();
    web1.requestFinished(i % 10 === 0 ? '5xx' : '2xx', i / 1000);
  }
  web2.requestStarted();
  web1.setUp(true);
  web2.setUp(false);
  web2.upstreamError('connect_refused');
  web2.healthCheck('fail');
  web1.healthCheck('pass');
  web2.ejected();
  metrics.pool('web').retry();
  metrics.pool('web').requestWithoutBackend('5xx');
  metrics.setConfigVersion(17);
  metrics.configReload('success');
  metrics.raft.setTerm(2);
  metrics.raft.setCommitIndex(10);
  metrics.raft.setAppliedIndex(10);
  metrics.raft.setIsLeader(true);
  metrics.raft.leaderChanged();
  metrics.raft.proposal('committed');
  metrics.raft.setPeerReachable('n2', true);
  metrics.raft.peerMessageRejected('bad_mac');
  return metrics;
}

describe.skipIf(!havePromtool)('promtool', () => {
  it('the example alert rules pass their unit tests', () => {
    const result = spawnSync(PROMTOOL, ['test', 'rules', join(EXAMPLES, 'alerts.test.yml')], { encoding: 'utf8', timeout: 20_000 });
    expect(result.stdout + result.stderr).toContain('SUCCESS');
    expect(result.status).toBe(0);
  });

  it('the recording rules and SLO burn-rate alerts pass their unit tests', () => {
    const result = spawnSync(PROMTOOL, ['test', 'rules', join(EXAMPLES, 'rules.test.yml')], { encoding: 'utf8', timeout: 20_000 });
    expect(result.stdout + result.stderr).toContain('SUCCESS');
    expect(result.status).toBe(0);
  });

  it('the example scrape config and its rule files are valid', () => {
    const result = spawnSync(PROMTOOL, ['check', 'config', join(EXAMPLES, 'prometheus.yml')], { encoding: 'utf8', timeout: 20_000 });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('check metrics finds no problems in /metrics of a busy registry', async () => {
    const text = await busyMetrics().render();
    expect(text).toContain('balancer_requests_total{pool="web",backend="web-1",code="5xx"} 5');
    const result = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

interface QueryAnswer {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe.skipIf(!havePrometheus)('a real Prometheus scraping the admin listener', () => {
  let dir: string;
  let prometheus: ChildProcess | undefined;
  let promUrl: string;
  let admin: Server;
  const metrics = busyMetrics();
  const logs: string[] = [];

  beforeAll(async () => {
    admin = createAdminServer({ control: createFakeControl(), metrics, token: 'unused', logger: silentLogger });
    const target = new URL(await listenLocal(admin)).host;
    dir = await mkdtemp(join(tmpdir(), 'balancer-prometheus-'));
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(join(EXAMPLES, 'alerts.yml'))}`,
        'scrape_configs:',
        '  - job_name: balancer',
        '    static_configs:',
        `      - targets: [${JSON.stringify(target)}]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
    prometheus.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
  });

  afterAll(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = new Promise((ok) => prometheus!.once('exit', ok));
      prometheus.kill('SIGTERM');
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 5_000).unref())]);
      if (prometheus.exitCode === null) prometheus.kill('SIGKILL');
    }
    await closeServer(admin);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Polls until `accept` returns a value; Prometheus needs a few seconds to start and scrape. */
  async function eventually<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited (${prometheus?.exitCode}): ${logs.join('')}`);
      try {
        const value = await attempt();
        if (value !== undefined) return value;
      } catch (error) {
        lastError = error;
      }
      await new Promise((ok) => setTimeout(ok, 250));
    }
    throw new Error(`timed out waiting for ${what}; last error: ${String(lastError)}; prometheus log: ${logs.join('')}`);
  }

  async function query(expr: string): Promise<QueryAnswer['data']['result']> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(2_000) });
    const body = (await res.json()) as QueryAnswer;
    if (body.status !== 'success') throw new Error(JSON.stringify(body));
    return body.data.result;
  }

  it('scrapes balancer_config_version and the request counters, and loads the example alerts', async () => {
    const version = await eventually('balancer_config_version', async () => {
      const result = await query('balancer_config_version{job="balancer"}');
      return result[0]?.value[1];
    });
    expect(version).toBe('17');

    const requests = await query('sum by (pool, code) (balancer_requests_total{job="balancer"})');
    const byCode = Object.fromEntries(requests.map((r) => [`${r.metric['pool']}/${r.metric['code']}`, r.value[1]]));
    expect(byCode['web/2xx']).toBe('45');
    expect(byCode['web/5xx']).toBe('6');

    // A pool left with no healthy backend shows up as a pending (then firing) alert from the shipped rules.
    metrics.backend('api', 'api-1').setUp(false);
    const alert = await eventually('BalancerPoolNoHealthyBackend', async () => {
      const res = await fetch(`${promUrl}/api/v1/alerts`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
      return body.data.alerts.find((a) => a.labels['alertname'] === 'BalancerPoolNoHealthyBackend');
    });
    expect(alert.labels['pool']).toBe('api');
    expect(['pending', 'firing']).toContain(alert.state);
  });
});
