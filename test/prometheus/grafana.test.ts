// The Grafana dashboard in examples/grafana/ against a real Prometheus scraping a real balancer with traffic: every
// panel's query, every template variable and the annotation return data (no typo, no metric that does not exist).

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { startBalancer, type RunningNode } from '../helpers/process.js';
import { freePort } from '../helpers/ports.js';
import { havePrometheus, PROMETHEUS, startPrometheus, type RunningPrometheus } from '../helpers/prometheus.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DASHBOARD = join(ROOT, 'examples/grafana/balancer.json');
const RULES = join(ROOT, 'examples/prometheus/rules.yml');
if (!havePrometheus) console.warn(`\n*** SKIPPING the Grafana dashboard test: ${PROMETHEUS} is missing (apt-get install -y prometheus) ***\n`);

interface Target {
  readonly expr: string;
  readonly refId: string;
}
interface Panel {
  readonly type: string;
  readonly title: string;
  readonly targets?: readonly Target[];
  readonly datasource?: { readonly uid: string };
}
interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating: { list: ReadonlyArray<{ name: string; type: string; query: string | { query: string } }> };
  readonly annotations: { list: ReadonlyArray<{ name: string; expr: string }> };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

/** What Grafana would substitute: every job, node and pool, and a rate window a 1 s scrape fills. */
function substitute(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '10s')
    .replaceAll('$job', 'balancer')
    .replaceAll('$instance', '.*')
    .replaceAll('$pool', '.*');
}

describe('the Grafana dashboard model', () => {
  it('takes its data source from a variable, and every panel has queries', () => {
    const datasource = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(datasource?.name).toBe('datasource');
    expect(datasource?.query).toBe('prometheus');
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(20);
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
    const titles = panels.map((p) => p.title).join(' | ');
    for (const topic of ['Requests/s', 'by route', '5xx ratio', 'percentiles', 'Backend state', 'ejections', 'Retries', 'Config version', 'Config reloads', 'Raft term', 'leader changes', 'commit lag']) {
      expect(titles, topic).toContain(topic);
    }
  });
});

