// The real probe and the pool's active checks against real sockets on 127.0.0.1 (real clock, short intervals).

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../../src/clock.js';
import { PoolRuntime, type BackendStateChange } from '../../src/balancer/pool.js';
import { KeptConnection } from '../../src/health/http-check.js';
import { createProbe, type ProbeTarget } from '../../src/health/probe.js';
import { memoryLogger } from '../../src/log.js';
import type { HealthCheckResult } from '../../src/metrics/types.js';
import { backend, healthCheck, poolConfig, recordingMetrics } from '../balancer/pool-fixtures.js';
import { NO_UPSTREAM_TLS } from '../../src/balancer/upstream-tls.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const probe = createProbe(systemClock);
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface TestServer {
  readonly url: string;
  readonly port: number;
  /** Requests seen, with their Host header and path. */
  readonly seen: Array<{ host: string | undefined; path: string | undefined }>;
  status: number;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        (server as http.Server).closeAllConnections?.();
        server.close(() => resolve());
      }),
  );
  return address.port;
}

async function httpServer(status = 200, body = 'ok'): Promise<TestServer> {
  const state = { status, seen: [] as TestServer['seen'] };
  const server = http.createServer((request, response) => {
    state.seen.push({ host: request.headers.host, path: request.url });
    response.writeHead(state.status, { 'content-type': 'text/plain' });
    response.end(body);
  });
  const port = await listen(server);
  return Object.assign(state, { url: `http://127.0.0.1:${port}`, port });
}

