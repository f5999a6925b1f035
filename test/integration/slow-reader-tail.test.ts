// A response the backend has completed, whose tail still waits in the proxy for a client that reads slowly: a route
// timeout (which bounds the wait for the backend) leaves it whole, and only the idle timeout cuts a client that takes
// none of that tail.
//
// Real sockets: the client is a paused raw socket, so the proxy's writes fill the kernel's buffers between them. The
// backend sends the body in small pieces, one at a time, until a piece stays in the proxy's own socket buffer (the
// kernel took no more), then ends the response: the proxy has the whole response and has called res.end(), but has
// not finished writing it. Timers (the route timeout, the idle guard) are vitest's fakes, fired once that state is
// reached; setImmediate stays real and paces the backend.

import dc from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { perTestResources } from '../helpers/gateway.js';

const resources = perTestResources();

afterEach(() => {
  vi.useRealTimers();
});

/** Small enough that a piece buffered in the proxy never reaches the socket's 16 KB high-water mark (no pause). */
const PIECE = 4 * 1024;
/** Far beyond any loopback socket buffers: the backend gives up here rather than loop without end. */
const MAX_BODY = 64 * 1024 * 1024;
const MAX_TURNS = 1_000_000;

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Resolves at the first check phase in which `ready()` holds; bounded by event-loop turns. */
async function turnsUntil(ready: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < MAX_TURNS; turn++) {
    if (ready()) return;
    await nextTurn();
  }
  throw new Error(`${what}: not within ${MAX_TURNS} event-loop turns`);
}

/** The proxy's responses to its clients, as Node's HTTP server publishes them (the backend's are left out). */
function watchProxyResponses(proxyPort: number): { responses: ServerResponse[]; stop(): void } {
  const responses: ServerResponse[] = [];
  const onStart = (message: unknown): void => {
    // Published before the response is given its socket.
    const { response, socket } = message as { response: ServerResponse; socket: net.Socket };
    if (socket.localPort === proxyPort) responses.push(response);
  };
  dc.subscribe('http.server.request.start', onStart);
  return { responses, stop: () => dc.unsubscribe('http.server.request.start', onStart) };
}

/** Decodes a chunked body; null when it is cut short (no last chunk). */
function dechunk(body: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line at byte ${at}`);
    if (size === 0) return Buffer.concat(parts);
    if (lineEnd + 2 + size + 2 > body.length) return null;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

interface StalledExchange {
  /** What the backend sent, in order. */
  readonly sent: Buffer;
  /** The proxy's response to the client: ended, its tail still in the proxy's socket buffer. */
  readonly proxied: ServerResponse;
  /** Everything the client receives once it reads again, until the connection closes. */
  readAll(): Promise<Buffer>;
}

/**
 * Sends one request from a client that reads nothing, and resolves once the backend has answered it completely and
 * the proxy has ended its response with part of it still unwritten.
 */
async function completeBehindStalledClient(timeouts: { routeTimeout: string | null; idle: string }): Promise<StalledExchange> {
  const backend = await resources.backend('slow');
  const pieces: Buffer[] = [];
  let backendDone = false;
  let backendGaveUp: Error | null = null;
  const route = timeouts.routeTimeout === null ? '' : `routes:\n  - { match: { pathPrefix: / }, timeout: ${timeouts.routeTimeout}, pool: web }\n`;
  const gw = await resources.gateway(`${route}pools:
  web:
    timeouts: { idle: ${timeouts.idle} }
    backends:
      - { url: ${backend.url}, id: slow }
`);
  const watch = watchProxyResponses(gw.port);

  backend.handle((_req: IncomingMessage, res: ServerResponse) => {
    // No Content-Length: the backend ends when it sees a piece held in the proxy.
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    void (async () => {
      try {
        let total = 0;
        for (;;) {
          const piece = Buffer.alloc(PIECE, pieces.length % 251);
          pieces.push(piece);
          total += piece.length;
          await turnsUntil(() => watch.responses.length === 1, 'the proxy to start its response');
          const socket = watch.responses[0]!.socket!;
          const before = socket.bytesWritten;
          res.write(piece);
          // bytesWritten counts what the proxy handed its socket, written or buffered: the piece has been relayed.
          await turnsUntil(() => socket.bytesWritten >= before + piece.length, 'the proxy to relay a piece');
          // Past the turn that relayed it (Node uncorks on the next tick): something left is the kernel's refusal.
          if (socket.writableLength > 0) break;
          if (total >= MAX_BODY) throw new Error(`the proxy wrote ${total} bytes without any staying in its buffer`);
        }
        res.end();
      } catch (error) {
        backendGaveUp = error as Error;
        res.destroy();
      } finally {
        backendDone = true;
      }
    })();
  });

  // The route timeout and the idle guard are started from here on under the fake clock.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  const client = net.connect(gw.port, '127.0.0.1');
  client.pause();
  const received: Buffer[] = [];
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.on('error', () => undefined);
  client.write('GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n');

  await turnsUntil(() => backendDone, 'the backend to finish');
  watch.stop();
  if (backendGaveUp !== null) throw backendGaveUp;
  const proxied = watch.responses[0]!;
  await turnsUntil(() => proxied.writableEnded, 'the proxy to end its response');
  expect(proxied.writableFinished).toBe(false);
  return {
    sent: Buffer.concat(pieces),
    proxied,
    async readAll() {
      client.on('data', (chunk: Buffer) => received.push(chunk));
      client.resume();
      await closed;
      return Buffer.concat(received);
    },
  };
}

function bodyOf(raw: Buffer): Buffer | null {
  const headEnd = raw.indexOf('\r\n\r\n');
  expect(raw.subarray(0, raw.indexOf('\r\n')).toString('latin1')).toBe('HTTP/1.1 200 OK');
  expect(raw.subarray(0, headEnd).toString('latin1').toLowerCase()).toContain('transfer-encoding: chunked');
  return dechunk(raw.subarray(headEnd + 4));
}

describe('a complete response whose tail waits for a slow client', () => {
  it('survives the route timeout: the client that reads again gets all of it', async () => {
    const exchange = await completeBehindStalledClient({ routeTimeout: '2s', idle: '30s' });
    // The route timeout comes due while the client still reads nothing: the backend is done, nothing to bound.
    vi.advanceTimersByTime(2_000);
    expect(exchange.proxied.destroyed).toBe(false);
    const body = bodyOf(await exchange.readAll());
    expect(body?.length).toBe(exchange.sent.length);
    expect(body?.equals(exchange.sent)).toBe(true);
  });

  it('is cut after the idle timeout when the client takes none of the tail', async () => {
    const exchange = await completeBehindStalledClient({ routeTimeout: null, idle: '3s' });
    vi.advanceTimersByTime(2_999);
    expect(exchange.proxied.destroyed).toBe(false);
    vi.advanceTimersByTime(1);
    expect(exchange.proxied.destroyed).toBe(true);
    // What the kernel already held still arrives; the end of the body never does.
    const body = bodyOf(await exchange.readAll());
    expect(body).toBeNull();
  });
});