describe.skipIf(!havePrometheus)('every Grafana panel query against a real Prometheus scraping a real balancer', () => {
  let dir: string;
  let node: RunningNode;
  let prometheus: RunningPrometheus | undefined;
  let proxy: string;
  let admin: string;
  const backends: TestBackend[] = [];
  let traffic = true;
  let trafficDone: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'balancer-grafana-'));
    for (const name of ['web-1', 'web-2', 'api-1']) backends.push(await startBackend(name));
    // api-1 fails one request in four: 5xx ratios and burn rates have something to show.
    let count = 0;
    backends[2]!.handle((req, res) => {
      if (req.url === '/healthz') return void res.writeHead(200).end();
      res.writeHead(++count % 4 === 0 ? 500 : 200).end('api');
    });
    const dead = await freePort();
    ({ node, proxy, admin } = await startBalancer(
      dir,
      [
        'listen: 127.0.0.1:0',
        'admin: { listen: 127.0.0.1:0, token: t }',
        'routes:',
        // Past 5 a second, /api is answered 429: the rate-limit panel has something to show.
        '  - { name: api, match: { pathPrefix: /api }, pool: api, rateLimit: { requestsPerSecond: 5, burst: 5 } }',
        '  - { pool: web }',
        'pools:',
        '  web:',
        '    strategy: peak-ewma',
        '    healthCheck: { path: /healthz, interval: 500ms, timeout: 400ms }',
        '    backends:',
        `      - { url: ${backends[0]!.url}, id: web-1 }`,
        `      - { url: ${backends[1]!.url}, id: web-2 }`,
        '  api:',
        // A dead backend: connect failures, retries, an ejection.
        '    retries: 1',
        '    backends:',
        `      - { url: ${backends[2]!.url}, id: api-1 }`,
        `      - { url: http://127.0.0.1:${dead}, id: api-dead }`,
        '',
      ],
    ));

    // Traffic for as long as the test runs (bounded: it stops in afterAll, and after 3,000 requests).
    trafficDone = (async () => {
      for (let i = 0; i < 3_000 && traffic; i++) {
        await request(`${proxy}${i % 3 === 0 ? '/api/x' : '/'}`).catch(() => undefined);
        await new Promise((ok) => setTimeout(ok, 20));
      }
    })();

    prometheus = await startPrometheus(dir, new URL(admin).host, [RULES]);
  });

  afterAll(async () => {
    traffic = false;
    await trafficDone;
    await prometheus?.stop();
    node?.child.kill('SIGKILL');
    for (const backend of backends) await backend.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const api = <T>(path: string): Promise<T> => prometheus!.api<T>(path);

  /** Each query with its result count, retried until all have data or the deadline passes; throws naming the empty ones. */
  async function untilAllHaveData(queries: ReadonlyArray<{ what: string; path: string }>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let empty: string[] = [];
    while (Date.now() < deadline) {
      prometheus!.assertRunning();
      empty = [];
      for (const query of queries) {
        try {
          const data = await api<{ result: unknown[] } | unknown[]>(query.path);
          const rows = Array.isArray(data) ? data : data.result;
          if (rows.length === 0) empty.push(query.what);
        } catch (error) {
          // A query Prometheus refuses (a typo) fails for good: report it at once.
          if (String(error).includes('bad_data') || String(error).includes('parse error')) throw error;
          empty.push(`${query.what} (${String(error)})`);
        }
      }
      if (empty.length === 0) return;
      await new Promise((ok) => setTimeout(ok, 1_000));
    }
    throw new Error(`no data within ${timeoutMs} ms for:\n${empty.join('\n')}\nprometheus log: ${prometheus!.log()}`);
  }

  it('returns data for every panel query, template variable and annotation', async () => {
    // A config change once Prometheus has seen the first version, so the config-change annotation has a change to show.
    await untilAllHaveData([{ what: 'the first scrape', path: `/api/v1/query?query=${encodeURIComponent('balancer_config_version')}` }], 30_000);
    const res = await fetch(`${admin}/api/v1/pools/web/backends/web-2`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer t', 'content-type': 'application/json' },
      body: JSON.stringify({ weight: 2 }),
    });
    expect(res.status).toBe(200);
    // The steady traffic reaches the api route's rate limit (5/s) only on a fast machine: at a load of 15 it sent
    // fewer than 5/s there and the rate-limited panel had no series. Bursts until the limiter refuses one make it.
    let refused = false;
    for (let burst = 0; burst < 10 && !refused; burst++) {
      const statuses = await Promise.all(Array.from({ length: 20 }, () => request(`${proxy}/api/x`).then((answer) => answer.status, () => 0)));
      refused = statuses.includes(429);
    }
    expect(refused, 'a request over the api route\'s rate limit').toBe(true);

    const queries: Array<{ what: string; path: string }> = [];
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) {
        queries.push({ what: `panel "${panel.title}" ${target.refId}: ${target.expr}`, path: `/api/v1/query?query=${encodeURIComponent(substitute(target.expr))}` });
      }
    }
    for (const variable of dashboard.templating.list) {
      if (variable.type !== 'query') continue;
      const text = typeof variable.query === 'string' ? variable.query : variable.query.query;
      const match = /^label_values\((.+), (\w+)\)$/.exec(text);
      expect(match, `variable ${variable.name}: ${text}`).not.toBeNull();
      queries.push({
        what: `variable ${variable.name}: ${text}`,
        path: `/api/v1/label/${match![2]}/values?${new URLSearchParams({ 'match[]': substitute(match![1]!) }).toString()}`,
      });
    }
    for (const annotation of dashboard.annotations.list) {
      queries.push({ what: `annotation ${annotation.name}: ${annotation.expr}`, path: `/api/v1/query?query=${encodeURIComponent(substitute(annotation.expr))}` });
    }
    expect(queries.length).toBeGreaterThan(25);
    await untilAllHaveData(queries, 60_000);
    // The config-change annotation says where the change came from: the PATCH above went through the admin API.
    const changes = dashboard.annotations.list.find((annotation) => annotation.name === 'Config changes')!;
    const annotated = await api<{ result: Array<{ metric: Record<string, string> }> }>(`/api/v1/query?query=${encodeURIComponent(substitute(changes.expr))}`);
    expect(annotated.result.map((row) => row.metric['source'])).toEqual(['api']);
    // Routes show by name, else by their position in the file.
    const byRoute = dashboard.panels.find((panel) => panel.title === 'Requests/s by route')!;
    const routes = await api<{ result: Array<{ metric: Record<string, string> }> }>(`/api/v1/query?query=${encodeURIComponent(substitute(byRoute.targets![0]!.expr))}`);
    expect(routes.result.map((row) => row.metric['route']).sort()).toEqual(['1', 'api']);
  });
});
