// TLS on both sides: the listener terminates TLS (and reloads renewed certificates); https backends are verified.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { mkdtemp, rm, copyFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { startBackend, eventually, closeServer, type TestBackend } from '../helpers/backend.js';
import { startGateway } from '../helpers/gateway.js';

let dir: string;
let first: TestCerts;
let second: TestCerts;
let backend: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-tls-'));
  first = makeCerts(dir, 'first');
  second = makeCerts(dir, 'second');
  backend = await startBackend('plain');
});

afterAll(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: readFileSync(ca), agent: false }, (res) => {
        let body = '';
        const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint }));
      })
      .on('error', reject);
  });
}

describe('TLS listener', () => {
  it('terminates TLS, tells the backend the client used https, and reloads a renewed certificate', async () => {
    const cert = join(dir, 'live-cert.pem');
    const key = join(dir, 'live-key.pem');
    await copyFile(first.cert, cert);
    await copyFile(first.key, key);
    const gw = await startGateway(`tls: { cert: ${cert}, key: ${key} }\npools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`);
    try {
      const url = `https://127.0.0.1:${gw.port}/`;
      const before = await httpsGet(url, first.ca);
      expect(before.status).toBe(200);
      expect(backend.seen.at(-1)!.headers['x-forwarded-proto']).toBe('https');
      await copyFile(second.key, key);
      await copyFile(second.cert, cert);
      await eventually(async () => (await httpsGet(url, second.ca).catch(() => null))?.status === 200, 'renewed certificate to be served', 10_000, 200);
      const after = await httpsGet(url, second.ca);
      expect(after.fingerprint).not.toBe(before.fingerprint);
    } finally {
      await gw.stop();
    }
  });
});

describe('https backends', () => {
  async function httpsBackend(certs: TestCerts): Promise<{ url: string; close(): Promise<void> }> {
    const server = https.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (_req, res) => res.end('secure'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
  }

  it('verifies the backend against the configured CA', async () => {
    const secure = await httpsBackend(first);
    const gw = await startGateway(`pools:\n  web:\n    tls: { ca: ${first.ca} }\n    backends:\n      - { url: ${secure.url} }\n`);
    try {
      const res = await fetch(`${gw.url}/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('secure');
    } finally {
      await gw.stop();
      await secure.close();
    }
  });

  it('never forwards to a backend whose certificate does not verify', async () => {
    const secure = await httpsBackend(first);
    // The CA configured is the wrong one; without `ca` the system CAs would refuse it just the same.
    const gw = await startGateway(`pools:\n  web:\n    retries: 0\n    tls: { ca: ${second.ca} }\n    backends:\n      - { url: ${secure.url} }\n`);
    try {
      const res = await fetch(`${gw.url}/`);
      expect(res.status).toBe(502);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UPSTREAM_TLS_FAILED');
    } finally {
      await gw.stop();
      await secure.close();
    }
  });
});
