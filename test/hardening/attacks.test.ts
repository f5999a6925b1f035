// Attack requests on raw sockets: whatever the proxy accepts must reach the backend exactly as the proxy parsed it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { rawExchange } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

/** A backend that records both the raw bytes it received and the requests Node parsed from them. */
interface CapturingBackend {
  readonly url: string;
  readonly raw: Buffer[];
  readonly parsed: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }>;
  reset(): void;
  close(): Promise<void>;
}

async function capturingBackend(): Promise<CapturingBackend> {
  const raw: Buffer[] = [];
  const parsed: CapturingBackend['parsed'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('latin1')));
    req.on('end', () => {
      parsed.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.end('ok');
    });
  });
  server.on('connection', (socket: net.Socket) => socket.on('data', (chunk: Buffer) => raw.push(chunk)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    raw,
    parsed,
    reset() {
      raw.length = 0;
      parsed.length = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let backend: CapturingBackend;
let gw: TestGateway;

beforeAll(async () => {
  backend = await capturingBackend();
  gw = await startGateway(`limits: { maxHeaderSize: 8kb, headersTimeout: 1s }\npools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`);
});

afterAll(async () => {
  await gw.stop();
  await backend.close();
});

function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0);
}

/** Every HTTP response in a raw answer, in order. */
function statuses(answer: string): number[] {
  return [...answer.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

const SMUGGLING: Array<[string, string]> = [
  ['CL.TE', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED'],
  ['TE.CL', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n'],
  ['TE with a space before the colon', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd'],
  ['TE list ending in chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
  ['TE with a tab value', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\nabcd'],
  ['TE repeated', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n'],
  ['TE in upper case with CL', 'POST / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: CHUNKED\r\nContent-Length: 4\r\n\r\nabcd'],
  ['duplicate Content-Length, same value', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd'],
  ['duplicate Content-Length, different values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd'],
  ['Content-Length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd'],
  ['negative Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n'],
  ['obfuscated TE value', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked-false\r\n\r\n0\r\n\r\n'],
  ['bare LF line endings with TE', 'POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 4\n\nabcd'],
  ['header folding', 'GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n'],
  ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\0b\r\n\r\n'],
  ['missing Host on HTTP/1.1', 'GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n'],
  ['CR in the request line', 'GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['chunk size overflow', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n'],
];

describe('smuggling-shaped requests', () => {
  it.each(SMUGGLING)('%s is refused before any backend sees it', async (_name, payload) => {
    backend.reset();
    const answer = await rawExchange(gw.port, payload, 2_000);
    expect(statusOf(answer)).toBeGreaterThanOrEqual(400);
    expect(statusOf(answer)).toBeLessThan(500);
    expect(backend.parsed).toEqual([]);
    expect(backend.raw).toEqual([]);
  });

  it('a pipelined pair reaches the backend as exactly the two requests the proxy parsed', async () => {
    backend.reset();
    const answer = await rawExchange(
      gw.port,
      'POST /one HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      3_000,
    );
    expect(statuses(answer)).toEqual([200, 200]);
    expect(backend.parsed.map((r) => [r.method, r.url, r.body])).toEqual([
      ['POST', '/one', 'GET /'],
      ['GET', '/two', ''],
    ]);
  });

  it('a DELETE with a chunked body keeps its framing (http-proxy deleteLength pass removed)', async () => {
    backend.reset();
    const answer = await rawExchange(gw.port, 'DELETE /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n9\r\nGET /evil\r\n0\r\n\r\n', 3_000);
    expect(statuses(answer)).toEqual([200]);
    expect(backend.parsed.map((r) => [r.method, r.url, r.body])).toEqual([['DELETE', '/x', 'GET /evil']]);
  });

  it('an OPTIONS without a body sends no body and no stray framing', async () => {
    backend.reset();
    await rawExchange(gw.port, 'OPTIONS /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 3_000);
    expect(backend.parsed.map((r) => [r.method, r.body])).toEqual([['OPTIONS', '']]);
    const head = Buffer.concat(backend.raw).toString('latin1');
    expect(head).not.toMatch(/transfer-encoding/i);
  });
});

describe('header attacks', () => {
  it('a Connection header naming X-Forwarded-For cannot strip or forge the client address', async () => {
    backend.reset();
    await rawExchange(gw.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For, X-Forwarded-Proto\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n', 3_000);
    const seen = backend.parsed[0]!;
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
  });

  it('oversized headers get 431 and nothing reaches the backend', async () => {
    backend.reset();
    const answer = await rawExchange(gw.port, `GET / HTTP/1.1\r\nHost: a\r\n${'X-Pad: '.concat('y'.repeat(1000), '\r\n').repeat(12)}\r\n`, 2_000);
    expect(statusOf(answer)).toBe(431);
    expect(backend.raw).toEqual([]);
  });

  it('absolute-form requests for a foreign host are refused; for our own host they are normalised', async () => {
    backend.reset();
    expect(statusOf(await rawExchange(gw.port, 'GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: a\r\n\r\n'))).toBe(400);
    expect(statusOf(await rawExchange(gw.port, 'GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n'))).toBe(400);
    expect(backend.raw).toEqual([]);
    await rawExchange(gw.port, 'GET http://a/p?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(backend.parsed.map((r) => r.url)).toEqual(['/p?q=1']);
  });

  it('slowloris is cut off by the headers timeout', async () => {
    const socket = net.connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n');
    const drip = setInterval(() => socket.write('X-A: b\r\n'), 200);
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    clearInterval(drip);
    // The drip never ends the head: only the 1 s headersTimeout closes the socket, and says so with a 408.
    expect(statusOf(answer)).toBe(408);
  });
});
