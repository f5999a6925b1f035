// Response heads flushed together at the end of a read: one response failing there does not leave the others hanging.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { UpstreamAttempt, type AttemptOwner } from '../../src/proxy/upstream-exchange.js';
import type { Upstream } from '../../src/proxy/upstream.js';
import type { TimeoutsConfig } from '../../src/config/schema.js';

/** A response whose end() may throw, as a broken socket might one day make Node's do. */
function fakeResponse(endThrows: boolean) {
  return {
    destroyed: false,
    writableEnded: false,
    writeHead: vi.fn(),
    write: vi.fn(() => true),
    flushHeaders: vi.fn(),
    end: vi.fn(() => {
      if (endThrows) throw new Error('end failed');
    }),
    destroy: vi.fn(),
    once: vi.fn(),
    off: vi.fn(),
  };
}

function attemptFor(res: ReturnType<typeof fakeResponse>): UpstreamAttempt {
  const owner = {
    // HTTP/2's compatibility response: the head goes through writeHead, flushed at the end of the read like any.
    req: { httpVersionMajor: 2, headers: {} } as unknown as IncomingMessage,
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
  } as unknown as AttemptOwner;
  const upstream = { inflight: 1, http1Only: false } as unknown as Upstream;
  return new UpstreamAttempt(owner, upstream, { connectMs: 1000, responseMs: 1000, idleMs: 1000 } as TimeoutsConfig);
}

describe('heads flushed at the end of a read', () => {
  it('a response whose end throws is cut, and the next response of the same read still ends', async () => {
    const broken = fakeResponse(true);
    const healthy = fakeResponse(false);
    const first = attemptFor(broken);
    const second = attemptFor(healthy);
    // Both responses arrive whole in one read: each end waits for the flush at the end of that read.
    for (const attempt of [first, second]) {
      attempt.onHeaders(200, [Buffer.from('content-length'), Buffer.from('0')], () => undefined, 'OK');
      attempt.onComplete([]);
    }
    expect(healthy.end).not.toHaveBeenCalled();
    await new Promise((resolve) => setImmediate(resolve));
    expect(broken.destroy).toHaveBeenCalledTimes(1);
    expect(healthy.end).toHaveBeenCalledTimes(1);
    expect(healthy.destroy).not.toHaveBeenCalled();
  });
});
