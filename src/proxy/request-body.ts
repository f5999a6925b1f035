// The client's request body as one attempt's upstream exchange reads it: pulled only once the request is being written, counted against the body limit, never destroying the client's request.

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/** How a request body ended for the exchange that was reading it. */
export interface BodyEvents {
  /** The first chunk was taken from the client: a failure from now on cannot be retried with this body. */
  onBodyStarted(): void;
  /** More than `limit` bytes arrived on a body without Content-Length (a Content-Length over it never gets here). */
  onBodyOverLimit(limit: number): void;
}

/**
 * A Readable over the client's IncomingMessage with backpressure both ways: chunks are pulled from the client only
 * as fast as the backend's socket takes them. Destroying it (undici does on any failure) detaches it from the
 * client's request instead of destroying that too, so the client can still be answered 502/504.
 */
export class RequestBody extends Readable {
  private readonly req: IncomingMessage;
  private readonly events: BodyEvents;
  /** 0: no limit (a Content-Length body was checked against it before forwarding). */
  private readonly limit: number;
  private received = 0;
  private attached = false;

  constructor(req: IncomingMessage, limit: number, events: BodyEvents) {
    // Up to one socket read (64 KiB) may wait here while the backend's socket is full. With no room at all (0) every
    // chunk paused and resumed the client's request, a nextTick and a stream flow each, which made a 1 MB upload cost
    // more CPU than the naive proxy's pipe; backpressure still stops the client once this much waits.
    super({ highWaterMark: 64 * 1024 });
    this.req = req;
    this.limit = limit;
    this.events = events;
  }

  override _read(): void {
    if (!this.attached) {
      this.attached = true;
      this.req.on('data', this.onData);
      this.req.on('end', this.onEnd);
      this.req.on('close', this.onClose);
    }
    this.req.resume();
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.received === 0) this.events.onBodyStarted();
    this.received += chunk.length;
    if (this.limit > 0 && this.received > this.limit) {
      this.detach();
      this.events.onBodyOverLimit(this.limit);
      return;
    }
    if (!this.push(chunk)) this.req.pause();
  };

  private readonly onEnd = (): void => {
    this.detach();
    this.push(null);
  };

  /** The client went away before its body ended: the backend must not take a truncated body as complete. */
  private readonly onClose = (): void => {
    if (this.req.complete) return;
    this.detach();
    this.destroy(new Error('client closed the connection before its request body ended'));
  };

  private detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.req.off('data', this.onData);
    this.req.off('end', this.onEnd);
    this.req.off('close', this.onClose);
    this.req.pause();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.detach();
    callback(error);
  }
}
