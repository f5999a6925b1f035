// Reads from plain-TCP backend connections into one buffer shared by all of them, each read copied out at its size.

import type { Socket } from 'node:net';

/**
 * Without it, Node allocates a 64 KiB backing store for every read of every socket (malloc), shrinks it to what was
 * read (realloc) and wraps it in an ArrayBuffer of its own, which V8 tracks and frees on a helper thread after a
 * scavenge. A backend's answer to an ordinary request is a few hundred bytes: copied out of one reused buffer into
 * Node's pooled Buffer memory, it costs no malloc, no ArrayBuffer and no sweep. The copy is pushed into the socket's
 * stream as Node itself pushes a read (readers, backpressure and end are unchanged). One buffer serves every
 * connection: a read is copied out before the next one starts (the loop runs one callback at a time).
 */
const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

function pushCopy(this: Socket, bytes: number, buffer: Buffer): boolean {
  const chunk = Buffer.allocUnsafe(bytes);
  buffer.copy(chunk, 0, 0, bytes);
  // false stops reading until the stream's reader asks again, as for Node's own reads.
  return this.push(chunk);
}

/** net.connect's `onread` for backend connections. */
export const COPIED_READS = { buffer: SHARED_READ_BUFFER, callback: pushCopy } as const;
