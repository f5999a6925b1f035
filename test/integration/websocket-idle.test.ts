// WebSocket tunnels and timeouts.tunnel: a tunnel with no byte either way is closed on both sides, one that carries
// traffic stays open however long it lasts.

import { describe, expect, it } from 'vitest';
import type http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { acceptWebSocket } from '../helpers/backend.js';
import { setTimeout as delay } from 'node:timers/promises';
import { perTestResources } from '../helpers/gateway.js';


const resources = perTestResources();

/** A backend that accepts every upgrade and echoes what it gets; `closed` resolves when the gateway closes the tunnel's backend side. */
async function echoBackend(): Promise<{ url: string; closed: Promise<void> }> {
  const backend = await resources.backend('ws');
  let tunnelClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (tunnelClosed = resolve));
  backend.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    acceptWebSocket(req, socket);
    socket.on('data', (data) => socket.write(data));
    socket.on('error', () => socket.destroy());
    // The gateway closed its side (Node's HTTP server keeps a socket half-open after the peer's FIN).
    socket.on('end', () => {
      tunnelClosed();
      socket.end();
    });
  });
  return { url: backend.url, closed };
}

/** An upgraded connection through the gateway; `received` holds what came back after the 101. */
async function openTunnel(port: number): Promise<{ socket: net.Socket; received: () => string }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  let buffer = '';
  socket.on('data', (data: Buffer) => (buffer += data.toString('latin1')));
  socket.on('error', () => undefined);
  await expect.poll(() => buffer.includes('\r\n\r\n'), { timeout: 10_000 }).toBe(true);
  expect(buffer.startsWith('HTTP/1.1 101')).toBe(true);
  const headEnd = buffer.indexOf('\r\n\r\n') + 4;
  return { socket, received: () => buffer.slice(headEnd) };
}

function yaml(url: string, tunnel: string): string {
  return `pools:\n  web:\n    timeouts: { tunnel: ${tunnel} }\n    backends:\n      - { url: ${url}, id: ws }\n`;
}

describe('WebSocket tunnel timeout', () => {
  it('closes both sides of a tunnel that carries no byte for timeouts.tunnel', async () => {
    const backend = await echoBackend();
    const gw = await resources.gateway(yaml(backend.url, '300ms'));
    const openedAt = performance.now();
    const { socket } = await openTunnel(gw.port);
    await Promise.all([once(socket, 'close'), backend.closed]);
    // Not before the timeout: a tunnel is never cut while it may still be in use.
    expect(performance.now() - openedAt).toBeGreaterThanOrEqual(300);
  });

  it('keeps a tunnel open while bytes flow, for many times the timeout, and closes it once they stop', async () => {
    const backend = await echoBackend();
    const gw = await resources.gateway(yaml(backend.url, '1s'));
    const { socket, received } = await openTunnel(gw.port);
    let closed = false;
    socket.on('close', () => (closed = true));
    // A message every 100 ms for 3 s: traffic paced well inside the 1 s timeout.
    let sent = '';
    for (let i = 0; i < 30; i++) {
      const message = `m${i};`;
      sent += message;
      socket.write(message);
      await delay(100);
    }
    await expect.poll(received, { timeout: 10_000 }).toBe(sent);
    expect(closed).toBe(false);
    await Promise.all([once(socket, 'close'), backend.closed]);
  });
});
