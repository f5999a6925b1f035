// The fault-injecting relay the process tests put between peers: pass, delay, cut, blackhole, heal.

import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TcpRelay } from '../helpers/tcp-relay.js';

interface Conn {
  readonly socket: net.Socket;
  /** Resolves with the next `bytes` bytes received, or null if the socket closes or `timeoutMs` passes first. */
  read(bytes: number, timeoutMs: number): Promise<string | null>;
  readonly closed: Promise<void>;
}

function connect(port: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffered = '';
    let wake: (() => void) | null = null;
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      wake?.();
    });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((done) => socket.on('close', () => {
      done();
      wake?.();
    }));
    socket.once('connect', () =>
      resolve({
        socket,
        closed,
        read: (bytes, timeoutMs) =>
          new Promise((done) => {
            const timer = setTimeout(() => finish(null), timeoutMs);
            const finish = (value: string | null): void => {
              clearTimeout(timer);
              wake = null;
              done(value);
            };
            const check = (): void => {
              if (buffered.length >= bytes) {
                const out = buffered.slice(0, bytes);
                buffered = buffered.slice(bytes);
                finish(out);
              } else if (socket.destroyed) finish(null);
            };
            wake = check;
            check();
          }),
      }),
    );
    socket.once('error', reject);
  });
}

describe('TcpRelay', () => {
  let echo: net.Server;
  let relay: TcpRelay;

  beforeAll(async () => {
    echo = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    relay = new TcpRelay({ host: '127.0.0.1', port: (echo.address() as AddressInfo).port });
    await relay.start();
  });

  afterAll(async () => {
    await relay.close();
    echo.close();
  });

  it('passes bytes both ways, and holds them back by the delay', async () => {
    const conn = await connect(relay.port);
    conn.socket.write('ping');
    expect(await conn.read(4, 2_000)).toBe('ping');
    relay.setDelay(150);
    const began = Date.now();
    conn.socket.write('slow');
    expect(await conn.read(4, 3_000)).toBe('slow');
    // Each direction waits the delay once.
    expect(Date.now() - began).toBeGreaterThanOrEqual(290);
    relay.heal();
    conn.socket.destroy();
  });

  it('cut resets open connections and refuses new ones until healed', async () => {
    const conn = await connect(relay.port);
    relay.cut();
    await conn.closed;
    // The relay accepts and resets at once: the client sees the connection die, with or without a connect event first.
    const refused = net.connect(relay.port, '127.0.0.1');
    refused.on('error', () => undefined);
    await new Promise<void>((resolve) => refused.on('close', () => resolve()));
    expect(relay.stats().refused).toBeGreaterThan(0);
    relay.heal();
    const again = await connect(relay.port);
    again.socket.write('back');
    expect(await again.read(4, 2_000)).toBe('back');
    again.socket.destroy();
  });

  it('blackhole drops bytes silently; heal closes the damaged stream and lets new ones through', async () => {
    const conn = await connect(relay.port);
    relay.blackhole();
    conn.socket.write('lost');
    expect(await conn.read(4, 300)).toBeNull();
    expect(conn.socket.destroyed).toBe(false);
    expect(relay.stats().bytesDropped).toBeGreaterThanOrEqual(4);
    relay.heal();
    await conn.closed;
    const fresh = await connect(relay.port);
    fresh.socket.write('seen');
    expect(await fresh.read(4, 2_000)).toBe('seen');
    fresh.socket.destroy();
  });
});
