// peak-ewma with real sockets and processes: the forwarder's latency samples reach the strategy, status and
// /metrics, in one process and through worker processes (where each worker picks by its own samples and the
// primary's estimate is fed by the outcome reports).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBalancer, type RunningNode } from '../helpers/process.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';

/** Far above any scheduling hiccup of the fast path on a loaded machine, so the order of the two estimates is certain. */
const SLOW_MS = 1_000;
const REQUESTS = 40;

let dir: string;
let fast: TestBackend;
let slow: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-peak-ewma-'));
  fast = await startBackend('fast');
  slow = await startBackend('slow');
  slow.handle((_req, res) => {
    setTimeout(() => res.writeHead(200, { 'x-backend': 'slow' }).end('slow'), SLOW_MS);
  });
});

afterAll(async () => {
  await fast.close();
  await slow.close();
  await rm(dir, { recursive: true, force: true });
});

interface BackendStatus {
  id: string;
  latencyEwmaMs: number;
  latencyMeasured: boolean;
}

async function backendsOf(admin: string): Promise<BackendStatus[]> {
  const res = await fetch(`${admin}/api/v1/status`, { headers: { authorization: 'Bearer t' } });
  const status = (await res.json()) as { pools: Array<{ name: string; backends: BackendStatus[] }> };
  return status.pools.find((p) => p.name === 'web')!.backends;
}

describe.each([[0], [2]])('peak-ewma with workers: %i', (workers) => {
  let node: RunningNode;
  let proxy: string;
  let admin: string;

  beforeAll(async () => {
    ({ node, proxy, admin } = await startBalancer(
      dir,
      [
        'listen: 127.0.0.1:0',
        'admin: { listen: 127.0.0.1:0, token: t }',
        `workers: ${workers}`,
        'pools:',
        '  web:',
        '    strategy: peak-ewma',
        // No probe of the slow backend within the test: what it gets, it gets by its estimate.
        '    ewma: { decay: 5m, initial: 10ms }',
        '    backends:',
        `      - { url: ${fast.url}, id: fast }`,
        `      - { url: ${slow.url}, id: slow }`,
        '',
      ],
      { fileName: `workers-${workers}.yaml` },
    ));
  });

  afterAll(() => {
    node?.child.kill('SIGKILL');
  });

  it('sends the slow backend only what it takes to measure it, and shows both estimates in status and /metrics', async () => {
    let slowAnswers = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const res = await request(`${proxy}/`);
      expect(res.status).toBe(200);
      if (res.headers['x-backend'] === 'slow') slowAnswers++;
    }
    // Round-robin would send it 20. Each process that picks measures it at most once before avoiding it.
    expect(slowAnswers).toBeLessThanOrEqual(Math.max(1, workers));
    // The primary's estimates come from the same samples (through the workers' reports in worker mode, which
    // arrive every 100 ms: status and /metrics agree once the last report is in).
    let backends: BackendStatus[] = [];
    await eventually(async () => {
      backends = await backendsOf(admin);
      const metrics = await (await fetch(`${admin}/metrics`)).text();
      const gauge = (id: string) => Number(new RegExp(`^balancer_backend_latency_ewma_seconds\\{pool="web",backend="${id}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
      // Read a few milliseconds apart, the two differ by the decay in between (time constant 5 min): well under 1%.
      return (
        backends.every((b) => Math.abs(gauge(b.id) - b.latencyEwmaMs / 1000) <= 0.01 * (b.latencyEwmaMs / 1000)) &&
        backends.find((b) => b.id === 'fast')!.latencyMeasured
      );
    }, 'status and /metrics to show the same measured estimates');
    const fastStatus = backends.find((b) => b.id === 'fast')!;
    const slowStatus = backends.find((b) => b.id === 'slow')!;
    expect(fastStatus.latencyEwmaMs).toBeLessThan(slowStatus.latencyMeasured ? slowStatus.latencyEwmaMs : SLOW_MS);
    if (slowAnswers > 0) {
      expect(slowStatus.latencyMeasured).toBe(true);
      // Its one answer took at least SLOW_MS; the estimate has decayed since by well under 1% (decay: 5m).
      expect(slowStatus.latencyEwmaMs).toBeGreaterThanOrEqual(0.99 * SLOW_MS);
    }
  });
});
