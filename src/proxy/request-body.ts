// The client's request body as one attempt's upstream exchange reads it: pulled only once the request is being written, counted against the body limit, never destroying the client's request.

import type { IncomingMessage } from 'node:http';
import { Stream } from 'node:stream';

/** How a request body ended for the exchange that was reading it. */
export interface BodyEvents {
  /** The first chunk was taken from the client: a failure from now on cannot be retried with this body. */
  onBodyStarted(): void;
  /** More than `limit` bytes arrived on a body without Content-Length (a Content-Length over it never gets here). */
  onBodyOverLimit(limit: number): void;
}

/**
 * How much of the body may wait here while the backend's socket is full (one socket read) before the client's
 * request is paused. Each pause stops reading the client's socket and each resume starts it again (two epoll_ctl
 * calls and a window update from the kernel); with no room, a 1 MB upload paused at almost every chunk.
 */
const SLACK_BYTES = 64 * 1024;

/**
 * The client's IncomingMessage relayed chunk by chunk, with backpressure both ways: while its writer is paused, up to
 * SLACK_BYTES wait here, then the client's request itself is paused, so chunks are taken from the client only as fast
 * as the backend's socket takes them. Destroying it (undici does on any failure) detaches it from the client's
 * request instead of destroying that too, so the client can still be answered 502/504.
 *
 * A classic stream (node:stream's Stream: an EventEmitter with pipe()), not a Readable: undici's HTTP/1.1 writer
 * only listens for 'data', 'end' and 'error' and calls pause(), resume() and destroy(), and HTTP/2's pipeline()
 * pipes it. A Readable put each chunk through its buffer and each resume through a nextTick and its flow, which made
 * balancer's 1 MB upload cost more user CPU than its engine's (about 0.2 ms per MB).
 */
export class RequestBody extends Stream {
  /** Read by classic pipe(): it resumes on its destination's 'drain' only while this is true. */
  readable = true;
  /** Read by undici (util.isDestroyed) before it destroys a body, and by Node's end-of-stream checks. */
  destroyed = false;
  private readonly req: IncomingMessage;
  private readonly events: BodyEvents;
  /** 0: no limit (a Content-Length body was checked against it before forwarding). */
  private readonly limit: number;
  private received = 0;
  private attached = false;
  /** The writer's pause(): chunks wait in `waiting` until its resume(). */
  private writerPaused = false;
  private readonly waiting: Buffer[] = [];
  private waitingBytes = 0;
  /** The client's body ended while chunks were still waiting: 'end' follows the last of them. */
  private clientEnded = false;

  constructor(req: IncomingMessage, limit: number, events: BodyEvents) {
    super();
    this.req = req;
    this.limit = limit;
    this.events = events;
  }

  /** The writer starts (or, after the backend's socket drained, goes on) reading: the first call attaches. */
  resume(): this {
    // Ended or destroyed: nothing more to read (undici may still call this on a drain after it gave up).
    if (!this.readable) return this;
    if (!this.attached && !this.clientEnded) {
      this.attached = true;
      this.req.on('data', this.onData);
      this.req.on('end', this.onEnd);
      this.req.on('close', this.onClose);
    }
    this.writerPaused = false;
    // What waited goes first, until the writer is full again (or gives up: destroy() empties the list).
    while (this.waiting.length > 0 && !this.writerPaused) {
      const chunk = this.waiting.shift()!;
      this.waitingBytes -= chunk.length;
      this.emit('data', chunk);
    }
    if (this.writerPaused || !this.readable) return this;
    if (this.clientEnded) this.end();
    else this.req.resume();
    return this;
  }

  /** The backend's socket is full: chunks wait here, and the client's request stops once SLACK_BYTES wait. */
  pause(): this {
    this.writerPaused = true;
    return this;
  }

  /** HTTP/2's pipeline() pipes it: a classic stream flows from the start, this one once its writer is there. */
  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    super.pipe(destination, options);
    this.resume();
    return destination;
  }

  /**
   * The writer is done with it (the body ended, or the attempt failed): it lets go of the client's request, which
   * stays paused and whole, so the client may still be answered. The writer knows why: no event goes back to it.
   */
  destroy(): this {
    this.destroyed = true;
    this.readable = false;
    if (this.waiting.length > 0) {
      this.waiting.length = 0;
      this.waitingBytes = 0;
    }
    this.detach();
    return this;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.received === 0) this.events.onBodyStarted();
    this.received += chunk.length;
    if (this.limit > 0 && this.received > this.limit) {
      this.destroy();
      this.events.onBodyOverLimit(this.limit);
      return;
    }
    if (!this.writerPaused) {
      this.emit('data', chunk);
      return;
    }
    this.waiting.push(chunk);
    this.waitingBytes += chunk.length;
    if (this.waitingBytes >= SLACK_BYTES) this.req.pause();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    this.detach();
    if (this.waiting.length === 0) this.end();
  };

  /** Every byte went to the writer: 'end' once. */
  private end(): void {
    this.readable = false;
    this.emit('end');
  }

  /**
   * The client went away before its body ended: the backend must not take a truncated body as complete. The writer
   * hears it as an 'error' on the next tick, as a Readable's destroy(error) would tell it, never inside Node's 'close'.
   */
  private readonly onClose = (): void => {
    if (this.req.complete) return;
    this.destroy();
    process.nextTick(() => {
      if (this.listenerCount('error') > 0) this.emit('error', new Error('client closed the connection before its request body ended'));
    });
  };

  private detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.req.off('data', this.onData);
    this.req.off('end', this.onEnd);
    this.req.off('close', this.onClose);
    this.req.pause();
  }
}
