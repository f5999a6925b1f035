// Forwarding as streams: response heads flushed at once, bodies with backpressure both ways, trailers, many long-lived streams, the connection limit.

import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { request, type TestBackend } from '../helpers/backend.js';
import { perTestResources } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const { backend, gateway } = perTestResources();

const pool = (b: TestBackend, extra = '') => `pools:\n  web:\n${extra}    backends:\n      - { url: ${b.url}, id: b }\n`;

/** Opens a GET and resolves with the response as soon as its head arrives, before any body. */
function head(url: string, agent: http.Agent | false = false): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => resolve({ req, res }));
    req.on('error', reject);
  });
}

describe('response heads', () => {
  it('reach the client as soon as the backend sends them, before any event of a Server-Sent Events stream', async () => {
    const b = await backend();
    let sendEvent: () => void = () => undefined;
    b.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.flushHeaders();
      // The first event waits for the test: only a head relayed on its own lets the client see the response.
      sendEvent = () => res.end('data: hello\n\n');
    });
    const gw = await gateway(pool(b));
    const { res } = await head(`${gw.url}/events`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    let body = '';
    res.on('data', (chunk: Buffer) => (body += chunk.toString()));
    const ended = new Promise((resolve) => res.on('end', resolve));
    sendEvent();
    await ended;
    expect(body).toBe('data: hello\n\n');
  });

  it('pass the backend\'s trailers on after a chunked body', async () => {
    const b = await backend();
    b.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('part one,');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end('part two');
    });
    const gw = await gateway(pool(b));
    const { res } = await head(`${gw.url}/`);
    let body = '';
    res.on('data', (chunk: Buffer) => (body += chunk.toString()));
    await new Promise((resolve) => res.on('end', resolve));
    expect(body).toBe('part one,part two');
    expect(res.headers['trailer']).toBe('x-checksum');
    expect(res.trailers).toEqual({ 'x-checksum': 'abc123' });
  });

  it('leave with a small body that came in the same read in one plain socket write, every byte as sent', async () => {
    const b = await backend();
    // Every byte value, so the body's trip through latin1 text must keep each one.
    const body = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
    const large = Buffer.alloc(20_000, 0xe9);
    b.handle((req, res) => {
      const answer = req.url === '/large' ? large : body;
      // One write: head and body reach the proxy in one read.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.length });
      res.end(answer);
    });
    const gw = await gateway(pool(b));
    const writes = { plain: 0, vectored: 0 };
    const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
    const { _write: write, _writev: writev } = proto;
    // Counted on the proxy's client-side sockets only (the gateway runs in this process).
    proto._write = function (this: net.Socket, ...args: unknown[]) {
      if (this.localPort === gw.port) writes.plain++;
      return write.apply(this, args);
    };
    proto._writev = function (this: net.Socket, ...args: unknown[]) {
      if (this.localPort === gw.port) writes.vectored++;
      return writev.apply(this, args);
    };
    try {
      const got = await new Promise<{ status: number; bytes: Buffer }>((resolve, reject) => {
        http.get(`${gw.url}/small`, { agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(chunks) }));
        }).on('error', reject);
      });
      expect(got.status).toBe(200);
      expect(got.bytes.equals(body)).toBe(true);
      expect(writes).toEqual({ plain: 1, vectored: 0 });
      // A chunk above the size that is joined to the head still arrives whole and unchanged.
      const big = await new Promise<Buffer>((resolve, reject) => {
        http.get(`${gw.url}/large`, { agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve(Buffer.concat(chunks)));
        }).on('error', reject);
      });
      expect(big.equals(large)).toBe(true);
    } finally {
      proto._write = write;
      proto._writev = writev;
    }
  });

  it('end bodiless answers that came in one read (HEAD, 204, an empty 200) and keep the client connection for the next', async () => {
    const b = await backend();
    b.handle((req, res) => {
      if (req.url === '/none') res.writeHead(204).end();
      else if (req.url === '/empty') res.writeHead(200, { 'content-length': 0 }).end();
      else res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 }).end(req.method === 'HEAD' ? undefined : 'hello');
    });
    const gw = await gateway(pool(b));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<net.Socket>();
    const ask = (path: string, method = 'GET') =>
      new Promise<{ status: number; length: string | undefined; body: string }>((resolve, reject) => {
        const req = http.request(`${gw.url}${path}`, { method, agent }, (res) => {
          sockets.add(res.socket);
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'], body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      expect(await ask('/a')).toEqual({ status: 200, length: '5', body: 'hello' });
      expect(await ask('/a', 'HEAD')).toEqual({ status: 200, length: '5', body: '' });
      expect(await ask('/none')).toEqual({ status: 204, length: undefined, body: '' });
      expect(await ask('/empty')).toEqual({ status: 200, length: '0', body: '' });
      expect(await ask('/a')).toEqual({ status: 200, length: '5', body: 'hello' });
      // All five on one connection: none of the answers left it in a state the next could not use.
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});

describe('backpressure', () => {
  it('stops reading the backend while the client does not read, and cuts a client that stops for the idle timeout', async () => {
    const b = await backend();
    const size = 256 * 1024 * 1024;
    let written = 0;
    let waiting = false;
    let backendClosed = false;
    b.handle((_req, res) => {
      res.writeHead(200, { 'content-length': size });
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = (): void => {
        waiting = false;
        while (written < size) {
          written += chunk.length;
          if (!res.write(chunk)) {
            waiting = true;
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('close', () => (backendClosed = true));
      pump();
    });
    const gw = await gateway(pool(b, '    timeouts: { idle: 1s }\n'));
    const { req, res } = await head(`${gw.url}/big`);
    res.pause();
    // The backend fills the buffers between it and the paused client, then waits: the proxy holds no more than those.
    await eventually(() => waiting, 'the backend to wait for drain');
    const stalledAt = written;
    expect(stalledAt).toBeLessThan(64 * 1024 * 1024);
    // The client reads nothing for longer than the idle timeout: the proxy lets go of the backend and cuts the client,
    // who finds the body cut short when it reads again (a paused socket notices the close only then).
    await eventually(() => backendClosed, 'the backend connection to be closed', 15_000);
    expect(written).toBeLessThan(size);
    res.on('error', () => undefined);
    res.resume();
    await new Promise((resolve) => res.once('close', resolve));
    expect(res.complete).toBe(false);
    req.destroy();
  });

  it('stops reading the client while the backend does not read its upload', async () => {
    const b = await backend();
    let upload: http.IncomingMessage | null = null;
    b.handle((req, res) => {
      // Reads nothing until told.
      upload = req;
      req.pause();
      req.on('end', () => res.end('done'));
    });
    const gw = await gateway(pool(b));
    const req = http.request(`${gw.url}/upload`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } });
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
    });
    const chunk = Buffer.alloc(64 * 1024, 2);
    let sent = 0;
    const limit = 256 * 1024 * 1024;
    // The client writes until its socket says stop; with nothing read at the far end, that must come long before the limit.
    const stopped = await new Promise<boolean>((resolve) => {
      const pump = (): void => {
        while (sent < limit) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            resolve(true);
            return;
          }
        }
        resolve(false);
      };
      req.on('socket', (socket) => socket.once('connect', pump));
    });
    expect(stopped).toBe(true);
    await eventually(() => upload !== null, 'the upload to reach the backend');
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    upload!.resume();
    req.end();
    expect(await answered).toBe(200);
  });
});