/** A port that was just free: listen, read the port, close. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function target(url: string, overrides: Partial<ProbeTarget> = {}): ProbeTarget {
  return {
    url: new URL(url),
    path: '/healthz',
    grpcService: null,
    host: null,
    timeoutMs: 1_000,
    expectedStatuses: [[200, 399]],
    tls: NO_UPSTREAM_TLS,
    serverName: null,
    ...overrides,
  };
}

/** Resolves with the first state change matching `predicate`, or fails after `timeoutMs`. */
// Generous: it only bounds a wait for an event (checks every 25 ms), so a loaded machine does not fail it.
function nextChange(pool: PoolRuntime, predicate: (change: BackendStateChange) => boolean, timeoutMs = 15_000) {
  return new Promise<BackendStateChange>((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching state change within ${timeoutMs}ms`));
    }, timeoutMs);
    const unsubscribe = pool.onStateChange((change) => {
      if (!predicate(change)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(change);
    });
  });
}

describe('probe (real sockets)', () => {
  it('passes on an expected status and sends the backend host:port as Host with the configured path', async () => {
    const server = await httpServer(204);
    const result = await probe(target(server.url));
    expect(result).toEqual({ result: 'pass', detail: 'HTTP 204' });
    expect(server.seen).toEqual([{ host: `127.0.0.1:${server.port}`, path: '/healthz' }]);
  });

  it('fails on a status outside the expected ranges, and honours custom ranges and Host', async () => {
    const server = await httpServer(500);
    expect(await probe(target(server.url))).toEqual({ result: 'fail', detail: 'HTTP 500' });
    server.status = 418;
    expect(await probe(target(server.url, { expectedStatuses: [[200, 204], [418, 418]], host: 'health.internal' }))).toEqual({
      result: 'pass',
      detail: 'HTTP 418',
    });
    expect(server.seen.at(-1)?.host).toBe('health.internal');
  });

  it('cuts off an endless body instead of reading it forever', async () => {
    const server = http.createServer((_request, response) => {
      response.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 120);
      const pump = () => {
        while (response.write(chunk)) {
          /* fill the buffer */
        }
      };
      response.on('drain', pump);
      pump();
    });
    const port = await listen(server);
    // 'pass' rather than 'timeout' is the proof that the probe stopped reading instead of waiting for an end.
    expect(await probe(target(`http://127.0.0.1:${port}`, { timeoutMs: 10_000 }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
  });

  it('times out on a server that accepts but never answers', async () => {
    const server = http.createServer(() => {
      /* never answers */
    });
    const port = await listen(server);
    const started = performance.now();
    const result = await probe(target(`http://127.0.0.1:${port}`, { timeoutMs: 150 }));
    expect(result).toEqual({ result: 'timeout', detail: 'no answer within 150ms' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('reports a refused connection for HTTP and TCP checks', async () => {
    const port = await closedPort();
    expect(await probe(target(`http://127.0.0.1:${port}`))).toEqual({ result: 'error', detail: 'connect ECONNREFUSED' });
    expect(await probe(target(`http://127.0.0.1:${port}`, { path: null }))).toEqual({
      result: 'error',
      detail: 'connect ECONNREFUSED',
    });
  });

  it('fails (without crashing) on a backend that resets the connection, before or during the answer', async () => {
    const resetAtOnce = net.createServer((socket) => socket.resetAndDestroy());
    const atOnce = await listen(resetAtOnce);
    const early = await probe(target(`http://127.0.0.1:${atOnce}`));
    expect(early.result).toBe('error');
    expect(early.detail).toMatch(/ECONNRESET|socket hang up/);

    const resetMidBody = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
        setImmediate(() => socket.resetAndDestroy());
      });
    });
    const midBody = await listen(resetMidBody);
    const late = await probe(target(`http://127.0.0.1:${midBody}`));
    expect(late.result).toBe('error');
  });

  it('passes a TCP check on a listening port without sending anything', async () => {
    let received = 0;
    const server = net.createServer((socket) => {
      socket.on('data', (data) => (received += data.length));
    });
    const port = await listen(server);
    expect(await probe(target(`http://127.0.0.1:${port}`, { path: null }))).toEqual({ result: 'pass', detail: 'TCP connect ok' });
    expect(received).toBe(0);
  });

  it('verifies https backends: unknown CA fails, the configured CA passes', async () => {
    const server = https.createServer(
      { cert: readFileSync(fixture('backend-cert.pem')), key: readFileSync(fixture('backend-key.pem')) },
      (_request, response) => response.end('ok'),
    );
    const port = await listen(server);
    const url = `https://127.0.0.1:${port}`;
    const untrusted = await probe(target(url));
    expect(untrusted.result).toBe('error');
    expect(untrusted.detail).toMatch(/SELF_SIGNED|self.signed/i);
    const ca = readFileSync(fixture('backend-cert.pem'), 'utf8');
    expect(await probe(target(url, { tls: { ...NO_UPSTREAM_TLS, ca } }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    // The name is checked too: the certificate is for localhost/127.0.0.1, not for this name.
    const wrongName = await probe(target(url, { tls: { ...NO_UPSTREAM_TLS, ca }, serverName: 'other.example' }));
    expect(wrongName.result).toBe('error');
  });
});

/** An HTTP server that counts the connections it accepted and tells when one of them closes. */
async function connectionCountingServer(answer: (request: http.IncomingMessage, response: http.ServerResponse, requestOnConnection: number) => void) {
  const sockets: net.Socket[] = [];
  const closeWaiters: Array<() => void> = [];
  const connectionHeaders: Array<string | undefined> = [];
  const server = http.createServer((request, response) => {
    connectionHeaders.push(request.headers.connection);
    const socket = request.socket as net.Socket & { requestsSeen?: number };
    socket.requestsSeen = (socket.requestsSeen ?? 0) + 1;
    answer(request, response, socket.requestsSeen);
  });
  server.on('connection', (socket: net.Socket) => {
    sockets.push(socket);
    socket.once('close', () => closeWaiters.splice(0).forEach((wake) => wake()));
  });
  const port = await listen(server);
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    connectionHeaders,
    accepted: () => sockets.length,
    open: () => sockets.filter((socket) => !socket.destroyed).length,
    /** Resolves once every accepted connection has closed. */
    allClosed: async () => {
      while (sockets.some((socket) => !socket.destroyed)) await new Promise<void>((resolve) => closeWaiters.push(resolve));
    },
  };
}

describe('kept check connections (healthCheck.reuseConnection, real sockets)', () => {
  it('passing checks reuse one connection; without a kept connection every check dials and asks for close', async () => {
    const backendServer = await connectionCountingServer((_request, response) => response.end('ok'));
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    for (let i = 0; i < 3; i++) expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.accepted()).toBe(1);
    expect(backendServer.connectionHeaders).toEqual(['keep-alive', 'keep-alive', 'keep-alive']);

    for (let i = 0; i < 2; i++) expect((await probe(target(backendServer.url))).result).toBe('pass');
    expect(backendServer.accepted()).toBe(3);
    expect(backendServer.connectionHeaders.slice(3)).toEqual(['close', 'close']);
  });

  it('a failing status closes the kept connection, and the next check dials fresh', async () => {
    let status = 200;
    const backendServer = await connectionCountingServer((_request, response) => {
      response.statusCode = status;
      response.end('answer');
    });
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    status = 500;
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'fail', detail: 'HTTP 500' });
    await backendServer.allClosed();
    status = 200;
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    expect(backendServer.accepted()).toBe(2);
    expect(backendServer.open()).toBe(1);
  });

  it('a timed-out check closes its connection, and the next check dials fresh', async () => {
    let answering = true;
    const backendServer = await connectionCountingServer((_request, response) => {
      if (answering) response.end('ok');
    });
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    answering = false;
    expect(await probe(target(backendServer.url, { keptConnection: kept, timeoutMs: 150 }))).toEqual({ result: 'timeout', detail: 'no answer within 150ms' });
    await backendServer.allClosed();
    answering = true;
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    expect(backendServer.accepted()).toBe(2);
  });

  it('a connection the backend closed while idle is replaced without a failed check', async () => {
    const backendServer = await connectionCountingServer((_request, response) => response.end('ok'));
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    backendServer.server.closeIdleConnections();
    await backendServer.allClosed();
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.accepted()).toBe(2);
  });

  it('a kept connection dropped as the next check goes out is retried once on a fresh one', async () => {
    // The second request on a connection is dropped unanswered (a backend closing an idle connection at that moment);
    // the first request on a new connection is answered.
    const backendServer = await connectionCountingServer((request, response, requestOnConnection) => {
      if (requestOnConnection === 1) response.end('ok');
      else request.socket.destroy();
    });
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect((await probe(target(backendServer.url, { keptConnection: kept }))).result).toBe('pass');
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.accepted()).toBe(2);
  });
});

