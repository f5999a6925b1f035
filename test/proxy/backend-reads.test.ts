// Reads of backend connections (the shared buffer for small reads, a buffer of its own for a streaming body): every chunk
// a reader holds keeps its own bytes, in order, whatever later reads of any connection put in any buffer.

import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { BACKEND_READS } from '../../src/proxy/backend-reads.js';

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

/** Connects with the backend reads, acknowledges each chunk, and keeps every chunk it was given until the end. */
async function readAll(port: number): Promise<Buffer[]> {
  const socket = net.connect({ port, host: '127.0.0.1', onread: BACKEND_READS });
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

/** Bytes that differ with their position, so a chunk overwritten by a later read does not compare equal. */
function positionPattern(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 11)) & 0xff;
  return bytes;
}

describe('backend reads', () => {
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
    const body = positionPattern(1024 * 1024);
    const server = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = net.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', onread: BACKEND_READS });
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

  it('keep a streaming body and another connection\'s small answers apart while both read', async () => {
    // The body arrives in 64 KiB reads (buffers of its own) while the other connection reads small answers through the
    // shared buffer; a buffer given to two connections would show as a body byte overwritten.
    const body = positionPattern(3 * 1024 * 1024);
    const bodyChunks = [0, 1, 2].map((index) => body.subarray(index * 1024 * 1024, (index + 1) * 1024 * 1024));
    const answers = Array.from({ length: 30 }, (_, index) => Buffer.alloc(50 + index * 37, 0x41 + (index % 26)));
    const bulkServer = await lockstepServer(bodyChunks);
    const smallServer = await lockstepServer(answers);
    try {
      const [bulk, small] = await Promise.all([
        readAll((bulkServer.address() as AddressInfo).port),
        readAll((smallServer.address() as AddressInfo).port),
      ]);
      expect(Buffer.concat(bulk).equals(body)).toBe(true);
      expect(Buffer.concat(small).equals(Buffer.concat(answers))).toBe(true);
    } finally {
      bulkServer.close();
      smallServer.close();
    }
  });

  it('hand a full read on without a copy, give each connection its own next buffer, and go back to the shared one', () => {
    const pushed: Buffer[] = [];
    const socket = { push: (chunk: Buffer): boolean => (pushed.push(chunk), true) };
    const read = (bytes: number, buffer: Buffer): Buffer => {
      buffer.fill(bytes & 0xff, 0, bytes);
      BACKEND_READS.callback.call(socket as unknown as net.Socket, bytes, buffer);
      return BACKEND_READS.buffer();
    };
    const shared = BACKEND_READS.buffer();
    expect(BACKEND_READS.buffer()).toBe(shared); // a connection opening: the shared buffer, every time

    const own = read(64 * 1024, shared); // a full read through the shared buffer is copied out ...
    expect(pushed[0]!.buffer).not.toBe(shared.buffer);
    expect(own).not.toBe(shared); // ... and sends that connection's next read to a buffer of its own
    expect(BACKEND_READS.buffer()).toBe(shared); // which no other connection is given

    const nextOwn = read(64 * 1024, own); // full again: handed on as it is, and a new one for the next read
    expect(pushed[1]!.buffer).toBe(own.buffer);
    expect(nextOwn).not.toBe(own);
    expect(nextOwn).not.toBe(shared);

    const afterPartial = read(20_000, nextOwn); // a bulk read that does not fill it: handed on, back to the shared one
    expect(pushed[2]!.buffer).toBe(nextOwn.buffer);
    expect(pushed[2]!.length).toBe(20_000);
    expect(afterPartial).toBe(shared);

    const tail = read(64 * 1024, shared);
    expect(read(300, tail)).toBe(shared); // a small read into a buffer of its own is copied: it never pins 64 KiB
    expect(pushed[4]!.buffer).not.toBe(tail.buffer);
    expect(pushed.map((chunk) => chunk.length)).toEqual([64 * 1024, 64 * 1024, 20_000, 64 * 1024, 300]);
    expect(pushed.every((chunk) => chunk[0] === (chunk.length & 0xff) && chunk[chunk.length - 1] === (chunk.length & 0xff))).toBe(true);
  });
});
