import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminServer } from '../../src/admin/api.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { closeServer, createFakeControl, listenLocal } from '../admin/fake-control.js';
import { havePrometheus, PROMETHEUS, startPrometheus, type RunningPrometheus } from '../helpers/prometheus.js';

const PROMTOOL = '/usr/bin/promtool';
const EXAMPLES = resolve(import.meta.dirname, '../../examples/prometheus');
const havePromtool = existsSync(PROMTOOL);
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
  let prometheus: RunningPrometheus | undefined;
  let admin: Server;
  const metrics = busyMetrics();

  beforeAll(async () => {
    admin = createAdminServer({ control: createFakeControl(), metrics, token: 'unused', logger: silentLogger });
    const target = new URL(await listenLocal(admin)).host;
    dir = await mkdtemp(join(tmpdir(), 'balancer-prometheus-'));
    prometheus = await startPrometheus(dir, target, [join(EXAMPLES, 'alerts.yml')]);
  });

  afterAll(async () => {
    await prometheus?.stop();
    await closeServer(admin);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<QueryAnswer['data']['result']> {
    return (await prometheus!.api<QueryAnswer['data']>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result;
  }

  it('scrapes balancer_config_version and the request counters, and loads the example alerts', async () => {
    const version = await prometheus!.until('balancer_config_version', async () => {
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
    const alert = await prometheus!.until('BalancerPoolNoHealthyBackend', async () => {
      const data = await prometheus!.api<{ alerts: { labels: Record<string, string>; state: string }[] }>('/api/v1/alerts');
      return data.alerts.find((a) => a.labels['alertname'] === 'BalancerPoolNoHealthyBackend');
    });
    expect(alert.labels['pool']).toBe('api');
    expect(['pending', 'firing']).toContain(alert.state);
  });
});
