// SIGTERM as a load balancer in front sees it: /readyz 503 at once, new connections still served for the pre-stop delay, then a drain.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { START_TIMEOUT_MS, startCli, type RunningNode } from '../helpers/process.js';

const PRE_STOP_DELAY_MS = 2_000;

let dir: string;
let backend: TestBackend;
const running: RunningNode[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-shutdown-'));
  backend = await startBackend('b');
});

afterAll(async () => {
  for (const node of running) node.child.kill('SIGKILL');
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

interface Outcome {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number | null;
  readonly error: string | null;
}

describe('SIGTERM with shutdown.preStopDelay', () => {
  it('turns /readyz 503 at once, keeps accepting new connections for the delay, then drains and exits 0', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(
      file,
      `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\nshutdown: { preStopDelay: ${PRE_STOP_DELAY_MS}ms, drainTimeout: 5s }\n` +
        `pools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`,
    );
    const node = startCli(['start', '-c', file]);
    running.push(node);
    const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'start', START_TIMEOUT_MS);
    const proxy = `http://${String(started['proxy'])}`;
    const admin = `http://${String(started['admin'])}`;
    expect((await request(`${admin}/readyz`)).status).toBe(200);

    let exited = false;
    void node.exited.then(() => (exited = true));
    // Traffic as a client behind a load balancer sends it: a new connection per request, until the process is gone.
    const outcomes: Outcome[] = [];
    const traffic = (async () => {
      for (let i = 0; i < 5_000 && !exited; i++) {
        const startedAt = Date.now();
        try {
          const res = await request(`${proxy}/`);
          outcomes.push({ startedAt, endedAt: Date.now(), status: res.status, error: null });
        } catch (error) {
          outcomes.push({ startedAt, endedAt: Date.now(), status: null, error: (error as { code?: string }).code ?? String(error) });
          // Refused: the listener is closed; the rest of the test is about what came before.
          if ((error as { code?: string }).code === 'ECONNREFUSED') return;
        }
      }
    })();
    while (outcomes.length < 5) await new Promise((resolve) => setImmediate(resolve));

    node.child.kill('SIGTERM');
    await node.waitFor((line) => line['msg'] === 'shutting down', 'shutdown to begin');
    const readyz = await request(`${admin}/readyz`);
    const notReadyAt = Date.now();
    expect(readyz.status).toBe(503);
    expect(readyz.body).toMatch(/^not ready: shutting down: still accepting for the pre-stop delay/);

    const over = await node.waitFor((line) => line['msg'] === 'pre-stop delay over: the listener stops accepting and drains', 'the pre-stop delay to end', 15_000);
    const stoppedAcceptingAt = Date.parse(String(over['time']));
    expect(await node.exited).toBe(0);
    await traffic;

    // New connections opened after /readyz said 503 were still served...
    const servedAfterNotReady = outcomes.filter((o) => o.startedAt >= notReadyAt && o.status === 200);
    expect(servedAfterNotReady.length).toBeGreaterThan(0);
    // ...and nothing failed before the node itself logged that it stops accepting (failures can only follow it).
    const failed = outcomes.filter((o) => o.status !== 200);
    for (const failure of failed) expect(failure.endedAt).toBeGreaterThanOrEqual(stoppedAcceptingAt);
    expect(failed.every((o) => o.error === 'ECONNREFUSED' || o.error === 'ECONNRESET')).toBe(true);
  });
});
