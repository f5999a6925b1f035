// The access log as its own stream: a line for every request (forwarded, rejected, unrouted, timed out, upgraded) at any log.level, reopened on SIGUSR1.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acceptWebSocket, rawExchange, request, startBackend, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { START_TIMEOUT_MS, startCli } from '../helpers/process.js';
import { makeCerts } from '../helpers/certs.js';
import { freePort } from '../helpers/ports.js';
import { eventually } from '../helpers/wait.js';

type Line = Record<string, unknown>;

function readLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Line);
}

const FIELDS = ['time', 'client', 'method', 'host', 'path', 'status', 'bytesIn', 'bytesOut', 'durationMs', 'upstreamMs', 'pool', 'backend', 'attempts', 'code', 'requestId', 'traceId', 'upgrade', 'protocol'];

describe('access log at log.level: error', () => {
  let backend: TestBackend;
  let gw: TestGateway;
  let file: string;

  beforeAll(async () => {
    backend = await startBackend('b');
    backend.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      if (req.url === '/refused') {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      acceptWebSocket(req, socket);
      socket.on('data', (data) => socket.write(data));
      socket.on('end', () => socket.end());
    });
    gw = await startGateway(
      'log: { level: error, access: true, accessFile: access.log }\n' +
        'limits: { maxHeaderSize: 4kb, headersTimeout: 500ms, maxBodySize: 1kb }\n' +
        `routes:\n  - { match: { host: app.test }, pool: web }\npools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`,
    );
    file = join(gw.dir, 'access.log');
  });

  afterAll(async () => {
    await gw.stop();
    await backend.close();
  });

  /** The line whose path (or, for unparsed requests, status) identifies the request; waits for it. */
  async function lineFor(match: (line: Line) => boolean, what: string): Promise<Line> {
    let found: Line | undefined;
    await eventually(() => (found = readLines(file).find(match)) !== undefined, `the access line of ${what}`);
    expect(Object.keys(found!).sort()).toEqual([...FIELDS].sort());
    return found!;
  }

  it('writes a forwarded request with its pool, backend, attempts, bytes, request id and trace id', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    // Not from a trusted proxy: the client's X-Request-Id is replaced by balancer's own, which the client is told.
    const res = await request(`${gw.url}/hello?x=1`, { headers: { host: 'app.test', 'x-request-id': 'req-42', traceparent } });
    expect(res.status).toBe(200);
    const id = String(res.headers['x-request-id']);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const line = await lineFor((l) => l['path'] === '/hello?x=1', 'a forwarded request');
    expect(line).toMatchObject({ client: '127.0.0.1', method: 'GET', host: 'app.test', status: 200, pool: 'web', backend: 'b', attempts: 1, code: null, requestId: id, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', upgrade: false });
    expect(line['bytesIn']).toBeGreaterThan(20);
    expect(line['bytesOut']).toBeGreaterThan(Buffer.byteLength(res.body));
    expect(typeof line['upstreamMs']).toBe('number');
    expect(Date.parse(String(line['time']))).not.toBeNaN();
    // The diagnostic log (log.level: error) has no access lines.
    expect(gw.logs.some((l) => l['msg'] === 'access')).toBe(false);
  });

  it('writes an unrouted request (404) and one refused by its framing (400) or size (413)', async () => {
    expect((await request(`${gw.url}/nowhere`, { headers: { host: 'other.test' } })).status).toBe(404);
    expect(await lineFor((l) => l['path'] === '/nowhere', '404')).toMatchObject({ status: 404, code: 'NO_ROUTE', pool: null, backend: null, attempts: 0, upstreamMs: null });

    // Node's parser accepts this framing; balancer's guard refuses it (only exactly "chunked" is forwarded).
    const smuggled = await rawExchange(gw.port, 'POST /smuggle HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n');
    expect(smuggled).toMatch(/^HTTP\/1\.1 400 /);
    expect(await lineFor((l) => l['path'] === '/smuggle', '400')).toMatchObject({ status: 400, code: 'BAD_REQUEST', method: 'POST' });

    const large = await request(`${gw.url}/upload`, { method: 'POST', headers: { host: 'app.test' }, body: 'x'.repeat(2048) });
    expect(large.status).toBe(413);
    expect(await lineFor((l) => l['path'] === '/upload', '413')).toMatchObject({ status: 413, code: 'REQUEST_TOO_LARGE' });
  });

  it('writes requests the parser refused (431) or that timed out (408), and CONNECT (405)', async () => {
    expect(await rawExchange(gw.port, `GET /big HTTP/1.1\r\nHost: app.test\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    expect(await lineFor((l) => l['status'] === 431, '431')).toMatchObject({ method: null, path: null, code: 'HEADERS_TOO_LARGE', client: '127.0.0.1' });

    expect(await rawExchange(gw.port, 'GET /slow HTTP/1.1\r\nHost: app.test\r\n')).toMatch(/^HTTP\/1\.1 408 /);
    const timedOut = await lineFor((l) => l['status'] === 408, '408');
    expect(timedOut).toMatchObject({ method: null, code: 'REQUEST_TIMEOUT' });
    expect(timedOut['durationMs']).toBeGreaterThanOrEqual(400);

    expect(await rawExchange(gw.port, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n')).toMatch(/^HTTP\/1\.1 405 /);
    expect(await lineFor((l) => l['method'] === 'CONNECT', 'CONNECT')).toMatchObject({ status: 405, code: 'METHOD_NOT_ALLOWED', upgrade: false });
  });

  it('writes an upgraded connection when its tunnel closes, and an upgrade the backend refused', async () => {
    const socket = net.connect(gw.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    let received = '';
    const echoed = new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (received.includes('\r\n\r\n') && received.endsWith('ping')) resolve();
        else if (received.includes('\r\n\r\n') && !received.includes('ping')) socket.write('ping');
      }),
    );
    socket.write('GET /chat HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    await echoed;
    socket.end();
    const tunnel = await lineFor((l) => l['path'] === '/chat', 'the tunnel');
    expect(tunnel).toMatchObject({ status: 101, upgrade: true, pool: 'web', backend: 'b', attempts: 1, method: 'GET' });
    expect(tunnel['bytesOut']).toBeGreaterThan(received.indexOf('\r\n\r\n'));

    const refused = await rawExchange(gw.port, 'GET /refused HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(refused).toMatch(/^HTTP\/1\.1 403 /);
    expect(await lineFor((l) => l['path'] === '/refused', 'the refused upgrade')).toMatchObject({ status: 403, upgrade: true, backend: 'b' });
  });
});

describe('access log on a TLS listener', () => {
  it('writes the client and the bytes of requests over TLS', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'balancer-access-tls-'));
    const backend = await startBackend('b');
    const certs = makeCerts(dir, 'tls');
    const gw = await startGateway(`tls: { cert: ${certs.cert}, key: ${certs.key} }\nlog: { access: true, accessFile: ${join(dir, 'access.log')} }\npools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        https
          .get(`https://127.0.0.1:${gw.port}/secure`, { ca: readFileSync(certs.ca), agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
      expect(status).toBe(200);
      let line: Line | undefined;
      await eventually(() => (line = readLines(join(dir, 'access.log')).find((l) => l['path'] === '/secure')) !== undefined, 'the TLS request line');
      expect(line).toMatchObject({ client: '127.0.0.1', status: 200, pool: 'web', attempts: 1 });
      expect(line!['bytesIn']).toBeGreaterThan(0);
      expect(line!['bytesOut']).toBeGreaterThan(0);
    } finally {
      await gw.stop();
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('access log file and SIGUSR1 (logrotate)', () => {
  let dir: string;
  let backend: TestBackend;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'balancer-access-'));
    backend = await startBackend('b');
  });

  afterAll(async () => {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('appends from every worker, and after the file is moved and SIGUSR1 sent, writes to a new file without losing a line', async () => {
    const config = join(dir, 'balancer.yaml');
    const log = join(dir, 'access.log');
    // At log.level: error the node says nothing when it starts: free ports are picked here and /readyz polled.
    const [proxyPort, adminPort] = [await freePort(), await freePort()];
    await writeFile(
      config,
      `listen: 127.0.0.1:${proxyPort}\nadmin: { listen: 127.0.0.1:${adminPort}, token: t }\nworkers: 2\nlog: { level: error, access: true, accessFile: access.log }\n` +
        `pools:\n  web:\n    backends:\n      - { url: ${backend.url} }\n`,
    );
    const node = startCli(['start', '-c', config]);
    try {
      await eventually(async () => (await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null))?.status === 200, 'the node to be ready', START_TIMEOUT_MS, 100);
      const proxy = `http://127.0.0.1:${proxyPort}`;
      for (let i = 0; i < 20; i++) expect((await request(`${proxy}/before-${i}`)).status).toBe(200);
      await eventually(() => readLines(log).length === 20, 'the 20 lines before the rotation');
      await rename(log, `${log}.1`);
      node.child.kill('SIGUSR1');
      // Workers reopen when the primary's message reaches them: requests sent until then still go to the moved file.
      const sent: string[] = [];
      await eventually(
        async () => {
          const path = `/after-${sent.length}`;
          sent.push(path);
          expect((await request(`${proxy}${path}`)).status).toBe(200);
          return readLines(log).length > 0;
        },
        'a line in the new file',
        15_000,
        50,
      );
      const paths = (file: string): string[] => readLines(file).map((line) => String(line['path']));
      await eventually(() => paths(`${log}.1`).length + paths(log).length === 20 + sent.length, 'every line in one of the files');
      const all = [...paths(`${log}.1`), ...paths(log)].sort();
      expect(all).toEqual([...Array.from({ length: 20 }, (_, i) => `/before-${i}`), ...sent].sort());
      expect(paths(log).every((path) => path.startsWith('/after-'))).toBe(true);
      // Only access lines in the file; the diagnostic log (at error) stays on standard error and said nothing.
      expect((await readFile(log, 'utf8')).includes('"level"')).toBe(false);
      expect(node.lines).toEqual([]);
      node.child.kill('SIGTERM');
      expect(await node.exited).toBe(0);
    } finally {
      node.child.kill('SIGKILL');
    }
  });
});
