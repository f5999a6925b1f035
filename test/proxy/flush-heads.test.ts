// Response heads flushed together once the event loop's poll phase has handed over every read of the turn: the head
// and a small first chunk go out in one write, the end after it, and one response failing there does not leave the
// others hanging.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { UpstreamAttempt, type AttemptOwner } from '../../src/proxy/upstream-exchange.js';
import type { Upstream } from '../../src/proxy/upstream.js';
import type { TimeoutsConfig } from '../../src/config/schema.js';

/** A response whose end() may throw, as a broken socket might one day make Node's do; `calls` records the order. */
function fakeResponse(endThrows: boolean, calls: string[] = []) {
  return {
    destroyed: false,
    writableEnded: false,
    // Its socket takes every write at once: nothing is left unwritten after end().
    writableFinished: true,
    writeHead: vi.fn(() => calls.push('writeHead')),
    write: vi.fn((chunk: unknown, encoding?: string) => {
      calls.push(`write ${typeof chunk === 'string' ? `text:${chunk}` : 'bytes'}${encoding === undefined ? '' : ` ${encoding}`}`);
      return true;
    }),
    flushHeaders: vi.fn(() => calls.push('flushHeaders')),
    end: vi.fn(() => {
      calls.push('end');
      if (endThrows) throw new Error('end failed');
    }),
    destroy: vi.fn(),
    once: vi.fn(),
    off: vi.fn(),
  };
}

function attemptFor(res: ReturnType<typeof fakeResponse>, httpVersionMajor = 2): UpstreamAttempt {
  const owner = {
    // HTTP/2's compatibility response: the head goes through writeHead, flushed at the end of the turn like any.
    req: { httpVersionMajor, headers: {} } as unknown as IncomingMessage,
    res: res as unknown as ServerResponse,
    hasBody: false,
    maxBodySize: 0,
    closeAfterResponse: false,
    hostFromBackend: false,
    editResponseHeaders: () => 0,
    retryAnswer: () => false,
    bodyStarted: () => undefined,
    bodyOverLimit: () => undefined,
    attemptEnded: () => undefined,
    tailUnwritten: () => undefined,
  } as unknown as AttemptOwner;
  const upstream = { inflight: 1, http1Only: false } as unknown as Upstream;
  return new UpstreamAttempt(owner, upstream, { connectMs: 1000, responseMs: 1000, idleMs: 1000 } as TimeoutsConfig);
}

const HEAD = [Buffer.from('content-length'), Buffer.from('6')];
const nextTurnStage = () => new Promise((resolve) => setImmediate(resolve));

describe('heads flushed at the end of the turn', () => {
  it('a response whose end throws is cut, and the next response of the same turn still ends', async () => {
    const broken = fakeResponse(true);
    const healthy = fakeResponse(false);
    const first = attemptFor(broken);
    const second = attemptFor(healthy);
    // Both responses arrive whole in one turn: each end waits for the flush at the end of it.
    for (const attempt of [first, second]) {
      attempt.onHeaders(200, [Buffer.from('content-length'), Buffer.from('0')], () => undefined, 'OK');
      attempt.onComplete([]);
    }
    expect(healthy.end).not.toHaveBeenCalled();
    await nextTurnStage();
    expect(broken.destroy).toHaveBeenCalledTimes(1);
    expect(healthy.end).toHaveBeenCalledTimes(1);
    expect(healthy.destroy).not.toHaveBeenCalled();
  });

  it('holds an HTTP/1 head and its small first chunk past the reads and promise jobs of the turn, then writes them as one text before the end', async () => {
    const calls: string[] = [];
    const res = fakeResponse(false, calls);
    const attempt = attemptFor(res, 1);
    attempt.onHeaders(200, HEAD, () => undefined, 'OK');
    expect(attempt.onData(Buffer.from('hello\n'))).toBe(true);
    attempt.onComplete([]);
    // Promise jobs and ticks of the read that brought the response run before the poll phase ends: nothing written yet.
    await Promise.resolve();
    await new Promise((resolve) => process.nextTick(resolve));
    expect(calls).toEqual(['writeHead']);
    await nextTurnStage();
    expect(calls).toEqual(['writeHead', 'write text:hello\n latin1', 'end']);
  });

  it('a second chunk in the same turn goes out behind the held first one, in order', async () => {
    const calls: string[] = [];
    const res = fakeResponse(false, calls);
    const attempt = attemptFor(res, 1);
    attempt.onHeaders(200, HEAD, () => undefined, 'OK');
    attempt.onData(Buffer.from('abc'));
    attempt.onData(Buffer.from('def'));
    expect(calls).toEqual(['writeHead', 'write text:abc latin1', 'write bytes']);
    attempt.onComplete([]);
    await nextTurnStage();
    expect(calls).toEqual(['writeHead', 'write text:abc latin1', 'write bytes', 'end']);
  });

  it('a client gone before the flush gets nothing written', async () => {
    const res = fakeResponse(false);
    const attempt = attemptFor(res, 1);
    attempt.onHeaders(200, HEAD, () => undefined, 'OK');
    attempt.onData(Buffer.from('hello\n'));
    attempt.onComplete([]);
    res.destroyed = true;
    await nextTurnStage();
    expect(res.write).not.toHaveBeenCalled();
    expect(res.end).not.toHaveBeenCalled();
  });

  it('one end failing after its flushed write cuts that response only; the others of the turn end', async () => {
    const broken = fakeResponse(true);
    const healthy = fakeResponse(false);
    const attempts = [attemptFor(broken, 1), attemptFor(healthy, 1)];
    for (const attempt of attempts) {
      attempt.onHeaders(200, HEAD, () => undefined, 'OK');
      attempt.onData(Buffer.from('hello\n'));
      attempt.onComplete([]);
      expect(attempt.endQueued).toBe(true);
    }
    await nextTurnStage();
    expect(broken.destroy).toHaveBeenCalledTimes(1);
    expect(healthy.end).toHaveBeenCalledTimes(1);
    expect(healthy.destroy).not.toHaveBeenCalled();
    expect(attempts.map((attempt) => attempt.endQueued)).toEqual([false, false]);
  });
});
