// Local settings edited in a running node's file: applied live where they can be, named in a warning and flagged by a gauge where only a restart applies them.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpsRequest, rawExchange, request, startBackend, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { START_TIMEOUT_MS, startCli } from '../helpers/process.js';
import { execFileSync } from 'node:child_process';
import { eventually } from '../helpers/wait.js';

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

describe('edits in quick succession', () => {
  it('apply their local settings in the order they came, even when the older one waits on reading a token file', async () => {
    const { gw } = await setup();
    const header = `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n`;
    const current = await readFile(gw.file, 'utf8');
    const pools = current.slice(current.indexOf('pools:'));
    await writeFile(join(gw.dir, 'admin.token'), 'from-a-file\n');
    const older = `${header}  tokenFile: admin.token\nlog: { level: warn }\n${pools}`;
    const newer = `${header}  token: test-token\nlog: { level: error }\n${pools}`;
    // As the watcher and a SIGHUP would hand them over, one right after the other.
    const edit = (text: string): Promise<void> => (gw.app as unknown as { onFileEdit(text: string): Promise<void> }).onFileEdit(text);
    await Promise.all([edit(older), edit(newer)]);
    expect(gw.app.config.log.level).toBe('error');
    expect(gw.app.config.admin.token).toBe('test-token');
    expect((await request(`${gw.adminUrl}/api/v1/status`, { headers: { authorization: 'Bearer test-token' } })).status).toBe(200);
  });
});

describe('the admin token edited in the file of a running node', () => {
  it('accepts the new token and refuses the old one at once, re-reads a token file on each edit, and keeps the token when the file cannot be read', async () => {
    const backend = await startBackend('b');
    cleanups.push(() => backend.close());
    const pools = `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;
    const gw = await startGateway(pools);
    cleanups.push(() => gw.stop());
    const write = (admin: string): Promise<void> => writeFile(gw.file, `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n${admin}${pools}`);
    const status = async (token: string): Promise<number> => (await request(`${gw.adminUrl}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } })).status;
    const applied = (): Record<string, unknown>[] => gw.logs.filter((line) => line['msg'] === 'local settings applied from the file');
    expect(await status('test-token')).toBe(200);

    await write('  token: rotated-token\n');
    await eventually(() => applied().length === 1, 'the new token to apply');
    expect(applied()[0]!['settings']).toEqual(['admin.token']);
    expect(await status('rotated-token')).toBe(200);
    expect(await status('test-token')).toBe(403);
    // The token itself is never logged.
    expect(JSON.stringify(gw.logs).includes('rotated-token')).toBe(false);

    // A token file, named relative to the config file; rewriting it and saving the config again rotates it.
    await writeFile(join(gw.dir, 'admin.token'), 'from-a-file\n');
    await write('  tokenFile: admin.token\n');
    await eventually(() => applied().length === 2, 'the token file to apply');
    expect(await status('from-a-file')).toBe(200);
    expect(await status('rotated-token')).toBe(403);
    await writeFile(join(gw.dir, 'admin.token'), 'rewritten\n');
    await gw.app.reload();
    expect(applied()).toHaveLength(3);
    expect(await status('rewritten')).toBe(200);
    expect(await status('from-a-file')).toBe(403);
    expect(await restartGauge(gw)).toBe(0);

    // A token file that cannot be read: an error naming it, the token in force stays, the gauge tells.
    await write('  tokenFile: missing.token\n');
    await eventually(() => gw.logs.some((line) => String(line['msg']).startsWith('the admin token file named in the config file cannot be used')), 'the token file error');
    const error = gw.logs.find((line) => String(line['msg']).startsWith('the admin token file named in the config file cannot be used'))!;
    expect(error['err']).toBe(`cannot read ${join(gw.dir, 'missing.token')}: no such file`);
    expect(await status('rewritten')).toBe(200);
    expect(await restartGauge(gw)).toBe(1);
  });
});

