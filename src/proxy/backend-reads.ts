// Reads from plain-TCP backend connections: small reads through one buffer shared by all of them, bulk reads handed on.

import type { Socket } from 'node:net';

/**
 * Without this, Node allocates a 64 KiB backing store for every read of every socket (malloc), shrinks it to what was
 * read (realloc) and wraps it in an ArrayBuffer of its own, which V8 tracks and frees on a helper thread after a
 * scavenge. A backend's answer to an ordinary request is a few hundred bytes: copied out of one reused buffer into
 * Node's pooled Buffer memory, it costs no malloc, no ArrayBuffer and no sweep. One buffer serves every connection: a
 * read is copied out before the next one starts (the loop runs one callback at a time).
 *
 * A large body is the other way round: copying 64 KiB costs more than allocating it, so once a read fills the buffer
 * (the kernel held more than it could take: a body is streaming) that connection's next read goes to a buffer of its
 * own, which is handed on as it is. The first read that does not fill it returns the connection to the shared buffer,
 * so an idle connection holds no buffer of its own. A connection holds one 64 KiB buffer it has not read into yet only
 * between a full read and the next: mid-body, or stalled by a slow client (undici reads with socket.read(), so Node
 * stops reading after every 64 KiB push until the parser asks for more; with Node's own reads it would hold none).
 */
const READ_SIZE = 64 * 1024;
const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(READ_SIZE);

/** Below this a read into a connection's own buffer is copied out anyway, so a small chunk never pins 64 KiB. */
const HANDED_ON_MIN = 16 * 1024;

/** Where the read being handled says its connection's next read goes; Node asks (bufferForNextRead) right after. */
let nextReadBuffer: Buffer = SHARED_READ_BUFFER;

function onBackendRead(this: Socket, bytes: number, buffer: Buffer): boolean {
  let chunk: Buffer;
  if (buffer !== SHARED_READ_BUFFER && bytes >= HANDED_ON_MIN) {
    chunk = buffer.subarray(0, bytes);
  } else {
    chunk = Buffer.allocUnsafe(bytes);
    buffer.copy(chunk, 0, 0, bytes);
  }
  // Pushed as Node pushes its own reads: false stops reading until the stream's reader asks again.
  const more = this.push(chunk);
  // Decided after the push: a connection opened from inside it (a queued request dispatched) starts on the shared one.
  nextReadBuffer = bytes === READ_SIZE ? Buffer.allocUnsafeSlow(READ_SIZE) : SHARED_READ_BUFFER;
  return more;
}

/** Node calls it once when the connection opens and again after each read (onBackendRead), for the same connection. */
function bufferForNextRead(): Buffer {
  const buffer = nextReadBuffer;
  nextReadBuffer = SHARED_READ_BUFFER;
  return buffer;
}

/** net.connect's `onread` for backend connections. */
export const BACKEND_READS = { buffer: bufferForNextRead, callback: onBackendRead } as const;
