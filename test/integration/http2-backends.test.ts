// HTTP/2 to backends (pools.NAME.protocol h2c and h2): requests with a body or without share sessions, a request with a
// body never waits behind another stream, a backend's stream limit is kept, one stream's failure leaves the session to
// the others, GOAWAY and REFUSED_STREAM are honoured, and an h2 backend that picks HTTP/1.1 is never pipelined to.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { acceptWebSocket, closeServer, request, type SimpleResponse } from '../helpers/backend.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';

const resources = perTestResources();

let dir: string;
let certs: TestCerts;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-h2-backends-'));
  certs = makeCerts(dir, 'backend');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * An HTTP/2 backend that counts its sessions and holds each request whose path starts with /held until `release` (or
 * until `releaseAt` streams are held at once), a POST once its body has ended; other requests are answered at once,
 * a POST with its body's length. `refuseStreams` refuses every stream with RST_STREAM REFUSED_STREAM.
 */
interface H2Backend {
  readonly url: string;
  readonly sessions: number;
  readonly peakHeld: number;
  /** Streams the gateway cancelled before they ended. */
  readonly aborted: number;
  /** Streams refused (refuseStreams). */
  readonly refused: number;
  release(): void;
  /** Destroys every session with its streams in flight, as a backend that stops abruptly. */
  cutSessions(): void;
  /** Sends GOAWAY on every session (streams in flight may finish); resolves once the gateway has answered with its own. */
  goAway(): Promise<void>;
  /** Streams whose request head arrived. */
  readonly streams: number;
  /** Sessions that have closed. */
  readonly closedSessions: number;
  close(): Promise<void>;
}

/**
 * `raceGoAway`: the first GET /race to reach a backend that holds a stream on the same session gets a GOAWAY whose
 * last stream is the held one, as a backend shutting down just as the request arrived: the request was not processed.
 * Shared by the backends of a test, so it happens once.
 */
