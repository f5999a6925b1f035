// TLS on both sides: the listener terminates TLS (and reloads renewed certificates); https backends are verified.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { mkdtemp, rm, copyFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { startBackend, closeServer, request, rawExchange, type TestBackend } from '../helpers/backend.js';
import { startGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

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
  /** An https backend that answers 'secure' and records, per request, the SNI its connection came with and the Host. */
  async function httpsBackend(certs: TestCerts): Promise<{ port: number; url: string; seen: Array<{ sni: string | false | null; host: string | undefined }>; connections: number; close(): Promise<void> }> {
    const seen: Array<{ sni: string | false | null; host: string | undefined }> = [];
    const server = https.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) => {
      seen.push({ sni: (req.socket as TLSSocket).servername, host: req.headers.host });
      res.end('secure');
    });
    const backend = { port: 0, url: '', seen, connections: 0, close: () => closeServer(server) };
    // A WebSocket handshake is answered with 101 and the SNI it came with, then the socket closes.
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
      seen.push({ sni: (req.socket as TLSSocket).servername, host: req.headers.host });
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    });
    server.on('secureConnection', () => (backend.connections += 1));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    backend.port = (server.address() as AddressInfo).port;
    backend.url = `https://127.0.0.1:${backend.port}`;
    return backend;
  }

  async function get(gatewayUrl: string, host?: string): Promise<{ status: number; body: string }> {
    const res = await request(`${gatewayUrl}/`, host === undefined ? {} : { headers: { host } });
    return { status: res.status, body: res.body };
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

  it('checks a backend named by host against that name, whatever Host the client sends, on one connection', async () => {
    const named = makeCerts(dir, 'named-localhost', ['DNS:localhost']);
    const secure = await httpsBackend(named);
    const gw = await startGateway(`pools:\n  web:\n    retries: 0\n    tls: { ca: ${named.ca} }\n    backends:\n      - { url: https://localhost:${secure.port} }\n`);
    try {
      for (const host of ['app.example.com', 'www.example.com', 'app.example.com']) expect(await get(gw.url, host)).toEqual({ status: 200, body: 'secure' });
      expect(secure.seen).toEqual([
        { sni: 'localhost', host: 'app.example.com' },
        { sni: 'localhost', host: 'www.example.com' },
        { sni: 'localhost', host: 'app.example.com' },
      ]);
      // The client's Host is not the connection's name: changing it does not cost a new TLS connection.
      expect(secure.connections).toBe(1);
      // WebSocket upgrades (through the tunnel) are verified by the same name.
      const upgrade = await rawExchange(gw.port, 'GET /ws HTTP/1.1\r\nHost: chat.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      expect(upgrade).toMatch(/^HTTP\/1\.1 101 /);
      expect(secure.seen.at(-1)).toEqual({ sni: 'localhost', host: 'chat.example.com' });
    } finally {
      await gw.stop();
      await secure.close();
    }
  });

  it('checks a backend named by IP against its IP, and sends no SNI (RFC 6066)', async () => {
    const byIp = makeCerts(dir, 'ip-only', ['IP:127.0.0.1']);
    const secure = await httpsBackend(byIp);
    const gw = await startGateway(`pools:\n  web:\n    retries: 0\n    tls: { ca: ${byIp.ca} }\n    backends:\n      - { url: ${secure.url} }\n`);
    try {
      expect(await get(gw.url, 'app.example.com')).toEqual({ status: 200, body: 'secure' });
      expect(secure.seen).toEqual([{ sni: false, host: 'app.example.com' }]);
    } finally {
      await gw.stop();
      await secure.close();
    }
  });

  it('uses tls.serverName for SNI and the name checked, and refuses the same certificate without it', async () => {
    const internal = makeCerts(dir, 'internal', ['DNS:backend.internal']);
    const secure = await httpsBackend(internal);
    const pool = (serverName: string) => `pools:\n  web:\n    retries: 0\n    tls: { ca: ${internal.ca}${serverName} }\n    backends:\n      - { url: ${secure.url} }\n`;
    const named = await startGateway(pool(', serverName: backend.internal'));
    const unnamed = await startGateway(pool(''));
    try {
      expect(await get(named.url, 'app.example.com')).toEqual({ status: 200, body: 'secure' });
      expect(secure.seen).toEqual([{ sni: 'backend.internal', host: 'app.example.com' }]);
      // Without serverName the backend's own name is 127.0.0.1, which the certificate does not carry; nor does the
      // client's Host rescue it when it happens to match.
      const refused = await request(`${unnamed.url}/`, { headers: { host: 'backend.internal' } });
      expect(refused.status).toBe(502);
      expect(JSON.parse(refused.body).error.code).toBe('UPSTREAM_TLS_FAILED');
    } finally {
      await named.stop();
      await unnamed.stop();
      await secure.close();
    }
  });
});
