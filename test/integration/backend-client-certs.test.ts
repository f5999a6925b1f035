// Client certificates to backends (pools.NAME.tls.cert and .key): an https backend that requires one gets it on
// requests and health checks, a renewed certificate is used without a restart, and bad files are refused by name.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { closeServer, request } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';
import { startGateway } from '../helpers/gateway.js';
import { startBalancer } from '../helpers/process.js';
import { loadConfigFile } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/validate.js';

let dir: string;
/** The backend's own certificate (and the CA balancer verifies it with). */
let server: TestCerts;
/** A client certificate from the CA the backend trusts, and one from a CA it does not. */
let trusted: TestCerts;
let untrusted: TestCerts;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-client-certs-'));
  server = makeCerts(dir, 'server');
  trusted = makeCerts(dir, 'trusted', ['DNS:balancer.trusted']);
  untrusted = makeCerts(dir, 'untrusted', ['DNS:balancer.untrusted']);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An https backend that requires a client certificate from the `trusted` CA and records the client CN of each request. */
async function mtlsBackend(): Promise<{ url: string; seen: Array<{ path: string | undefined; client: string | string[] | undefined }>; close(): Promise<void> }> {
  const seen: Array<{ path: string | undefined; client: string | string[] | undefined }> = [];
  const backend = https.createServer(
    { cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(trusted.ca), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      seen.push({ path: req.url, client: (req.socket as TLSSocket).getPeerCertificate().subject?.CN });
      res.end('mutual');
    },
  );
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', () => resolve()));
  return { url: `https://127.0.0.1:${(backend.address() as AddressInfo).port}`, seen, close: () => closeServer(backend) };
}

function poolYaml(url: string, tls: string, extra = ''): string {
  return `pools:\n  web:\n    retries: 0\n${extra}    tls: { ${tls} }\n    backends:\n      - { url: ${url} }\n`;
}

