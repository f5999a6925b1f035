#!/usr/bin/env node
// Takes docs/dashboard.png of the admin dashboard: of a running balancer (--url, --token) or of a demo admin server.
//
//   node scripts/screenshot-dashboard.js [--url http://127.0.0.1:9090 --token T] [--out docs/dashboard.png]
//
// Without --url it starts the admin server from the compiled code (dist/, or $BALANCER_DIST) with an
// in-memory control plane and synthetic traffic, so the page has rates and latencies to show.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const root = resolve(fileURLToPath(import.meta.url), '../..');
const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string', default: process.env.BALANCER_ADMIN_TOKEN ?? '' },
    out: { type: 'string', default: resolve(root, 'docs/dashboard.png') },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});

function backend(id, url, weight, state = 'up', extra = {}) {
  return { id, url, weight, effectiveWeight: weight, state, inflight: 0, consecutiveFailures: 0, ejections: 0, reason: 'passing health checks', lastCheck: { ok: true, at: Date.now(), ageMs: 800, detail: '200 OK' }, ...extra };
}

async function startDemo() {
  const dist = process.env.BALANCER_DIST ?? resolve(root, 'dist');
  const load = (path) => import(pathToFileURL(resolve(dist, path)).href);
  const { createAdminServer } = await load('admin/api.js');
  const { createMetrics } = await load('metrics/metrics.js');
  const { silentLogger } = await load('log.js');
  const pools = [
    { name: 'web', strategy: 'weighted', panic: false, backends: [
      backend('web-1', 'http://10.0.1.11:8080', 3, 'up', { inflight: 4 }),
      backend('web-2', 'http://10.0.1.12:8080', 3, 'up', { inflight: 3 }),
      backend('web-3', 'http://10.0.1.13:8080', 1, 'down', { reason: 'health check failed 3 times: connect ECONNREFUSED', consecutiveFailures: 3, lastCheck: { ok: false, at: Date.now(), ageMs: 400, detail: 'ECONNREFUSED' } }),
    ] },
    { name: 'api', strategy: 'least-request', panic: false, backends: [
      backend('api-1', 'http://10.0.2.21:9000', 1, 'up', { inflight: 7 }),
      backend('api-2', 'http://10.0.2.22:9000', 1, 'ejected', { reason: 'outlier: 5 consecutive 5xx', ejections: 2 }),
      backend('api-3', 'http://10.0.2.23:9000', 1, 'draining', { effectiveWeight: 0, inflight: 1 }),
    ] },
  ];
  const cluster = { nodeId: 'n1', role: 'leader', term: 7, leader: 'n1', commitIndex: 1284, appliedIndex: 1284, members: [
    { id: 'n1', address: '10.0.0.1:7001', voter: true, matchIndex: 1284, reachable: true },
    { id: 'n2', address: '10.0.0.2:7001', voter: true, matchIndex: 1284, reachable: true },
    { id: 'n3', address: '10.0.0.3:7001', voter: true, matchIndex: 1279, reachable: true },
  ] };
  const control = {
    status: () => ({ node: 'n1', version: 42, ready: true, pools, cluster }),
    ready: () => true,
    cluster: () => cluster,
  };
  const metrics = createMetrics({ collectDefault: false });
  const profile = { 'web/web-1': [180, 0.004, 0.03], 'web/web-2': [170, 0.005, 0.05], 'api/api-1': [60, 0.03, 0.01], 'api/api-3': [8, 0.02, 0] };
  const traffic = setInterval(() => {
    for (const [key, [perTick, latency, errors]] of Object.entries(profile)) {
      const [pool, id] = key.split('/');
      const m = metrics.backend(pool, id);
      for (let i = 0; i < perTick / 10; i++) {
        const slow = Math.random() < 0.02 ? 8 : 1;
        m.requestFinished(Math.random() < errors ? '5xx' : '2xx', latency * slow * (0.5 + Math.random()));
      }
    }
  }, 100);
  const token = 'demo-token';
  const server = createAdminServer({ control, metrics, token, logger: silentLogger });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, token, stop: () => { clearInterval(traffic); server.closeAllConnections(); server.close(); } };
}

if (!existsSync(values.chromium)) {
  console.error(`chromium not found at ${values.chromium}: apt-get install -y chromium, or pass --chromium PATH`);
  process.exit(1);
}
const target = values.url ? { url: values.url.replace(/\/+$/, ''), token: values.token, stop: () => {} } : await startDemo();
const browser = await chromium.launch({
  executablePath: values.chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`${target.url}/?refresh=1000`);
  await page.getByRole('textbox', { name: 'Token' }).fill(target.token);
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.waitForSelector('#conn.live', { timeout: 10_000 });
  // Rates need two polls; latency percentiles look settled after a few.
  await page.waitForTimeout(3_500);
  await page.screenshot({ path: values.out, fullPage: true });
  console.log(`wrote ${values.out}`);
} finally {
  await browser.close();
  target.stop();
}
