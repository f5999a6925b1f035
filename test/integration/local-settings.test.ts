// Local settings edited in a running node's file: applied live where they can be, named in a warning and flagged by a gauge where only a restart applies them.

import { afterEach, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { eventually, rawExchange, request, startBackend, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setup(): Promise<{ gw: TestGateway; backend: TestBackend; write: (local: string) => Promise<void> }> {
  const backend = await startBackend('b');
  cleanups.push(() => backend.close());
  const pools = `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;
  const gw = await startGateway(`limits: { maxBodySize: 1mb }\n${pools}`);
  cleanups.push(() => gw.stop());
  // The file as startGateway wrote it, with the port-0 listeners, so that only what a test changes differs.
  const header = `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: test-token\n`;
  return { gw, backend, write: (local) => writeFile(gw.file, `${header}${local}${pools}`) };
}

async function restartGauge(gw: TestGateway): Promise<number> {
  const metrics = (await request(`${gw.adminUrl}/metrics`)).body;
  return Number(/^balancer_config_restart_required (\d+)$/m.exec(metrics)?.[1]);
}

describe('local settings edited in the file of a running node', () => {
  it('applies limits, trusted proxies, log level and shutdown at once', async () => {
    const { gw, backend, write } = await setup();
    expect((await request(`${gw.url}/`, { method: 'POST', body: 'x'.repeat(2048) })).status).toBe(200);
    expect(gw.app.logger.enabled('debug')).toBe(true);

    await write('limits: { maxBodySize: 1kb }\ntrustedProxies: [127.0.0.1]\nlog: { level: warn }\nshutdown: { drainTimeout: 3s, preStopDelay: 1s }\n');
    await eventually(() => gw.logs.some((line) => line['msg'] === 'local settings applied from the file'), 'the live settings to apply');
    const applied = gw.logs.find((line) => line['msg'] === 'local settings applied from the file')!;
    expect(applied['settings']).toEqual(['trustedProxies', 'limits.maxBodySize', 'log.level', 'shutdown.drainTimeout', 'shutdown.preStopDelay']);

    // The new body limit, for new requests.
    expect((await request(`${gw.url}/`, { method: 'POST', body: 'x'.repeat(2048) })).status).toBe(413);
    // 127.0.0.1 is trusted now: its X-Forwarded-For is extended, not replaced.
    await request(`${gw.url}/xff`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(backend.seen.find((seen) => seen.url === '/xff')!.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(gw.app.logger.enabled('debug')).toBe(false);
    expect(gw.app.logger.enabled('warn')).toBe(true);
    expect(gw.app.config.shutdownDrainMs).toBe(3_000);
    expect(gw.app.config.shutdownPreStopDelayMs).toBe(1_000);
    // Nothing here needs a restart.
    expect(await restartGauge(gw)).toBe(0);
  });

  it('names each setting that needs a restart, keeps serving as before, and clears the gauge once the file matches again', async () => {
    const { gw, write } = await setup();
    expect(await restartGauge(gw)).toBe(0);
    await write('limits: { maxBodySize: 1mb }\nworkers: 2\nlog: { access: true }\n' + 'cluster:\n  nodeId: n1\n  listen: 127.0.0.1:7001\n  peers: { n1: 127.0.0.1:7001 }\n  secret: a-secret-long-enough-to-pass\n');
    await eventually(() => gw.logs.some((line) => String(line['msg']).startsWith('the file changes local settings that take effect only after a restart')), 'the restart warning');
    const warning = gw.logs.find((line) => String(line['msg']).startsWith('the file changes local settings that take effect only after a restart'))!;
    expect(warning['level']).toBe('warn');
    expect(warning['settings']).toEqual(['cluster', 'log.access', 'workers']);
    expect(await restartGauge(gw)).toBe(1);
    // Still serving in this process, as before the edit.
    expect((await request(`${gw.url}/`)).status).toBe(200);
    expect(await rawExchange(gw.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);

    await write('limits: { maxBodySize: 1mb }\n');
    await eventually(() => gw.logs.some((line) => line['msg'] === 'no restart needed any more: the local settings of the file match what runs'), 'the all-clear');
    expect(await restartGauge(gw)).toBe(0);
  });
});