describe('TLS certificate files named anew in the file of a running node', () => {
  let dir: string;
  let first: TestCerts;
  let second: TestCerts;
  let third: TestCerts;

  beforeAll(() => {
    return (async () => {
      dir = await mkdtemp(join(tmpdir(), 'balancer-tls-paths-'));
      first = makeCerts(dir, 'first');
      second = makeCerts(dir, 'second');
      third = makeCerts(dir, 'third');
    })();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('serves new connections from the new files, follows renewals there, and keeps the certificate when the new files cannot be used', async () => {
    const backend = await startBackend('b');
    cleanups.push(() => backend.close());
    const pools = `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;
    // The second pair is copied, so the test can renew it in place; the first stays where it was made.
    const renewable = { cert: join(dir, 'renewable-cert.pem'), key: join(dir, 'renewable-key.pem') };
    await copyFile(second.cert, renewable.cert);
    await copyFile(second.key, renewable.key);
    const gw = await startGateway(`tls: { cert: ${first.cert}, key: ${first.key} }\n${pools}`);
    cleanups.push(() => gw.stop());
    const header = `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: test-token\n`;
    const write = (tls: string): Promise<void> => writeFile(gw.file, `${header}tls: ${tls}\n${pools}`);
    const url = `https://127.0.0.1:${gw.port}/`;
    const served = async (ca: string): Promise<string | null> => (await httpsRequest(url, ca).catch(() => null))?.fingerprint ?? null;
    const logged = (msg: string): Record<string, unknown>[] => gw.logs.filter((line) => line['msg'] === msg);
    const before = await served(first.ca);
    expect(before).not.toBeNull();

    // A certificate path that does not exist: one error naming it, the first certificate still served, the gauge up.
    const missing = join(dir, 'missing-cert.pem');
    await write(`{ cert: ${missing}, key: ${renewable.key} }`);
    const unusable = 'the TLS files named in the config file cannot be used; still serving the previous certificate (fix the files, then send SIGHUP)';
    await eventually(() => logged(unusable).length === 1, 'the error about the missing certificate');
    expect(logged(unusable)[0]!['level']).toBe('error');
    expect(String(logged(unusable)[0]!['err'])).toBe(`cannot read the TLS certificate ${missing}: no such file`);
    expect(await served(first.ca)).toBe(before);
    expect(await restartGauge(gw)).toBe(1);

    // A key that is not the certificate's: the same, naming both files.
    await write(`{ cert: ${renewable.cert}, key: ${third.key} }`);
    await eventually(() => logged(unusable).length === 2, 'the error about the mismatched key');
    expect(String(logged(unusable)[1]!['err'])).toMatch(new RegExp(`^cannot use the TLS certificate ${renewable.cert} with the key ${third.key}: .*key values mismatch`));
    expect(await served(first.ca)).toBe(before);
    expect(await restartGauge(gw)).toBe(1);

    // A good pair: new connections get it at once, and nothing waits for a restart.
    await write(`{ cert: ${renewable.cert}, key: ${renewable.key} }`);
    await eventually(() => logged('local settings applied from the file').length === 1, 'the new TLS files to apply');
    expect(logged('local settings applied from the file')[0]!['settings']).toEqual(['tls']);
    const switched = await served(second.ca);
    expect(switched).not.toBeNull();
    expect(switched).not.toBe(before);
    expect(await served(first.ca)).toBeNull();
    expect(await restartGauge(gw)).toBe(0);
    expect(logged('no restart needed any more: the local settings of the file match what runs')).toHaveLength(1);

    // The watch follows the new files: renewing them in place is served too.
    await copyFile(third.key, renewable.key);
    await copyFile(third.cert, renewable.cert);
    await eventually(async () => (await served(third.ca)) !== null, 'the renewed certificate at the new path', 10_000, 200);
    expect(await served(third.ca)).not.toBe(switched);
    // And a request still goes through.
    expect((await httpsRequest(url, third.ca)).status).toBe(200);
  });

  it('with workers: 2, applies limits, trusted proxies, log level and TLS files in every worker, and in a worker started later', async () => {
    const backend = await startBackend('b');
    cleanups.push(() => backend.close());
    const file = join(dir, 'workers.yaml');
    const local = 'listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\nworkers: 2\n';
    const pools = `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;
    await writeFile(file, `${local}limits: { maxBodySize: 1mb }\ntls: { cert: ${first.cert}, key: ${first.key} }\n${pools}`);
    const node = startCli(['start', '-c', file]);
    cleanups.push(async () => {
      node.child.kill('SIGKILL');
      await node.exited;
    });
    const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'the node to start', START_TIMEOUT_MS);
    const proxy = `https://${String(started['proxy'])}`;
    const admin = `http://${String(started['admin'])}`;
    const gauge = async (): Promise<number> => Number(/^balancer_config_restart_required (\d+)$/m.exec((await request(`${admin}/metrics`)).body)?.[1]);
    const post = (ca: string) => httpsRequest(`${proxy}/upload`, ca, { method: 'POST', body: 'x'.repeat(2048) });
    // Every request below has its own connection: the primary hands connections to the workers in turn.
    for (let i = 0; i < 4; i++) expect((await post(first.ca)).status).toBe(200);

    // Copies of the second pair, so the test can renew them in place at the end.
    const workersTls = { cert: join(dir, 'workers-cert.pem'), key: join(dir, 'workers-key.pem') };
    await copyFile(second.cert, workersTls.cert);
    await copyFile(second.key, workersTls.key);
    await writeFile(file, `${local}limits: { maxBodySize: 1kb }\ntrustedProxies: [127.0.0.1]\nlog: { level: debug }\ntls: { cert: ${workersTls.cert}, key: ${workersTls.key} }\n${pools}`);
    const applied = await node.waitFor((line) => line['msg'] === 'local settings applied from the file', 'the live settings to apply');
    expect(applied['settings']).toEqual(['tls', 'trustedProxies', 'limits.maxBodySize', 'log.level']);
    const switchedWorkers = (): Set<unknown> =>
      new Set(node.lines.filter((line) => line['msg'] === 'TLS certificate files changed: new connections get the new certificate').map((line) => line['worker']));
    await eventually(() => switchedWorkers().size === 2, 'both workers to switch certificates');

    const secondServed = (await httpsRequest(`${proxy}/`, second.ca)).fingerprint;
    const checkWorkers = async (round: string): Promise<void> => {
      for (let i = 0; i < 6; i++) {
        const res = await post(second.ca);
        expect(res.status, `${round}: POST ${i}`).toBe(413);
        expect(res.fingerprint).toBe(secondServed);
        await httpsRequest(`${proxy}/xff-${round}-${i}`, second.ca, { headers: { 'x-forwarded-for': '203.0.113.9' } });
        expect(backend.seen.find((seen) => seen.url === `/xff-${round}-${i}`)!.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
      }
    };
    await checkWorkers('edited');
    // log.level debug reached the workers: a failed handshake is logged by the worker that had it.
    await rawExchange(Number(String(started['proxy']).split(':')[1]), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await node.waitFor((line) => line['msg'] === 'TLS handshake failed' && line['worker'] !== undefined, 'a worker to log at debug');
    expect(await gauge()).toBe(0);

    // A worker started now gets the settings in force, not those the node started with.
    const workers = execFileSync('pgrep', ['-P', String(node.child.pid)]).toString().trim().split('\n').map(Number);
    expect(workers).toHaveLength(2);
    process.kill(workers[0]!, 'SIGKILL');
    await node.waitFor((line) => line['msg'] === 'data-plane worker restarted', 'the replacement worker', 20_000);
    await checkWorkers('replaced');

    // TLS files that cannot be used: the primary says which, no worker switches, the gauge tells.
    const missing = join(dir, 'missing-key.pem');
    await writeFile(file, `${local}limits: { maxBodySize: 1kb }\ntrustedProxies: [127.0.0.1]\nlog: { level: debug }\ntls: { cert: ${third.cert}, key: ${missing} }\n${pools}`);
    const refused = await node.waitFor((line) => String(line['msg']).startsWith('the TLS files named in the config file cannot be used'), 'the TLS error');
    expect(refused['err']).toBe(`cannot read the TLS key ${missing}: no such file`);
    expect(await gauge()).toBe(1);
    for (let i = 0; i < 4; i++) expect((await httpsRequest(`${proxy}/`, second.ca)).fingerprint).toBe(secondServed);

    // Every worker watches the files it switched to (the replacement too): renewing them in place is served.
    await copyFile(third.key, workersTls.key);
    await copyFile(third.cert, workersTls.cert);
    await eventually(
      async () => {
        for (let i = 0; i < 6; i++) if ((await httpsRequest(`${proxy}/`, third.ca).catch(() => null))?.status !== 200) return false;
        return true;
      },
      'both workers to serve the renewed certificate',
      15_000,
      200,
    );

    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });

  it('turns TLS on without a restart: the same port serves https', async () => {
    const { gw, write } = await setup();
    expect((await request(`${gw.url}/`)).status).toBe(200);
    await write(`limits: { maxBodySize: 1mb }\ntls: { cert: ${first.cert}, key: ${first.key} }\n`);
    await eventually(() => gw.logs.some((line) => line['msg'] === 'local settings applied from the file'), 'the listener change to apply');
    expect(gw.logs.find((line) => line['msg'] === 'local settings applied from the file')!['settings']).toEqual(['tls']);
    expect((await httpsRequest(`https://127.0.0.1:${gw.port}/`, first.ca)).status).toBe(200);
    await expect(request(`${gw.url}/`)).rejects.toThrow();
    expect(await restartGauge(gw)).toBe(0);
  });
});
