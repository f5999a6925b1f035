// What the retry loop answers when attempts fail, and what it counts: 503 when no backend could be reached, 502 when one answered badly, retries counted when they happen.

import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { request, rawExchange } from '../helpers/backend.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';

const { backend, gateway } = perTestResources();

async function retriesCounted(gw: TestGateway): Promise<number> {
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  return Number(/^balancer_retries_total\{pool="web"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
}

/** A backend that accepts connections and resets them as soon as a request arrives. */
async function resettingBackend(): Promise<{ url: string; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('when every attempt fails', () => {
  it('answers 503 NO_AVAILABLE_BACKEND with Retry-After when no backend could be reached', async () => {
    const [dead1, dead2] = [await freePort(), await freePort()];
    const gw = await gateway(`pools:\n  web:\n    backends:\n      - { url: http://127.0.0.1:${dead1} }\n      - { url: http://127.0.0.1:${dead2} }\n`);
    const res = await request(`${gw.url}/`);
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const error = JSON.parse(res.body).error;
    expect(error.code).toBe('NO_AVAILABLE_BACKEND');
    expect(error.message).toMatch(/ECONNREFUSED/);
    // An upgrade meets the same rule.
    const upgrade = await rawExchange(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(upgrade).toMatch(/^HTTP\/1\.1 503 [^]*retry-after: \d+[^]*NO_AVAILABLE_BACKEND/);
  });

  it('answers 503 when the connection attempt times out', async () => {
    // Accepts TCP and never answers the TLS ClientHello: the connect (TCP and TLS) cannot complete.
    const silent = net.createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const gw = await gateway(`pools:\n  web:\n    retries: 0\n    timeouts: { connect: 200ms }\n    backends:\n      - { url: https://127.0.0.1:${port} }\n`);
      const res = await request(`${gw.url}/`);
      expect(res.status).toBe(503);
      const error = JSON.parse(res.body).error;
      expect(error.code).toBe('NO_AVAILABLE_BACKEND');
      expect(error.message).toMatch(/timeout/i);
    } finally {
      silent.close();
    }
  });

  it('keeps 502 for a backend that was reached and reset the exchange', async () => {
    const resetting = await resettingBackend();
    try {
      const gw = await gateway(`pools:\n  web:\n    retries: 0\n    backends:\n      - { url: ${resetting.url} }\n`);
      const res = await request(`${gw.url}/`, { method: 'POST', body: 'x' });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body).error.code).toBe('UPSTREAM_RESET');
    } finally {
      await resetting.close();
    }
  });

  it('keeps 502 when one backend refused and another was reached and reset', async () => {
    const resetting = await resettingBackend();
    const dead = await freePort();
    try {
      const gw = await gateway(`pools:\n  web:\n    strategy: round-robin\n    backends:\n      - { url: http://127.0.0.1:${dead}, id: dead }\n      - { url: ${resetting.url}, id: resetting }\n`);
      const res = await request(`${gw.url}/`, { method: 'POST', body: 'x' });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body).error.code).toBe('UPSTREAM_RESET');
    } finally {
      await resetting.close();
    }
  });
});

describe('upgrades', () => {
  it('retries a WebSocket upgrade refused at connect on another backend', async () => {
    const live = await backend('live');
    live.server.on('upgrade', (_req: unknown, socket: net.Socket) => socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'));
    const dead = await freePort();
    const gw = await gateway(`pools:\n  web:\n    strategy: round-robin\n    backends:\n      - { url: http://127.0.0.1:${dead}, id: dead }\n      - { url: ${live.url}, id: live }\n`);
    const answer = await rawExchange(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 101 /);
    expect(await retriesCounted(gw)).toBe(1);
  });
});

describe('balancer_retries_total', () => {
  it('counts no retry on a one-backend pool, where none can happen', async () => {
    const gw = await gateway(`pools:\n  web:\n    retries: 2\n    backends:\n      - { url: http://127.0.0.1:${await freePort()} }\n`);
    await request(`${gw.url}/`);
    expect(await retriesCounted(gw)).toBe(0);
  });

  it('counts each retry sent to another backend', async () => {
    const good = await backend('good');
    const [dead1, dead2] = [await freePort(), await freePort()];
    const gw = await gateway(
      `pools:\n  web:\n    strategy: round-robin\n    retries: 2\n    backends:\n      - { url: http://127.0.0.1:${dead1}, id: d1 }\n      - { url: http://127.0.0.1:${dead2}, id: d2 }\n      - { url: ${good.url}, id: good }\n`,
    );
    // Round-robin starts at d1: d1 refuses, d2 refuses, good answers: two retries.
    const res = await request(`${gw.url}/`);
    expect(res.status).toBe(200);
    expect(await retriesCounted(gw)).toBe(2);
  });
});
