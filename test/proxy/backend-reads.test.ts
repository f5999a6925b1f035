// Reads of backend connections through the one shared buffer: every chunk a reader holds keeps its own bytes, in order,
// whatever later reads put in the buffer.

import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { COPIED_READS } from '../../src/proxy/backend-reads.js';

/** A server that sends `chunks` one at a time, each after the client acknowledged the one before, then ends. */
async function lockstepServer(chunks: readonly Buffer[]): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let next = 0;
    const sendNext = (): void => {
      if (next === chunks.length) socket.end();
      else socket.write(chunks[next++]!);
    };
    socket.on('data', sendNext);
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Connects with copied reads, acknowledges each chunk, and keeps every chunk it was given until the end. */
async function readAll(port: number): Promise<Buffer[]> {
  const socket = net.connect({ port, host: '127.0.0.1', onread: COPIED_READS });
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    socket.write('k');
  });
  await once(socket, 'connect');
  socket.write('k');
  await once(socket, 'end');
  socket.destroy();
  return received;
}

describe('copied backend reads', () => {
  it('keep each read its own bytes while the shared buffer takes the next ones', async () => {
    // Small reads (copied into Node's pooled memory) and larger ones (their own allocation), each a distinct pattern.
    const chunks = [10, 300, 4_000, 5_000, 20_000, 17].map((size, index) => Buffer.alloc(size, 0x61 + index));
    const server = await lockstepServer(chunks);
    try {
      const received = await readAll((server.address() as AddressInfo).port);
      expect(Buffer.concat(received).equals(Buffer.concat(chunks))).toBe(true);
      // Each chunk went out alone and was acknowledged before the next: one read each, held until the end.
      expect(received.map((chunk) => chunk.length)).toEqual(chunks.map((chunk) => chunk.length));
    } finally {
      server.close();
    }
  });

  it('carry more than the buffer holds, in several reads, byte for byte', async () => {
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >> 11)) & 0xff;
    const server = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = net.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', onread: COPIED_READS });
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      await once(socket, 'end');
      socket.destroy();
      expect(received.length).toBeGreaterThan(1);
      expect(Buffer.concat(received).equals(body)).toBe(true);
    } finally {
      server.close();
    }
  });
});
