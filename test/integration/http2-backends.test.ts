// HTTP/2 to backends (pools.NAME.protocol h2c and h2): requests share sessions, a request with a body never waits behind
// another stream, a backend's stream limit is kept, and an h2 backend that picks HTTP/1.1 is never pipelined to.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { closeServer, request, type SimpleResponse } from '../helpers/backend.js';
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
 * An HTTP/2 backend that counts its sessions and holds each GET whose path starts with /held until `release` (or until
 * `releaseAt` streams are held at once); other GETs and every POST are answered at once, a POST with its body's length.
 */
interface H2Backend {
  readonly url: string;
  readonly sessions: number;
  readonly peakHeld: number;
  release(): void;
  /** Destroys every session with its streams in flight, as a backend that stops abruptly. */
  cutSessions(): void;
  close(): Promise<void>;
}

async function startH2Backend(options: { tls?: TestCerts; maxConcurrentStreams?: number; releaseAt?: number } = {}): Promise<H2Backend> {
  const settings = options.maxConcurrentStreams === undefined ? {} : { settings: { maxConcurrentStreams: options.maxConcurrentStreams } };
  const server =
    options.tls === undefined
      ? http2.createServer(settings)
      : http2.createSecureServer({ ...settings, cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) });
  const sessions = new Set<http2.ServerHttp2Session>();
  let peakHeld = 0;
  const held: http2.ServerHttp2Stream[] = [];
  const release = (): void => {
    for (const stream of held.splice(0)) if (!stream.closed) stream.respond({ ':status': 200 }, { endStream: true });
  };
  server.on('session', (session) => sessions.add(session));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => stream.destroy());
    const path = String(headers[':path']);
    if (headers[':method'] === 'POST') {
      let length = 0;
      stream.on('data', (chunk: Buffer) => (length += chunk.length));
      stream.on('end', () => stream.end(String(length)));
      stream.respond({ ':status': 200 });
      return;
    }
    if (!path.startsWith('/held')) {
      stream.respond({ ':status': 200 }, { endStream: true });
      return;
    }
    held.push(stream);
    peakHeld = Math.max(peakHeld, held.length);
    if (options.releaseAt !== undefined && held.length >= options.releaseAt) release();
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
    release,
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
    const backend = await startH2Backend({ releaseAt: 30 });
    try {
      const gw = await warmedGateway(poolYaml('h2c', backend.url));
      // 30 requests held open together at the backend, each answered only once all 30 are there.
      const answers = await heldRequests(gw, 30);
      expect(answers.map((answer) => answer.status)).toEqual(Array(30).fill(200));
      expect(backend.peakHeld).toBe(30);
      expect(backend.sessions).toBe(1);
    } finally {
      await backend.close();
    }
  });

  it('h2: concurrent requests share one TLS session too (ALPN h2)', async () => {
    const backend = await startH2Backend({ tls: certs, releaseAt: 20 });
    try {
      const gw = await warmedGateway(poolYaml('h2', backend.url, `    tls: { ca: ${certs.ca} }\n`));
      const answers = await heldRequests(gw, 20);
      expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
      expect(backend.sessions).toBe(1);
    } finally {
      await backend.close();
    }
  });

  it('a request with a body is answered while a long stream holds the session it would have shared', async () => {
    const backend = await startH2Backend();
    try {
      const gw = await warmedGateway(poolYaml('h2c', backend.url));
      const long = request(`${gw.url}/held/stream`);
      await expect.poll(() => backend.peakHeld, { timeout: 10_000 }).toBe(1);
      // undici sends a request with a streamed body only on a session with nothing else in flight; on the shared
      // session this POST would wait for the held stream, which ends only after it.
      const posted = await request(`${gw.url}/upload`, { method: 'POST', body: 'x'.repeat(1000) });
      expect(posted).toMatchObject({ status: 200, body: '1000' });
      // A bodiless request of a method other than GET shares the session too.
      expect((await request(`${gw.url}/remove`, { method: 'DELETE' })).status).toBe(200);
      backend.release();
      expect((await long).status).toBe(200);
    } finally {
      await backend.close();
    }
  });

  it('a session cut with many streams in flight fails each of them at once, and the next request gets a new session', async () => {
    const backend = await startH2Backend();
    try {
      const gw = await warmedGateway(poolYaml('h2c', backend.url));
      const inFlight = heldRequests(gw, 10);
      await expect.poll(() => backend.peakHeld, { timeout: 10_000 }).toBe(10);
      expect(backend.sessions).toBe(1);
      backend.cutSessions();
      // With no other backend to retry on, each is answered 502; none is left waiting on the dead session.
      expect((await inFlight).map((answer) => answer.status)).toEqual(Array(10).fill(502));
      expect((await request(`${gw.url}/after`)).status).toBe(200);
      expect(backend.sessions).toBe(2);
    } finally {
      await backend.close();
    }
  });

  it('keeps to a backend\'s limit on concurrent streams: the rest wait for a free stream, none fails', async () => {
    const backend = await startH2Backend({ maxConcurrentStreams: 4, releaseAt: 4 });
    try {
      const gw = await warmedGateway(poolYaml('h2c', backend.url));
      const answers = await heldRequests(gw, 12);
      expect(answers.map((answer) => answer.status)).toEqual(Array(12).fill(200));
      expect(backend.peakHeld).toBe(4);
    } finally {
      await backend.close();
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