describe('connections to a backend', () => {
  it('serves 300 concurrent long-lived streams to one backend with the default settings', async () => {
    const b = await backend();
    const open: http.ServerResponse[] = [];
    b.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      open.push(res);
    });
    const gw = await gateway(pool(b));
    const streams = await Promise.all(Array.from({ length: 300 }, () => head(`${gw.url}/events`)));
    expect(streams.every((s) => s.res.statusCode === 200)).toBe(true);
    expect(open.length).toBe(300);
    const ends = streams.map(({ res }) => new Promise<string>((resolve) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }));
    for (const res of open) res.end('data: bye\n\n');
    expect(new Set(await Promise.all(ends))).toEqual(new Set(['data: bye\n\n']));
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).not.toMatch(/balancer_upstream_errors_total\{[^}]*backend="b"/);
  });

  it('holds requests beyond connections.max until a connection frees, and a wait past the connect timeout is a 503 that does not count against the backend', async () => {
    const b = await backend();
    const releases: Array<() => void> = [];
    b.handle((req, res) => {
      if (req.url === '/fast') {
        res.end('fast');
        return;
      }
      releases.push(() => res.end('slow'));
    });
    // One failure would eject the backend: a local wait counted as one would show at once.
    const gw = await gateway(
      pool(b, '    connections: { max: 1 }\n    retries: 0\n    timeouts: { connect: 300ms }\n    outlierDetection: { consecutiveGatewayFailures: 1, maxEjectionPercent: 100 }\n'),
    );
    const held = request(`${gw.url}/slow`);
    await eventually(() => releases.length === 1, 'the first request at the backend');
    // Waits for the only connection, longer than the connect timeout.
    const waited = await request(`${gw.url}/fast`);
    expect(waited.status).toBe(503);
    expect(JSON.parse(waited.body).error.code).toBe('CIRCUIT_OPEN');
    expect(waited.headers['retry-after']).toBe('1');
    // Waits for the only connection, which frees in time this time.
    const queued = request(`${gw.url}/fast`);
    releases[0]!();
    expect((await held).body).toBe('slow');
    expect((await queued).body).toBe('fast');
    expect(gw.app.dataPlane.table.pools.get('web')!.pool.backends[0]!.state).toBe('up');
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).not.toMatch(/balancer_upstream_errors_total\{[^}]*reason="connect_timeout"/);
    expect(metrics).not.toMatch(/balancer_outlier_ejections_total\{pool="web",backend="b"\} [1-9]/);
  });
});