async function startH2Backend(
  options: { tls?: TestCerts; maxConcurrentStreams?: number; releaseAt?: number; refuseStreams?: boolean; raceGoAway?: { done: boolean } } = {},
): Promise<H2Backend> {
  const settings = options.maxConcurrentStreams === undefined ? {} : { settings: { maxConcurrentStreams: options.maxConcurrentStreams } };
  const server =
    options.tls === undefined
      ? http2.createServer(settings)
      : http2.createSecureServer({ ...settings, cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) });
  const sessions = new Set<http2.ServerHttp2Session>();
  let peakHeld = 0;
  let aborted = 0;
  let refused = 0;
  let streams = 0;
  const held: http2.ServerHttp2Stream[] = [];
  const release = (): void => {
    for (const stream of held.splice(0)) if (!stream.closed) stream.respond({ ':status': 200 }, { endStream: true });
  };
  let closedSessions = 0;
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => closedSessions++);
  });
  const hold = (stream: http2.ServerHttp2Stream): void => {
    held.push(stream);
    peakHeld = Math.max(peakHeld, held.length);
    if (options.releaseAt !== undefined && held.length >= options.releaseAt) release();
  };
  server.on('stream', (stream, headers) => {
    stream.on('error', () => stream.destroy());
    stream.on('aborted', () => aborted++);
    streams++;
    if (options.refuseStreams === true) {
      refused++;
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const path = String(headers[':path']);
    const heldHere = held.find((other) => other.session === stream.session);
    if (path === '/race' && options.raceGoAway?.done === false && heldHere !== undefined) {
      options.raceGoAway.done = true;
      stream.session!.goaway(http2.constants.NGHTTP2_NO_ERROR, heldHere.id);
      return;
    }
    if (headers[':method'] === 'POST') {
      let length = 0;
      stream.on('data', (chunk: Buffer) => (length += chunk.length));
      if (path.startsWith('/held')) {
        stream.on('end', () => hold(stream));
        return;
      }
      stream.on('end', () => stream.end(String(length)));
      stream.respond({ ':status': 200 });
      return;
    }
    if (path.startsWith('/big/')) {
      // /big/N: N bytes of a repeating pattern, written as fast as flow control lets them go.
      stream.respond({ ':status': 200 });
      stream.end(pattern(Number(path.slice('/big/'.length))));
      return;
    }
    if (!path.startsWith('/held')) {
      stream.respond({ ':status': 200 }, { endStream: true });
      return;
    }
    hold(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const scheme = options.tls === undefined ? 'http' : 'https';
  return {
    url: `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get sessions() {
      return sessions.size;
    },
    get peakHeld() {
      return peakHeld;
    },
    get aborted() {
      return aborted;
    },
    get refused() {
      return refused;
    },
    release,
    get streams() {
      return streams;
    },
    get closedSessions() {
      return closedSessions;
    },
    goAway: async () => {
      // Node's client answers a GOAWAY with its own once it has read it: from then on it opens no stream there.
      await Promise.all(
        [...sessions].map((session) => {
          const answered = once(session, 'goaway');
          session.close();
          return answered;
        }),
      );
    },
    cutSessions: () => {
      held.splice(0);
      for (const session of sessions) session.destroy();
    },
    close: async () => {
      release();
      // The gateway keeps its sessions open: close() alone would wait for them.
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `length` bytes of the bytes 0-250 repeated, so a byte out of place shows. */
function pattern(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = i % 251;
  return bytes;
}

const backendsToClose: H2Backend[] = [];
afterEach(async () => {
  for (const backend of backendsToClose.splice(0)) await backend.close();
});

/** An HTTP/2 test backend closed after the test. */
async function h2Backend(options: Parameters<typeof startH2Backend>[0] = {}): Promise<H2Backend> {
  const backend = await startH2Backend(options);
  backendsToClose.push(backend);
  return backend;
}

function poolYaml(protocol: 'h2' | 'h2c', url: string, extra = ''): string {
  return `pools:\n  web:\n    protocol: ${protocol}\n    retries: 0\n${extra}    backends:\n      - { url: ${url}, id: b }\n`;
}

/** A gateway for `yaml` that has made its first connection to the backend (so later requests find it open). */
async function warmedGateway(yaml: string): Promise<TestGateway> {
  const gw = await resources.gateway(yaml);
  expect((await request(`${gw.url}/warm-up`)).status).toBe(200);
  return gw;
}

/** `count` requests at once for /held/N, the paths the test backends hold until released. */
function heldRequests(gw: TestGateway, count: number): Promise<SimpleResponse[]> {
  return Promise.all(Array.from({ length: count }, (_unused, index) => request(`${gw.url}/held/${index}`)));
}

describe('HTTP/2 to backends', () => {
  it('h2c: concurrent requests without a body share one session', async () => {
    const backend = await h2Backend({ releaseAt: 30 });
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    // 30 requests held open together at the backend, each answered only once all 30 are there.
    const answers = await heldRequests(gw, 30);
    expect(answers.map((answer) => answer.status)).toEqual(Array(30).fill(200));
    expect(backend.peakHeld).toBe(30);
    expect(backend.sessions).toBe(1);
  });

  it('h2: concurrent requests share one TLS session too (ALPN h2)', async () => {
    const backend = await h2Backend({ tls: certs, releaseAt: 20 });
    const gw = await warmedGateway(poolYaml('h2', backend.url, `    tls: { ca: ${certs.ca} }\n`));
    const answers = await heldRequests(gw, 20);
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    expect(backend.sessions).toBe(1);
  });

  it('a request with a body is answered while a long stream holds the session it would have shared', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const long = request(`${gw.url}/held/stream`);
    await expect.poll(() => backend.peakHeld, { timeout: 10_000 }).toBe(1);
    // undici 7 sent a request with a streamed body only on a session with nothing else in flight; there this POST
    // would have waited for the held stream, which ends only after it.
    const posted = await request(`${gw.url}/upload`, { method: 'POST', body: 'x'.repeat(1000) });
    expect(posted).toMatchObject({ status: 200, body: '1000' });
    // A bodiless request of a method other than GET shares the session too.
    expect((await request(`${gw.url}/remove`, { method: 'DELETE' })).status).toBe(200);
    backend.release();
    expect((await long).status).toBe(200);
  });

  it('h2c: concurrent requests with a body (as gRPC calls are) share one session with the rest', async () => {
    const backend = await h2Backend({ releaseAt: 30 });
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    // 30 uploads held at the backend together, each answered only once all 30 bodies are in.
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_unused, index) => request(`${gw.url}/held/upload-${index}`, { method: 'POST', body: 'x'.repeat(10_000) })),
    );
    expect(answers.map((answer) => answer.status)).toEqual(Array(30).fill(200));
    expect(backend.peakHeld).toBe(30);
    // The warm-up GET's session carried them all, and /metrics counts it as the one connection.
    expect(backend.sessions).toBe(1);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toContain('balancer_backend_connections{pool="web",backend="b"} 1\n');
  });

  it('8 MB each way on one session, beyond every flow-control window, arrive whole while small requests share it', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const size = 8 * 1024 * 1024;
    const download = new Promise<Buffer>((resolve, reject) => {
      http.get(`${gw.url}/big/${size}`, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      }).on('error', reject);
    });
    const upload = request(`${gw.url}/upload`, { method: 'POST', body: pattern(size) });
    const small = await Promise.all(Array.from({ length: 5 }, (_unused, index) => request(`${gw.url}/small/${index}`)));
    expect(small.map((answer) => answer.status)).toEqual(Array(5).fill(200));
    expect((await download).equals(pattern(size))).toBe(true);
    expect(await upload).toMatchObject({ status: 200, body: String(size) });
    expect(backend.sessions).toBe(1);
  });

  it('a client gone mid-upload has its stream cancelled at the backend; the session carries on', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const upload = http.request(`${gw.url}/held/partial`, { method: 'POST', headers: { 'content-length': '100000' }, agent: false });
    upload.on('error', () => undefined);
    upload.write('x'.repeat(1000));
    await expect.poll(() => backend.streams, { timeout: 10_000 }).toBe(2);
    upload.destroy();
    await expect.poll(() => backend.aborted, { timeout: 10_000 }).toBe(1);
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(backend.sessions).toBe(1);
  });

  it('GOAWAY from the backend: the stream in flight finishes, the next request gets a new session', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const long = request(`${gw.url}/held/through-goaway`);
    await expect.poll(() => backend.peakHeld, { timeout: 10_000 }).toBe(1);
    await backend.goAway();
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(backend.sessions).toBe(2);
    backend.release();
    expect((await long).status).toBe(200);
  });

  it('a stream the backend refuses (REFUSED_STREAM) is sent to another backend: it was never processed', async () => {
    const refusing = await h2Backend({ refuseStreams: true });
    const serving = await h2Backend();
    const yaml = `pools:\n  web:\n    protocol: h2c\n    retries: 1\n    healthCheck: { path: /healthz, interval: 60s }\n    backends:\n      - { url: ${refusing.url}, id: refusing }\n      - { url: ${serving.url}, id: serving }\n`;
    const gw = await resources.gateway(yaml);
    // POST is not idempotent: only a request the backend never processed may be sent again.
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await request(`${gw.url}/item/${i}`, { method: 'POST' }));
    expect(answers.map((answer) => answer.status)).toEqual(Array(4).fill(200));
    expect(refusing.refused).toBeGreaterThan(0);
  });

  it('a field HTTP/2 forbids in a client\'s HTTP/1.1 request is left out rather than failing the request', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    // Node's HTTP/2 client throws on HTTP2-Settings (an h2c upgrade's field, not named in Connection here).
    const answer = await request(`${gw.url}/fields`, { headers: { 'http2-settings': 'AAMAAABkAAQAAP__' } });
    expect(answer.status).toBe(200);
  });

  it('a session left unused is closed by the gateway; the next request opens another', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    // Closed after 4 s unused (DEFAULTS.upstream.freeSocketTimeoutMs), before a backend's own idle timeout races it.
    await expect.poll(() => backend.closedSessions, { timeout: 15_000, interval: 100 }).toBe(1);
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(backend.sessions).toBe(2);
  });

  it('a response over the response timeout is a 504 for that stream only: the session serves the next request', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url, '    timeouts: { response: 300ms }\n'));
    const late = await request(`${gw.url}/held/late`);
    expect(late.status).toBe(504);
    expect(JSON.parse(late.body).error.code).toBe('UPSTREAM_RESPONSE_TIMEOUT');
    await expect.poll(() => backend.aborted, { timeout: 10_000 }).toBe(1);
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(backend.sessions).toBe(1);
  });

  it('a request the backend left out of its GOAWAY (above its last stream) is retried on another backend', async () => {
    const raceGoAway = { done: false };
    const first = await h2Backend({ raceGoAway });
    const second = await h2Backend({ raceGoAway });
    const yaml = `pools:\n  web:\n    protocol: h2c\n    retries: 1\n    healthCheck: { path: /healthz, interval: 60s }\n    backends:\n      - { url: ${first.url}, id: first }\n      - { url: ${second.url}, id: second }\n`;
    const gw = await resources.gateway(yaml);
    // One held stream on each backend (round-robin), then the race request on one of them.
    const held = heldRequests(gw, 2);
    await expect.poll(() => first.peakHeld + second.peakHeld, { timeout: 10_000 }).toBe(2);
    // POST: not idempotent, so only a request the backend did not process may go to the other one.
    const raced = await request(`${gw.url}/race`, { method: 'POST' });
    expect(raced.status).toBe(200);
    expect(raceGoAway.done).toBe(true);
    // The streams the backend kept finish on the session it is closing.
    first.release();
    second.release();
    expect((await held).map((answer) => answer.status)).toEqual([200, 200]);
  });

  it('a session cut with many streams in flight fails each of them at once, and the next request gets a new session', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const inFlight = heldRequests(gw, 10);
    await expect.poll(() => backend.peakHeld, { timeout: 10_000 }).toBe(10);
    expect(backend.sessions).toBe(1);
    backend.cutSessions();
    // With no other backend to retry on, each is answered 502; none is left waiting on the dead session.
    expect((await inFlight).map((answer) => answer.status)).toEqual(Array(10).fill(502));
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(backend.sessions).toBe(2);
  });

  it('keeps to a backend\'s limit on concurrent streams: the rest wait for a free stream, none fails', async () => {
    const backend = await h2Backend({ maxConcurrentStreams: 4, releaseAt: 4 });
    const gw = await warmedGateway(poolYaml('h2c', backend.url));
    const answers = await heldRequests(gw, 12);
    expect(answers.map((answer) => answer.status)).toEqual(Array(12).fill(200));
    expect(backend.peakHeld).toBe(4);
  });

  it('connections.max bounds the sessions: with one, 150 requests take 100 streams on it and the rest wait for free ones', async () => {
    const backend = await h2Backend();
    const gw = await warmedGateway(poolYaml('h2c', backend.url, '    connections: { max: 1 }\n'));
    const answers = heldRequests(gw, 150);
    await expect.poll(() => backend.streams, { timeout: 10_000 }).toBe(101);
    backend.release();
    await expect.poll(() => backend.streams, { timeout: 10_000 }).toBe(151);
    backend.release();
    expect((await answers).map((answer) => answer.status)).toEqual(Array(150).fill(200));
    expect(backend.peakHeld).toBe(100);
    expect(backend.sessions).toBe(1);
  });

  it('a WebSocket to an h2 pool is tunnelled over HTTP/1.1 even when the backend would pick h2 by ALPN', async () => {
    // A backend speaking h2 and HTTP/1.1 on one TLS port, which prefers h2 when offered both, and echoes upgrades.
    const server = http2.createSecureServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key), allowHTTP1: true });
    server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
      acceptWebSocket(req, socket);
      socket.on('data', (data) => socket.write(data));
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const gw = await resources.gateway(poolYaml('h2', url, `    tls: { ca: ${certs.ca} }\n`));
      const client = net.connect(gw.port, '127.0.0.1');
      let received = '';
      client.on('data', (data: Buffer) => (received += data.toString('latin1')));
      client.on('error', () => undefined);
      await once(client, 'connect');
      client.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      await expect.poll(() => received.includes('\r\n\r\n'), { timeout: 10_000 }).toBe(true);
      expect(received.startsWith('HTTP/1.1 101')).toBe(true);
      client.write('ping');
      await expect.poll(() => received.endsWith('\r\n\r\nping'), { timeout: 10_000 }).toBe(true);
      client.destroy();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('h2 to a backend that picks HTTP/1.1: one request per connection at a time, never pipelined', async () => {
    // An https backend offering only http/1.1, holding each request until 8 are open at once.
    const open: Array<() => void> = [];
    const inFlightBySocket = new Map<Socket, number>();
    let peakPerSocket = 0;
    const server = https.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key), ALPNProtocols: ['http/1.1'] }, (req, res) => {
      const socket = req.socket;
      inFlightBySocket.set(socket, (inFlightBySocket.get(socket) ?? 0) + 1);
      peakPerSocket = Math.max(peakPerSocket, inFlightBySocket.get(socket)!);
      const answer = (): void => {
        inFlightBySocket.set(socket, inFlightBySocket.get(socket)! - 1);
        res.end('h1');
      };
      if (!req.url!.startsWith('/held')) return answer();
      open.push(answer);
      if (open.length === 8) for (const next of open.splice(0)) next();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const gw = await resources.gateway(poolYaml('h2', url, `    tls: { ca: ${certs.ca} }\n`));
      expect((await request(`${gw.url}/warm-up`)).body).toBe('h1');
      // Pipelined on one connection, the backend would answer them one after another and never hold 8 at once.
      const answers = await heldRequests(gw, 8);
      expect(answers.map((answer) => answer.body)).toEqual(Array(8).fill('h1'));
      expect(peakPerSocket).toBe(1);
    } finally {
      server.closeAllConnections();
      await closeServer(server);
    }
  });
});
