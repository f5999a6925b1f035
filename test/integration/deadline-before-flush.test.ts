// A route timeout or a gRPC deadline that comes due while a completely received response waits for the end-of-turn flush
// (upstream-exchange.ts, flushHeads) leaves that response alone: the client gets all of it, not a cut or a
// DEADLINE_EXCEEDED on top of it.
//
// Through real sockets the flush follows the read that completed the response in the same turn, so no timer can come
// between them by itself; a response completed in the check phase waits for the next turn's flush, after its timers.
// The test opens the same gap deterministically: the exchange's timers are vitest's fakes (setImmediate stays real), and
// a check that re-queues itself with setImmediate from the check phase always runs before a flush queued during the
// next turn's poll phase. When that check sees a response complete and waiting for its flush, it fires the timers there.

import http2 from 'node:http2';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UpstreamAttempt } from '../../src/proxy/upstream-exchange.js';
import { request } from '../helpers/backend.js';
import { perTestResources } from '../helpers/gateway.js';

const resources = perTestResources();

// Timers started under the fake clock (undici's own tick among them) never run once it is gone: nothing in this file
// waits for them after its call has fired them.
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/**
 * Fakes the timers the exchange will start from now on, and resolves once it has advanced them by `ms` at the first
 * check phase in which a response has come in whole and still waits for its flush. Bounded by event-loop turns.
 */
function fireTimersBeforeFlush(ms: number, maxTurns = 1_000_000): Promise<void> {
  // Records every attempt whose response completes; onComplete itself runs unchanged.
  const completed = vi.spyOn(UpstreamAttempt.prototype, 'onComplete');
  const attempts = completed.mock.contexts as UpstreamAttempt[];
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  return new Promise((resolve, reject) => {
    let turns = 0;
    const check = (): void => {
      if (attempts.some((attempt) => attempt.endQueued)) {
        vi.advanceTimersByTime(ms);
        resolve();
        return;
      }
      if (attempts.length > 0) {
        // Head and end came in different reads: the head went out in its own turn and the end was written at once.
        reject(new Error('the response completed in a later read than its head: no flush to wait for, nothing tested'));
        return;
      }
      turns += 1;
      if (turns === maxTurns) reject(new Error(`no response completed within ${maxTurns} event-loop turns`));
      else setImmediate(check);
    };
    // The request goes out after this, so its response comes in a later turn, after a check queued from a check phase.
    setImmediate(check);
  });
}

describe('a timer due while a complete response waits for its flush', () => {
  it('a route timeout leaves the response whole: 200 and the full body, no cut', async () => {
    const backend = await resources.backend('a');
    backend.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '6' });
      res.end('whole\n');
    });
    const gw = await resources.gateway(`routes:
  - match: { pathPrefix: / }
    timeout: 7s
    pool: web
pools:
  web:
    backends:
      - { url: ${backend.url}, id: a }
`);
    const fired = fireTimersBeforeFlush(7_000);
    const answer = request(`http://127.0.0.1:${gw.port}/x`);
    await fired;
    const { status, body } = await answer;
    expect({ status, body }).toEqual({ status: 200, body: 'whole\n' });
  });

  it('a gRPC deadline leaves the call whole: its message and grpc-status 0, not DEADLINE_EXCEEDED', async () => {
    const message = Buffer.from([0, 0, 0, 0, 3, 0x6f, 0x6b, 0x21]);
    // The deadline is the proxy's, whatever the backend speaks. An HTTP/1.1 backend sends the head, the message and the
    // trailers in one write, so they complete in one read; an h2c backend (Node's or grpc-js's) sends its trailers in a
    // later write, and the head would be flushed before the response completed.
    const backend = await resources.backend('g');
    backend.handle((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/grpc', trailer: 'grpc-status' });
        res.addTrailers({ 'grpc-status': '0' });
        res.end(message);
      });
    });
    const gw = await resources.gateway(`listeners:
  - { name: grpc, listen: "127.0.0.1:0", h2c: true }
pools:
  grpc:
    backends:
      - { url: ${backend.url}, id: g }
`);
    // The deadline is the proxy's: a bare HTTP/2 client keeps no timer of its own.
    const session = http2.connect(`http://127.0.0.1:${gw.app.listenerAddresses.get('grpc')!.port}`);
    try {
      const fired = fireTimersBeforeFlush(5_000);
      const call = new Promise<{ fields: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Say', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '5S' });
        let fields: Record<string, unknown> = {};
        const chunks: Buffer[] = [];
        stream.on('response', (headers) => (fields = { ...fields, ...headers }));
        stream.on('trailers', (trailers) => (fields = { ...fields, ...trailers }));
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('close', () => resolve({ fields, body: Buffer.concat(chunks) }));
        stream.on('error', reject);
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
      await fired;
      const { fields, body } = await call;
      expect(fields[':status']).toBe(200);
      expect(fields['grpc-status']).toBe('0');
      expect(body).toEqual(message);
    } finally {
      session.close();
    }
  });
});
