import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminServer } from '../../src/admin/api.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics, type PrometheusMetrics } from '../../src/metrics/metrics.js';
import { closeServer, createFakeControl, listenLocal, type FakeControl } from '../admin/fake-control.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dashboard-token';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`\n*** SKIPPING dashboard browser tests: ${CHROMIUM} is missing (apt-get install -y chromium) ***\n`);

describe.skipIf(!haveChromium)('dashboard in headless Chromium', () => {
  let browser: Browser;
  let server: Server;
  let base: string;
  let control: FakeControl;
  let metrics: PrometheusMetrics;

  beforeAll(async () => {
    control = createFakeControl();
    metrics = createMetrics({ collectDefault: false });
    server = createAdminServer({ control, metrics, token: TOKEN, logger: silentLogger });
    base = await listenLocal(server);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    if (server.listening) await closeServer(server);
  });

  async function openWithToken(token: string): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().includes('Failed to load resource')) problems.push(`console: ${m.text()}`);
    });
    await page.goto(base + '/?refresh=300');
    await page.getByRole('textbox', { name: 'Token' }).fill(token);
    await page.getByRole('button', { name: 'Connect' }).click();
    return { page, problems };
  }

  it('asks for the token, renders pools, backends and the cluster, then shows a backend going down', async () => {
    const { page, problems } = await openWithToken(TOKEN);
    try {
      const row = (id: string): string => `tr[data-backend="${id}"]`;
      await page.waitForSelector(`${row('web-2')} [data-state="up"]`, { timeout: 5_000 });
      expect(await page.locator('tr[data-backend]').count()).toBe(3);
      expect(await page.locator(`${row('web-1')} td.url`).textContent()).toBe('http://127.0.0.1:9001');
      expect(await page.locator('#h-leader').textContent()).toBe('n1');
      expect(await page.locator('#h-term').textContent()).toBe('5');
      expect(await page.locator('#cluster-meta').textContent()).toContain('commit 42');
      expect(await page.locator('tr[data-member="n3"] td').last().textContent()).toBe('no');
      expect(await page.locator('table th[scope="col"]').count()).toBeGreaterThan(10);
      // The latency estimate: the initial value, muted, until the backend is measured.
      expect(await page.locator(`${row('web-1')} td[data-ewma="initial"]`).textContent()).toBe('10 ms');
      control.setBackend('web', 'web-1', { latencyEwmaMs: 42.4, latencyMeasured: true });
      await page.waitForSelector(`${row('web-1')} td[data-ewma="measured"]`, { timeout: 6_000 });
      expect(await page.locator(`${row('web-1')} td[data-ewma="measured"]`).textContent()).toBe('42 ms');

      control.setBackend('web', 'web-2', { state: 'down', reason: 'health check failed 3 times: connection refused' });
      await page.waitForSelector(`${row('web-2')} [data-state="down"]`, { timeout: 6_000 });
      expect(await page.locator(`${row('web-2')} .state`).textContent()).toBe('down');
      expect(await page.locator('#announcer').textContent()).toContain('web-2 in pool web is now down');
      expect(await page.locator('#sum-up').textContent()).toBe('2 / 3');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('shows what a hashing pool hashes on, its sticky cookie, its backups and when they serve', async () => {
    const before = control.pools;
    const status = (id: string, backup: boolean) => ({ id, url: `http://127.0.0.1:${id === 'cart-3' ? 9203 : 9201}`, weight: 1, effectiveWeight: 1, backup, state: 'up' as const, inflight: 0, latencyEwmaMs: 10, latencyMeasured: false, consecutiveFailures: 0, ejections: 0, reason: '' });
    control.pools = [
      ...before,
      { name: 'cart', strategy: 'maglev', hashOn: { header: 'x-user' }, stickyCookie: 'SRV', panic: false, backupsServing: false, backends: [status('cart-1', false), status('cart-3', true)] },
    ];
    const { page, problems } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('tr[data-backend="cart-3"]', { timeout: 5_000 });
      expect(await page.locator('#pool-cart small').textContent()).toBe('maglev on header x-user, sticky cookie SRV');
      expect(await page.locator('tr[data-backend="cart-3"] [data-backup="true"]').textContent()).toBe('backup');
      expect(await page.locator('tr[data-backend="cart-1"] [data-backup]').count()).toBe(0);
      expect(await page.locator('#pool-cart [data-backups-serving]').count()).toBe(0);
      control.pools = control.pools.map((p) => (p.name === 'cart' ? { ...p, backupsServing: true } : p));
      await page.waitForSelector('#pool-cart [data-backups-serving]', { timeout: 6_000 });
      expect(await page.locator('#pool-cart [data-backups-serving]').textContent()).toBe('backups serving');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
      control.pools = before;
    }
  });

  it('shows the recent config changes, and fetches them again when the version moves', async () => {
    const { page, problems } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('#history tr[data-version="3"]', { timeout: 5_000 });
      const cells = async (version: number) => page.locator(`#history tr[data-version="${version}"] > *`).allTextContents();
      expect(await cells(3)).toEqual(['v3 (current)', expect.any(String), 'cli on n2', 'add backend web/web-2', 'req-3']);
      expect((await cells(2)).slice(2)).toEqual(['file /etc/balancer/balancer.yaml on n1', 'set config', 'req-2']);
      control.historyEntries = [
        { ...control.historyEntries[1]!, version: 4, requestId: 'req-4', change: 'set config', source: { kind: 'rollback', node: 'n3', via: 'cli', rollbackOf: 2 } },
        ...control.historyEntries,
      ];
      control.version = 4;
      await page.waitForSelector('#history tr[data-version="4"]', { timeout: 6_000 });
      expect((await cells(4)).slice(0, 3)).toEqual(['v4 (current)', expect.any(String), 'rollback to v2 on n3']);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('computes requests/s, error ratio and latency percentiles from /metrics deltas', async () => {
    const { page } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('tr[data-backend="web-1"]', { timeout: 5_000 });
      const b = metrics.backend('web', 'web-1');
      // Record traffic across several polls so at least one interval sees it.
      const feed = setInterval(() => {
        for (let i = 0; i < 20; i++) b.requestFinished(i === 0 ? '5xx' : '2xx', 0.02);
      }, 200);
      try {
        // The page's CSP forbids eval, so poll the cells from outside rather than with waitForFunction.
        await expect
          .poll(async () => {
            const cells = await page.locator('tr[data-backend="web-1"] td').allTextContents();
            return cells[5] !== '\u2013' && cells[7]?.endsWith('ms') === true;
          }, { timeout: 8_000, interval: 100 })
          .toBe(true);
      } finally {
        clearInterval(feed);
      }
      const cells = await page.locator('tr[data-backend="web-1"] td').allTextContents();
      expect(Number(cells[5])).toBeGreaterThan(0);
      expect(cells[6]).toMatch(/^[0-9.]+%$/);
      expect(Number(cells[6]!.replace('%', ''))).toBeGreaterThan(0);
      // Every observation is 20 ms, inside the (10 ms, 25 ms] bucket.
      const p50 = Number(cells[7]!.replace(' ms', ''));
      expect(p50).toBeGreaterThan(10);
      expect(p50).toBeLessThanOrEqual(25);
    } finally {
      await page.close();
    }
  });

  it('charts requests/s, 5xx ratio and p50/p99 per pool, backend states as strips and config changes as markers', async () => {
    const { page, problems } = await openWithToken(TOKEN);
    const b = metrics.backend('web', 'web-1');
    const feed = setInterval(() => {
      for (let i = 0; i < 20; i++) b.requestFinished(i < 2 ? '5xx' : '2xx', 0.004);
    }, 100);
    try {
      const charts = '[data-charts="web"]';
      await page.waitForSelector(`${charts} svg[data-chart="rps"]`, { timeout: 8_000 });
      expect(await page.locator(`${charts} svg.chart`).count()).toBe(3);
      // The node samples once a second: a line needs two samples with traffic between them.
      const points = async (chart: string, series: string): Promise<number> =>
        ((await page.locator(`${charts} svg[data-chart="${chart}"] path[data-series="${series}"]`).getAttribute('d')) ?? '').split('L').length;
      await expect.poll(() => points('rps', 'requests/s'), { timeout: 10_000, interval: 200 }).toBeGreaterThan(2);
      await expect.poll(() => points('errors', '5xx ratio'), { timeout: 10_000, interval: 200 }).toBeGreaterThan(2);
      await expect.poll(() => points('latency', 'p99'), { timeout: 10_000, interval: 200 }).toBeGreaterThan(2);
      // 10% of the fed requests are 5xx: the chart's top label is a percentage.
      expect(await page.locator(`${charts} svg[data-chart="errors"] text`).allTextContents()).toContain('0.0%');

      control.setBackend('web', 'web-2', { state: 'down', reason: 'health check failed' });
      await page.waitForSelector(`${charts} rect[data-backend="web-2"][data-state="down"]`, { timeout: 8_000 });
      expect(await page.locator(`${charts} rect[data-backend="web-2"][data-state="up"]`).count()).toBeGreaterThan(0);

      // A config change made through the admin API: its marker says so, on the line and in its label.
      control.version += 1;
      control.historyEntries = [
        { ...control.historyEntries[0]!, version: control.version, change: 'update backend web/web-1: weight 3', source: { kind: 'api', node: 'n2' } },
        ...control.historyEntries,
      ];
      const marker = `${charts} svg[data-chart="rps"] line.marker[data-version="${control.version}"]`;
      await page.waitForSelector(marker, { timeout: 8_000, state: 'attached' });
      expect(await page.locator(marker).getAttribute('data-source')).toBe('api');
      expect(await page.locator(`${marker} title`).textContent()).toMatch(new RegExp(`^config v${control.version} at .+: api on n2 \\(update backend web/web-1: weight 3\\)$`));
      expect(await page.locator(`${charts} svg[data-chart="rps"] text.marker-label[data-version="${control.version}"]`).textContent()).toBe(`v${control.version} API`);

      // Two changes within one second: two markers on the same spot, their labels one above the other.
      const [cliVersion, fileVersion] = [control.version + 1, control.version + 2];
      control.historyEntries = [
        { ...control.historyEntries[0]!, version: fileVersion, change: 'file edit', source: { kind: 'file', node: 'n1', file: '/etc/balancer/balancer.yaml' } },
        { ...control.historyEntries[0]!, version: cliVersion, change: 'update backend web/web-2: drain', source: { kind: 'cli', node: 'n1' } },
        ...control.historyEntries,
      ];
      control.version = fileVersion;
      const label = (version: number) => page.locator(`${charts} svg[data-chart="rps"] text.marker-label[data-version="${version}"]`);
      await page.waitForSelector(`${charts} svg[data-chart="rps"] text.marker-label[data-version="${fileVersion}"]`, { timeout: 8_000, state: 'attached' });
      expect(await label(fileVersion).textContent()).toBe(`v${fileVersion} file`);
      expect(await label(cliVersion).textContent()).toBe(`v${cliVersion} CLI`);
      expect(Number(await label(cliVersion).getAttribute('y'))).toBeGreaterThan(Number(await label(fileVersion).getAttribute('y')));
      expect(problems).toEqual([]);
    } finally {
      clearInterval(feed);
      control.setBackend('web', 'web-2', { state: 'up', reason: '' });
      await page.close();
    }
  });

  it('shows a single node without a cluster panel, and a drained backend as intentional', async () => {
    const clustered = control.clusterState;
    control.clusterState = { nodeId: 'standalone', role: 'standalone', membership: 'standalone', term: 0, leader: null, commitIndex: 0, appliedIndex: 0, members: [] };
    control.setBackend('web', 'web-2', { state: 'up' });
    control.setBackend('api', 'api-1', { state: 'draining' });
    const { page } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('tr[data-backend="api-1"] [data-state="draining"]', { timeout: 5_000 });
      expect(await page.locator('#sum-leader').textContent()).toBe('single node');
      expect(await page.locator('#cluster-panel').isHidden()).toBe(true);
      expect(await page.locator('#sum-up').textContent()).toBe('2 / 3');
      expect(await page.locator('#sum-up.bad').count()).toBe(0);
    } finally {
      await page.close();
      control.clusterState = clustered;
      control.setBackend('api', 'api-1', { state: 'up' });
    }
  });

  it('shows what DNS found for a pool and which backends came from it', async () => {
    const saved = control.pools;
    const template = saved[0]!.backends[0]!;
    control.pools = [
      ...saved,
      {
        name: 'found',
        strategy: 'round-robin',
        panic: false,
        discovery: { name: 'web.internal', type: 'A', servers: ['127.0.0.1:5353'], found: 1, failures: 2, lastError: 'queryA ETIMEOUT web.internal' },
        backends: [
          { ...template, id: '10.0.0.7:8080', url: 'http://10.0.0.7:8080', discovered: true },
          { ...template, id: 'api.internal:80', url: 'http://api.internal', address: '10.0.0.8' },
        ],
      },
    ];
    const { page, problems } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('tr[data-backend="10.0.0.7:8080"] .tag.dns', { timeout: 5_000 });
      expect(await page.locator('p.dns').textContent()).toBe('DNS A web.internal (127.0.0.1:5353): 1 found \u2013 2 failed lookup(s), keeping the last answer: queryA ETIMEOUT web.internal');
      expect(await page.locator('tr[data-backend="api.internal:80"] .tag.dns').count()).toBe(0);
      expect(await page.locator('tr[data-backend="api.internal:80"] td.url').textContent()).toBe('http://api.internal \u2192 10.0.0.8');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
      control.pools = saved;
    }
  });

  it('says when the token is rejected and asks again', async () => {
    const { page } = await openWithToken('wrong-token');
    try {
      await page.waitForSelector('#token-message.error', { timeout: 5_000 });
      expect(await page.locator('#token-message').textContent()).toContain('rejected (403)');
      expect(await page.locator('#token-dialog').isVisible()).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('says when the admin API is unreachable and keeps retrying', async () => {
    const { page } = await openWithToken(TOKEN);
    try {
      await page.waitForSelector('#conn.live', { timeout: 5_000 });
      const port = new URL(base).port;
      await closeServer(server);
      await page.waitForSelector('#banner:not([hidden])', { timeout: 6_000 });
      expect(await page.locator('#banner').textContent()).toContain('Cannot reach the admin API');
      expect(await page.locator('#conn').textContent()).toBe('disconnected');
      // Back on the same port: the page recovers on its own.
      server = createAdminServer({ control, metrics, token: TOKEN, logger: silentLogger });
      await new Promise<void>((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
      await page.waitForSelector('#conn.live', { timeout: 6_000 });
      expect(await page.locator('#banner').isHidden()).toBe(true);
    } finally {
      await page.close();
    }
  });
});