/**
 * A TCP server that answers each request (a head ending in a blank line) with the next scripted answer, sent in the
 * given pieces with a pause between them so each piece arrives on its own; `close` ends the connection after it.
 */
async function scriptedServer(answers: ReadonlyArray<{ readonly pieces: readonly string[]; readonly close?: boolean }>) {
  let accepted = 0;
  let next = 0;
  const requests: string[] = [];
  const server = net.createServer((socket) => {
    accepted++;
    let pending = '';
    socket.on('error', () => {});
    socket.on('data', async (chunk) => {
      pending += chunk.toString('latin1');
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      requests.push(pending.slice(0, end));
      pending = pending.slice(end + 4);
      const answer = answers[next++];
      if (answer === undefined) return void socket.destroy();
      for (const piece of answer.pieces) {
        socket.write(piece, 'latin1');
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      if (answer.close === true) socket.end();
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, accepted: () => accepted, requests };
}

describe('HTTP/1.1 answers as a check reads them (scripted backend, real sockets)', () => {
  it('sends a path outside visible ASCII percent-encoded as UTF-8', async () => {
    const backendServer = await httpServer();
    expect(await probe(target(backendServer.url, { path: '/santé/健康' }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.seen).toEqual([{ host: `127.0.0.1:${backendServer.port}`, path: '/sant%C3%A9/%E5%81%A5%E5%BA%B7' }]);
  });

  it('reads a chunked answer with extensions and trailers a byte at a time, skips a 100 Continue, and keeps the connection', async () => {
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n';
    const backendServer = await scriptedServer([
      { pieces: [...chunked] },
      { pieces: ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n'] },
      { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] },
    ]);
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 204' });
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.accepted()).toBe(1);
    expect(backendServer.requests[0]).toBe(`GET /healthz HTTP/1.1\r\nhost: ${new URL(backendServer.url).host}\r\nuser-agent: balancer-health-check\r\naccept: */*\r\nconnection: keep-alive`);
  });

  it('an answer that ends with its connection passes, and the next check dials fresh', async () => {
    const backendServer = await scriptedServer([
      { pieces: ['HTTP/1.1 200 OK\r\n\r\n', 'all of it'], close: true },
      { pieces: ['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'] },
      { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'] },
    ]);
    const kept = new KeptConnection();
    cleanups.push(() => kept.close());
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    // HTTP/1.0 without keep-alive: that connection is not reused either.
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(await probe(target(backendServer.url, { keptConnection: kept }))).toEqual({ result: 'pass', detail: 'HTTP 200' });
    expect(backendServer.accepted()).toBe(3);
  });

  it('an answer that is not HTTP/1.x, or whose length is ambiguous or cut short, is an error', async () => {
    const garbage = await scriptedServer([{ pieces: ['SSH-2.0-OpenSSH_9.6\r\n\r\n'] }]);
    expect(await probe(target(garbage.url))).toEqual({ result: 'error', detail: 'not an HTTP/1.x answer: "SSH-2.0-OpenSSH_9.6"' });
    const ambiguous = await scriptedServer([{ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'] }]);
    expect((await probe(target(ambiguous.url))).result).toBe('error');
    const short = await scriptedServer([{ pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok'], close: true }]);
    expect(await probe(target(short.url))).toEqual({ result: 'error', detail: 'connection closed before the answer ended' });
    const badChunk = await scriptedServer([{ pieces: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'] }]);
    expect(await probe(target(badChunk.url))).toEqual({ result: 'error', detail: 'chunked answer: bad chunk size "zz"' });
  });
});

describe('pool active checks (real sockets, real clock)', () => {
  // Checks come every 25 ms, but each may take up to 5 s: on a loaded machine a 100 ms timeout turned a check the
  // server answered 500 into a 'timeout', and the counts below are about fall and rise, not about timeouts.
  const fast = { intervalMs: 25, unhealthyIntervalMs: 25, timeoutMs: 5_000, jitter: 0.1 };

  function startPool(
    backends: ReturnType<typeof backend>[],
    check: Parameters<typeof healthCheck>[0],
    onCheck?: (backend: string, result: HealthCheckResult) => void,
  ) {
    const logger = memoryLogger('info');
    const metrics = recordingMetrics(onCheck);
    const pool = PoolRuntime.create(poolConfig({ backends, healthCheck: healthCheck({ ...fast, ...check }) }), undefined, {
      clock: systemClock,
      random: seededRandom(9),
      metrics,
      logger,
    });
    cleanups.push(() => pool.stop());
    return { pool, logger, metrics };
  }

  it('takes a backend answering 500 down after `fall` failed checks', async () => {
    const server = await httpServer(200);
    let firstPass!: () => void;
    const passed = new Promise<void>((resolve) => (firstPass = resolve));
    const { pool, metrics, logger } = startPool([backend('a', { url: server.url })], { fall: 3 }, (_id, result) => {
      if (result === 'pass') firstPass();
    });
    pool.start();
    await passed;
    server.status = 500;
    const before = server.seen.length;
    const change = await nextChange(pool, (c) => c.to === 'down');
    expect(change).toMatchObject({ backend: 'a', from: 'up', reason: '3 consecutive failed checks: HTTP 500' });
    expect(server.seen.length - before).toBe(3);
    expect(pool.get('a')!.state).toBe('down');
    expect(metrics.records.get('web/a')?.checks.filter((r) => r === 'fail')).toHaveLength(3);
    expect(logger.lines.some((l) => l['to'] === 'down' && l['level'] === 'warn')).toBe(true);
  });

  it('a healthy backend rises after `rise` passing checks', async () => {
    const server = await httpServer(503);
    const { pool } = startPool([backend('a', { url: server.url })], { rise: 3 });
    const down = nextChange(pool, (c) => c.to === 'down');
    pool.start();
    await down;
    const seenWhenDown = server.seen.length;
    server.status = 200;
    const up = await nextChange(pool, (c) => c.to === 'up');
    expect(up.reason).toBe('3 consecutive passing checks');
    // Exactly `rise` passing checks, give or take the one that may have been in flight when the status flipped.
    expect(server.seen.length - seenWhenDown).toBeGreaterThanOrEqual(3);
    expect(server.seen.length - seenWhenDown).toBeLessThanOrEqual(4);
  });

  it('a TCP check on a closed port takes the backend down on the first check', async () => {
    const port = await closedPort();
    const { pool } = startPool([backend('a', { url: `http://127.0.0.1:${port}` })], { path: null });
    const down = nextChange(pool, (c) => c.to === 'down');
    pool.start();
    expect((await down).reason).toBe('first check failed: connect ECONNREFUSED');
    expect(pool.pick()).toBeUndefined();
  });

  it('honours the timeout against a backend that never answers', async () => {
    const server = http.createServer(() => {
      /* never answers */
    });
    const port = await listen(server);
    const { pool } = startPool([backend('a', { url: `http://127.0.0.1:${port}` })], { timeoutMs: 60 });
    const started = performance.now();
    const down = nextChange(pool, (c) => c.to === 'down');
    pool.start();
    expect((await down).reason).toBe('first check failed: no answer within 60ms');
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
  });

  it('keeps one connection per backend while checks pass, and closes it when the pool stops', async () => {
    const backendServer = await connectionCountingServer((_request, response) => response.end('ok'));
    let passes = 0;
    let threePasses!: () => void;
    const passed = new Promise<void>((resolve) => (threePasses = resolve));
    const { pool } = startPool([backend('a', { url: backendServer.url })], {}, (_id, result) => {
      if (result === 'pass' && ++passes === 3) threePasses();
    });
    pool.start();
    await passed;
    expect(backendServer.accepted()).toBe(1);
    pool.stop();
    await backendServer.allClosed();
  });

  it('reuseConnection: false dials a new connection for every check', async () => {
    const backendServer = await connectionCountingServer((_request, response) => response.end('ok'));
    let passes = 0;
    let threePasses!: () => void;
    const passed = new Promise<void>((resolve) => (threePasses = resolve));
    const { pool } = startPool([backend('a', { url: backendServer.url })], { reuseConnection: false }, (_id, result) => {
      if (result === 'pass' && ++passes === 3) threePasses();
    });
    pool.start();
    await passed;
    pool.stop();
    expect(backendServer.accepted()).toBeGreaterThanOrEqual(3);
    expect(new Set(backendServer.connectionHeaders)).toEqual(new Set(['close']));
  });

  it('checks never block the data plane: picks go on while a probe is in flight', async () => {
    let probeArrived!: () => void;
    const arrived = new Promise<void>((resolve) => (probeArrived = resolve));
    const server = http.createServer(() => probeArrived()); // never answers
    const port = await listen(server);
    const ok = await httpServer(200);
    const { pool } = startPool([backend('slow', { url: `http://127.0.0.1:${port}` }), backend('ok', { url: ok.url })], {
      timeoutMs: 5_000,
    });
    pool.start();
    await arrived;
    expect(pool.get('slow')!.live.health.lastCheck).toBeUndefined(); // its check is still running
    const picked = new Set(Array.from({ length: 10 }, () => pool.pick()?.id));
    expect(picked).toEqual(new Set(['slow', 'ok']));
  });
});