describe('client certificates to backends', () => {
  it('a backend that requires one gets it on requests and on health checks; without it balancer is refused', async () => {
    const backend = await mtlsBackend();
    // jitter 0: the first check starts at once. Its timeout is wide so that a TLS handshake slowed by a loaded machine
    // still passes: the test is about the certificate, and it waits for the check's result, not for its arrival.
    const check = '    healthCheck: { path: /healthz, interval: 10s, timeout: 9s, rise: 1, fall: 3, jitter: 0 }\n';
    const gw = await startGateway(poolYaml(backend.url, `ca: ${server.ca}, cert: ${trusted.cert}, key: ${trusted.key}`, check));
    const without = await startGateway(poolYaml(backend.url, `ca: ${server.ca}`));
    try {
      const res = await request(`${gw.url}/hello`);
      expect(res.status).toBe(200);
      expect(res.body).toBe('mutual');
      expect(backend.seen.find((entry) => entry.path === '/hello')?.client).toBe('balancer.trusted');
      const health = gw.app.dataPlane.table.pools.get('web')!.pool.backends[0]!.live.health;
      const firstCheck = await eventually(() => health.lastCheck, 'the first health check to finish');
      expect(firstCheck.ok, firstCheck.detail).toBe(true);
      expect(backend.seen.some((entry) => entry.path === '/healthz' && entry.client === 'balancer.trusted')).toBe(true);
      expect(health.state).toBe('up');

      const refused = await request(`${without.url}/hello`);
      expect(refused.status).toBe(502);
      expect(backend.seen.filter((entry) => entry.path === '/hello')).toHaveLength(1);
    } finally {
      await without.stop();
      await gw.stop();
      await backend.close();
    }
  });

  it('a renewed client certificate is used for new connections without a restart', async () => {
    const backend = await mtlsBackend();
    const cert = join(dir, 'live-client-cert.pem');
    const key = join(dir, 'live-client-key.pem');
    await copyFile(untrusted.cert, cert);
    await copyFile(untrusted.key, key);
    // Passive ejection off: the refusals before the renewal must not take the only backend out for 30 s.
    const gw = await startGateway(poolYaml(backend.url, `ca: ${server.ca}, cert: ${cert}, key: ${key}`, '    outlierDetection: { enabled: false }\n'));
    try {
      expect((await request(`${gw.url}/before`)).status).toBe(502);
      await copyFile(trusted.key, key);
      await copyFile(trusted.cert, cert);
      await eventually(() => gw.logs.some((line) => line['msg'] === 'pool TLS files reloaded'), 'the pool TLS files to be reloaded');
      // The key and the certificate are two files: a reload between the two copies is refused and the next one takes both.
      await eventually(async () => (await request(`${gw.url}/after`)).status === 200, 'the renewed certificate to be accepted', 10_000, 200);
      expect(backend.seen.find((entry) => entry.path === '/after')?.client).toBe('balancer.trusted');
    } finally {
      await gw.stop();
      await backend.close();
    }
  });

  it('in worker mode, a renewed client certificate reaches every worker (the primary names the pool it rebuilt)', async () => {
    const backend = await mtlsBackend();
    const workDir = await mkdtemp(join(dir, 'workers-'));
    const cert = join(workDir, 'client-cert.pem');
    const key = join(workDir, 'client-key.pem');
    await copyFile(untrusted.cert, cert);
    await copyFile(untrusted.key, key);
    const { node, proxy } = await startBalancer(workDir, [
      'listen: 127.0.0.1:0',
      'admin: { listen: 127.0.0.1:0, token: t }',
      'workers: 2',
      poolYaml(backend.url, `ca: ${server.ca}, cert: ${cert}, key: ${key}`, '    outlierDetection: { enabled: false }\n'),
    ]);
    try {
      expect((await request(`${proxy}/before`)).status).toBe(502);
      await copyFile(trusted.key, key);
      await copyFile(trusted.cert, cert);
      await node.waitFor((line) => line['msg'] === 'pool TLS files reloaded', 'the pool TLS files to be reloaded');
      // Connections are handed to the workers in turn: ten in a row answered means both workers use the new files.
      await eventually(
        async () => {
          for (let i = 0; i < 10; i++) if ((await request(`${proxy}/after`)).status !== 200) return false;
          return true;
        },
        'every worker to use the renewed certificate',
        10_000,
        200,
      );
      expect(backend.seen.filter((entry) => entry.path === '/after').every((entry) => entry.client === 'balancer.trusted')).toBe(true);
    } finally {
      node.child.kill('SIGKILL');
      await node.exited;
      await backend.close();
    }
  });

  it('unreadable files, and a certificate that is not the key\'s, are refused with the file named', async () => {
    const conf = await mkdtemp(join(dir, 'conf-'));
    const file = join(conf, 'balancer.yaml');
    const problems = async (tls: string): Promise<string[]> => {
      await writeFile(file, poolYaml('https://127.0.0.1:9', tls));
      const loaded = await loadConfigFile(file);
      return loaded.ok ? [] : loaded.problems.map((problem) => formatProblem('balancer.yaml', problem));
    };
    expect(await problems(`cert: missing.pem, key: ${trusted.key}`)).toEqual([`balancer.yaml:4:18: pools.web.tls.cert: cannot read ${join(conf, 'missing.pem')}: no such file`]);
    expect(await problems(`cert: ${trusted.cert}, key: ${untrusted.key}`)).toEqual([
      expect.stringMatching(new RegExp(`^balancer\\.yaml:4:18: pools\\.web\\.tls\\.cert: cannot use the client certificate ${trusted.cert} with the key ${untrusted.key}: .*key values mismatch`)),
    ]);
    expect(await problems(`cert: ${trusted.cert}`)).toEqual(['balancer.yaml:4:5: pools.web.tls.key: is required with cert (the client certificate\'s private key)']);
  });
});
