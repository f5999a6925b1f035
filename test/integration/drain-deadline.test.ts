// The drain deadline of a stopping listener cuts every connection still open: idle keep-alive HTTP/1 ones (Node's
// server holds those), WebSocket tunnels, plain connections still being read for the h2c preface and TLS connections
// still in their handshake (the listener holds those).

import net from 'node:net';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptWebSocket, startBackend, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makeCerts } from '../helpers/certs.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function backend(): Promise<TestBackend> {
  const b = await startBackend('b');
  const upgraded = new Set<net.Socket>();
  cleanups.push(() => b.close());
  cleanups.push(() => upgraded.forEach((socket) => socket.destroy()));
  // A WebSocket backend that accepts and then just holds the tunnel open.
  b.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    upgraded.add(socket);
    socket.on('error', () => socket.destroy());
    acceptWebSocket(req, socket);
  });
  return b;
}

async function gateway(yaml: string): Promise<TestGateway> {
  const gw = await startGateway(yaml);
  // stop() is the test's; only the directory is left to remove.
  cleanups.push(() => rmSync(gw.dir, { recursive: true, force: true }));
  return gw;
}

/** A client connection and a promise of its close; `send` is written once connected. */
function connect(port: number, send: string | null): Promise<{ socket: net.Socket; closed: Promise<void>; firstData: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => void socket.destroy());
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    const firstData = new Promise<string>((done) => socket.once('data', (chunk: Buffer) => done(chunk.toString('latin1'))));
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      if (send !== null) socket.write(send);
      resolve({ socket, closed, firstData });
    });
    socket.once('error', reject);
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
/** Long enough that only the drain deadline (200 ms) can be what closes the connections below. */
const LIMITS = 'limits: { keepAliveTimeout: 60s, headersTimeout: 60s, requestTimeout: 120s }\n';

function pool(b: TestBackend): string {
  return `pools:\n  web:\n    backends:\n      - { url: ${b.url} }\n`;
}

describe('the drain deadline', () => {
  it('cuts idle keep-alive connections and WebSocket tunnels of a plain listener', async () => {
    const b = await backend();
    const gw = await gateway(LIMITS + pool(b));
    const idle = await connect(gw.port, GET);
    expect(await idle.firstData).toMatch(/^HTTP\/1\.1 200/);
    const tunnel = await connect(gw.port, UPGRADE);
    expect(await tunnel.firstData).toMatch(/^HTTP\/1\.1 101/);
    await gw.app.stop(200, 0);
    await Promise.all([idle.closed, tunnel.closed]);
    expect(gw.logs.some((line) => line['msg'] === 'drain deadline reached; closing remaining connections' && line['open'] === 1)).toBe(true);
  });

  it('cuts a connection still read for the h2c preface and a WebSocket tunnel of an h2c listener', async () => {
    const b = await backend();
    const gw = await gateway(`listeners:\n  - { name: plain, listen: "127.0.0.1:0", h2c: true }\n${LIMITS}${pool(b)}`);
    const port = gw.app.addresses.proxy.port;
    const silent = await connect(port, null);
    const tunnel = await connect(port, UPGRADE);
    expect(await tunnel.firstData).toMatch(/^HTTP\/1\.1 101/);
    const idle = await connect(port, GET);
    expect(await idle.firstData).toMatch(/^HTTP\/1\.1 200/);
    await gw.app.stop(200, 0);
    await Promise.all([silent.closed, tunnel.closed, idle.closed]);
  });

  it('cuts a TLS connection still in its handshake', async () => {
    const b = await backend();
    const dir = mkdtempSync(join(tmpdir(), 'balancer-drain-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const certs = makeCerts(dir, 'server');
    const gw = await gateway(`tls: { cert: ${certs.cert}, key: ${certs.key} }\n${LIMITS}${pool(b)}`);
    const handshaking = await connect(gw.port, null);
    await gw.app.stop(200, 0);
    await handshaking.closed;
  });
});
