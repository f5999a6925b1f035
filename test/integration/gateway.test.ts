// The single-node gateway end to end: real backends, real sockets, the App as `balancer start` runs it.

import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { acceptWebSocket, startBackend, request, rawExchange, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { eventually } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function backends(n: number): Promise<TestBackend[]> {
  const list: TestBackend[] = [];
  for (let i = 0; i < n; i++) {
    const backend = await startBackend(`b${i + 1}`);
    cleanups.push(() => backend.close());
    list.push(backend);
  }
  return list;
}

async function gateway(yaml: string): Promise<TestGateway> {
  const gw = await startGateway(yaml);
  cleanups.push(() => gw.stop());
  return gw;
}

function poolYaml(list: readonly TestBackend[], extra = '', strategy = 'round-robin', weights: number[] = []): string {
  const lines = list.map((b, i) => `      - { url: ${b.url}, id: ${b.name}${weights[i] ? `, weight: ${weights[i]}` : ''} }`).join('\n');
  return `pools:\n  web:\n    strategy: ${strategy}\n    backends:\n${lines}\n${extra}`;
}

async function sequence(url: string, n: number, agent?: http.Agent): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await request(url, agent === undefined ? {} : { agent });
    expect(res.status).toBe(200);
    names.push(String(res.headers['x-backend']));
  }
  return names;
}

describe('routing and strategies through the proxy', () => {
  it('round-robin rotates strictly over three backends', async () => {
    const list = await backends(3);
    const gw = await gateway(poolYaml(list));
    const names = await sequence(`${gw.url}/`, 9);
    expect(names).toEqual(['b1', 'b2', 'b3', 'b1', 'b2', 'b3', 'b1', 'b2', 'b3']);
  });

  it('weighted follows smooth weighted round-robin (5,1,1 gives a a b a c a a)', async () => {
    const list = await backends(3);
    const gw = await gateway(poolYaml(list, '', 'weighted', [5, 1, 1]));
    expect(await sequence(`${gw.url}/`, 7)).toEqual(['b1', 'b1', 'b2', 'b1', 'b3', 'b1', 'b1']);
  });

  it('random spreads over every backend', async () => {
    const list = await backends(3);
    const gw = await gateway(poolYaml(list, '', 'random'));
    const agent = new http.Agent({ keepAlive: true });
    const counts = new Map<string, number>();
    for (const name of await sequence(`${gw.url}/`, 300, agent)) counts.set(name, (counts.get(name) ?? 0) + 1);
    agent.destroy();
    for (const b of list) expect(counts.get(b.name) ?? 0).toBeGreaterThan(50);
  });

  it('routes by host (exact and wildcard) and path prefix, first match wins, 404 JSON otherwise', async () => {
    const [api, web, admin] = await backends(3);
    const gw = await gateway(`routes:
  - match: { host: api.example.com, pathPrefix: /v1 }
    pool: api
  - match: { host: "*.example.com", pathPrefix: /admin }
    pool: admin
  - match: { host: www.example.com }
    pool: web
pools:
  api: { backends: [ { url: ${api!.url}, id: api } ] }
  web: { backends: [ { url: ${web!.url}, id: web } ] }
  admin: { backends: [ { url: ${admin!.url}, id: admin } ] }
`);
    const via = async (host: string, path: string) => request(`${gw.url}${path}`, { headers: { host } });
    expect((await via('api.example.com', '/v1/users')).headers['x-backend']).toBe('b1');
    expect((await via('API.example.com:8080', '/v1')).headers['x-backend']).toBe('b1');
    expect((await via('x.y.example.com', '/admin/x')).headers['x-backend']).toBe('b3');
    expect((await via('www.example.com', '/anything')).headers['x-backend']).toBe('b2');
    const miss = await via('example.com', '/admin');
    expect(miss.status).toBe(404);
    expect(JSON.parse(miss.body).error.code).toBe('NO_ROUTE');
  });
});

describe('forwarding', () => {
  it('sets X-Forwarded-* and strips hop-by-hop headers, including those named in Connection', async () => {
    const [b] = await backends(1);
    const gw = await gateway(poolYaml([b!]));
    const res = await request(`${gw.url}/path?q=1`, {
      headers: {
        host: 'shop.example.com',
        connection: 'keep-alive, x-secret-hop, x-forwarded-for',
        'x-secret-hop': 'must not pass',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-proto': 'https',
        te: 'trailers',
        'x-end-to-end': 'kept',
      },
    });
    expect(res.status).toBe(200);
    const seen = b!.seen.at(-1)!;
    expect(seen.url).toBe('/path?q=1');
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    expect(seen.headers['keep-alive']).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers['te']).toBeUndefined();
    expect(seen.headers['x-end-to-end']).toBe('kept');
    // The client is not a trusted proxy: its forwarded headers are replaced, not extended.
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe('shop.example.com');
    expect(seen.headers.host).toBe('shop.example.com');
  });

  it('forwards the normalised path (slashes merged, escapes kept when allowed) with the query untouched', async () => {
    const [b] = await backends(1);
    const gw = await gateway(`limits: { rejectEncodedSlash: false }\n${poolYaml([b!])}`);
    const raw = await rawExchange(gw.port, `GET //a//b/%2f..%2Fc/%7e?x=1&y=%20z&&q=/p/../?r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(raw.startsWith('HTTP/1.1 200')).toBe(true);
    expect(b!.seen.at(-1)!.url).toBe('/a/b/%2F..%2Fc/~?x=1&y=%20z&&q=/p/../?r');
  });

  it('relays the response head as written: status text, repeated fields and their case, without hop-by-hop fields', async () => {
    const [b] = await backends(1);
    b!.handle((_req, res) => {
      res.writeHead(299, 'Quite Fine', [
        'Set-Cookie', 'a=1',
        'set-cookie', 'b=2',
        'X-Mixed-Case', 'kept',
        'Connection', 'keep-alive, X-Named-Hop',
        'X-Named-Hop', 'dropped',
        'Keep-Alive', 'timeout=99',
        'Proxy-Connection', 'keep-alive',
        'Content-Length', '2',
      ]);
      res.end('ok');
    });
    const gw = await gateway(poolYaml([b!]));
    const raw = await rawExchange(gw.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const [head, body] = raw.split('\r\n\r\n');
    const lines = head!.split('\r\n');
    expect(lines[0]).toBe('HTTP/1.1 299 Quite Fine');
    expect(lines).toContain('Set-Cookie: a=1');
    expect(lines).toContain('set-cookie: b=2');
    expect(lines).toContain('X-Mixed-Case: kept');
    expect(lines).toContain('Content-Length: 2');
    // The client asked to close; the backend's keep-alive wish is not passed on.
    expect(lines.filter((line) => /^connection:/i.test(line))).toEqual(['connection: close']);
    expect(head).not.toMatch(/x-named-hop|keep-alive:|proxy-connection/i);
    expect(body).toBe('ok');
  });

  it('says how the client connection continues: keep-alive for HTTP/1.1, close for HTTP/1.0 when the body has no length', async () => {
    const [b] = await backends(1);
    b!.handle((_req, res) => {
      // No Content-Length: HTTP/1.1 gets it chunked, HTTP/1.0 can only have it delimited by the close.
      res.writeHead(200, { connection: 'close' });
      res.write('part1,');
      setImmediate(() => res.end('part2'));
    });
    const gw = await gateway(poolYaml([b!]));
    const old = await rawExchange(gw.port, 'GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    const [oldHead, oldBody] = old.split('\r\n\r\n');
    expect(oldHead).toMatch(/\r\nconnection: close/i);
    expect(oldHead).not.toMatch(/transfer-encoding/i);
    expect(oldBody).toBe('part1,part2');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const first = await request(`${gw.url}/`, { agent });
    // The backend's own "close" is hop-by-hop: the client keeps its connection.
    expect(first.headers.connection).toBe('keep-alive');
    expect(first.headers['keep-alive']).toMatch(/^timeout=\d+/);
    expect(first.body).toBe('part1,part2');
  });

  it.each([
    ['no Connection header', 'keep-alive', ''],
    ['keep-alive', 'keep-alive', 'Connection: keep-alive\r\n'],
    ['Keep-Alive', 'keep-alive', 'Connection: Keep-Alive\r\n'],
    ['close', 'close', 'Connection: close\r\n'],
    ['Close', 'close', 'Connection: Close\r\n'],
    ['close among other tokens', 'close', 'Connection: keep-alive, X-Hop, close\r\n'],
    ['a token that only contains close', 'keep-alive', 'Connection: closed\r\n'],
  ])('an HTTP/1.1 client that sends %s gets Connection: %s', async (_name, expected, field) => {
    const [b] = await backends(1);
    const gw = await gateway(poolYaml([b!]));
    const head = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(gw.port, '127.0.0.1');
      let received = '';
      socket.on('connect', () => socket.write(`GET / HTTP/1.1\r\nHost: x\r\n${field}\r\n`));
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.destroy();
        resolve(received.slice(0, end));
      });
      socket.on('error', reject);
    });
    expect(head.split('\r\n').filter((line) => /^connection:/i.test(line)).map((line) => line.split(':')[1]!.trim().toLowerCase())).toEqual([expected]);
  });

  it('reads a connection\'s peer address once, however many requests it carries, and names it in each X-Forwarded-For', async () => {
    const [b] = await backends(1);
    const gw = await gateway(poolYaml([b!]));
    const proto = net.Socket.prototype as unknown as { _getpeername: (this: net.Socket) => unknown };
    const getpeername = proto._getpeername;
    let reads = 0;
    // Counted on the proxy's client-side sockets only (the gateway runs in this process).
    proto._getpeername = function (this: net.Socket) {
      if (this.localPort === gw.port) reads++;
      return getpeername.call(this);
    };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await request(`${gw.url}/`, { agent });
      const afterFirst = reads;
      await request(`${gw.url}/`, { agent });
      await request(`${gw.url}/`, { agent });
      expect(afterFirst).toBeGreaterThan(0);
      expect(reads).toBe(afterFirst);
      expect(b!.seen.slice(-3).map((seen) => seen.headers['x-forwarded-for'])).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    } finally {
      proto._getpeername = getpeername;
      agent.destroy();
    }
  });

  it('extends X-Forwarded-For from a trusted proxy', async () => {
    const [b] = await backends(1);
    const gw = await gateway(`trustedProxies: [127.0.0.0/8]\n${poolYaml([b!])}`);
    await request(`${gw.url}/`, { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
    const seen = b!.seen.at(-1)!;
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
  });

  it('streams a 100 MB upload and a 100 MB download intact', async () => {
    const [b] = await backends(1);
    const size = 100 * 1024 * 1024;
    b!.handle((req, res) => {
      if (req.method === 'POST') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
        return;
      }
      res.writeHead(200, { 'content-length': size });
      const chunk = Buffer.alloc(1024 * 1024, 7);
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const gw = await gateway(poolYaml([b!]));
    const expected = createHash('sha256');
    const upload = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      const req = http.request(`${gw.url}/upload`, { method: 'POST', agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(JSON.parse(text)));
      });
      req.on('error', reject);
      let written = 0;
      const block = randomBytes(1024 * 1024);
      const write = (): void => {
        while (written < size) {
          written += block.length;
          expected.update(block);
          if (!req.write(block)) {
            req.once('drain', write);
            return;
          }
        }
        req.end();
      };
      write();
    });
    expect(upload.bytes).toBe(size);
    expect(upload.sha256).toBe(expected.digest('hex'));
    const downloaded = await new Promise<number>((resolve, reject) => {
      http.get(`${gw.url}/download`, { agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve(bytes));
        res.on('error', reject);
      });
    });
    expect(downloaded).toBe(size);
  });

  it('proxies a WebSocket upgrade and relays bytes both ways', async () => {
    const [b] = await backends(1);
    let upgradedPath = '';
    b!.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      upgradedPath = req.url ?? '';
      acceptWebSocket(req, socket);
      socket.on('data', (data) => socket.write(Buffer.concat([Buffer.from('echo:'), data])));
      socket.on('end', () => {
        upstreamEnded();
        socket.end();
      });
    });
    let upstreamEnded: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => (upstreamEnded = resolve));
    const gw = await gateway(poolYaml([b!]));
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(gw.port, '127.0.0.1');
      let buffer = '';
      let upgraded = false;
      socket.on('connect', () =>
        socket.write('GET /chat//room?a=1&b=%2F HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
      );
      socket.on('data', (data) => {
        buffer += data.toString('latin1');
        if (!upgraded && buffer.includes('\r\n\r\n')) {
          upgraded = true;
          expect(buffer.startsWith('HTTP/1.1 101')).toBe(true);
          buffer = '';
          socket.write('hello');
        } else if (upgraded && buffer.includes('echo:hello')) {
          socket.destroy();
          resolve(buffer);
        }
      });
      socket.on('error', reject);
    });
    expect(reply).toBe('echo:hello');
    // The backend gets the normalised path and the query as the client sent it.
    expect(upgradedPath).toBe('/chat/room?a=1&b=%2F');
    // The client went away: the tunnel's upstream side is closed too, not left half-open.
    await ended;
  });

  it('relays a backend that refuses the WebSocket upgrade and keeps serving', async () => {
    const [b] = await backends(1);
    b!.server.on('upgrade', (_req: http.IncomingMessage, socket: net.Socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\nconnection: close\r\n\r\nnope!\n');
    });
    const gw = await gateway(poolYaml([b!]));
    const answer = await rawExchange(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(answer.startsWith('HTTP/1.1 403')).toBe(true);
    expect((await request(`${gw.url}/`)).status).toBe(200);
  });
});

describe('failures never crash the process and map to 502/503/504', () => {
  it('retries a refused connection on another backend: no client error while one backend is down', async () => {
    const list = await backends(2);
    const dead = await freePort();
    const gw = await gateway(
      `pools:\n  web:\n    strategy: round-robin\n    backends:\n      - { url: http://127.0.0.1:${dead}, id: dead }\n${list.map((b) => `      - { url: ${b.url}, id: ${b.name} }`).join('\n')}\n`,
    );
    for (let i = 0; i < 12; i++) {
      const res = await request(`${gw.url}/`, i % 2 === 0 ? { method: 'GET' } : { method: 'POST', body: 'payload' });
      expect(res.status).toBe(200);
    }
    const posted = [...list[0]!.seen, ...list[1]!.seen].filter((s) => s.method === 'POST');
    expect(posted.length).toBe(6);
    for (const s of posted) expect(s.bodyBytes).toBe(7);
  });

  it('answers 503 with a stable code when every backend refuses', async () => {
    const gw = await gateway(`pools:\n  web:\n    backends:\n      - { url: http://127.0.0.1:${await freePort()} }\n`);
    const res = await request(`${gw.url}/`);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).error.code).toBe('NO_AVAILABLE_BACKEND');
  });

  it('answers 504 when the backend does not answer in time, and never retries a POST that was sent', async () => {
    const [slow] = await backends(1);
    let posts = 0;
    slow!.handle((req) => {
      if (req.method === 'POST') posts += 1;
      // never answers
    });
    const gw = await gateway(poolYaml([slow!], '    timeouts: { connect: 1s, response: 300ms, idle: 1s }\n'));
    const res = await request(`${gw.url}/`, { method: 'POST', body: 'x' });
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body).error.code).toBe('UPSTREAM_RESPONSE_TIMEOUT');
    expect(posts).toBe(1);
  });

  it('cuts a response whose body stalls longer than the idle timeout, but not one that trickles steadily', async () => {
    const [b] = await backends(1);
    b!.handle((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      // /trickle: a chunk every 100 ms for 800 ms, longer in all than the idle timeout but never idle that long.
      const timer = setInterval(() => {
        if (req.url === '/stall' && sent === 1) return;
        res.write(`chunk${sent}\n`);
        sent += 1;
        if (sent === 8) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    const gw = await gateway(poolYaml([b!], '    timeouts: { connect: 1s, response: 1s, idle: 400ms }\n'));
    const trickled = await request(`${gw.url}/trickle`);
    expect(trickled.status).toBe(200);
    expect(trickled.body.split('\n').filter(Boolean)).toHaveLength(8);
    const stalled = await new Promise<string>((resolve) => {
      http.get(`${gw.url}/stall`, { agent: false }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('cut'));
        res.on('aborted', () => resolve('cut'));
      }).on('error', () => resolve('cut'));
    });
    expect(stalled).toBe('cut');
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/balancer_upstream_errors_total\{[^}]*reason="idle_timeout"[^}]*\} 1/);
  });

  it('cuts the client off when the backend resets mid-response, and keeps serving', async () => {
    const [b] = await backends(1);
    b!.handle((req, res) => {
      if (req.url === '/reset') {
        res.writeHead(200, { 'content-length': 1000 });
        res.write('partial');
        setImmediate(() => req.socket.destroy());
        return;
      }
      res.end('fine');
    });
    const gw = await gateway(poolYaml([b!]));
    const outcome = await new Promise<string>((resolve) => {
      http.get(`${gw.url}/reset`, { agent: false }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('error'));
        res.on('aborted', () => resolve('aborted'));
      }).on('error', () => resolve('error'));
    });
    expect(outcome).not.toBe('ended');
    expect((await request(`${gw.url}/ok`)).body).toBe('fine');
  });

  it('survives a client aborting mid-upload and cancels the upstream request', async () => {
    const [b] = await backends(1);
    let upstreamClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
    let arrived = false;
    b!.handle((req, res) => {
      if (req.method === 'GET') {
        res.end('still serving');
        return;
      }
      arrived = true;
      req.on('data', () => undefined);
      req.on('close', () => upstreamClosed());
    });
    const gw = await gateway(poolYaml([b!]));
    const req = http.request(`${gw.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': 10_000_000 } });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(64 * 1024));
    await eventually(() => arrived, 'upload to reach the backend');
    req.destroy();
    await closed;
    await eventually(() => gw.app.dataPlane.table.pools.get('web')!.pool.backends[0]!.inflight === 0, 'in-flight count back to 0');
    expect((await request(`${gw.url}/`)).status).toBe(200);
  });

  it('answers 503 with Retry-After when no backend is available', async () => {
    const [b] = await backends(1);
    const gw = await gateway(`pools:\n  web:\n    panicThreshold: 0\n    backends:\n      - { url: ${b!.url}, drain: true }\n`);
    const res = await request(`${gw.url}/`);
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(res.body).error.code).toBe('NO_AVAILABLE_BACKEND');
  });
});

describe('request guards on raw sockets', () => {
  async function guarded(): Promise<{ gw: TestGateway; b: TestBackend }> {
    const [b] = await backends(1);
    const gw = await gateway(`limits: { maxHeaderSize: 4kb, headersTimeout: 500ms }\n${poolYaml([b!])}`);
    return { gw, b: b! };
  }

  it.each([
    ['CL and TE together (CL.TE)', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG'],
    ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'],
    ['invalid Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc'],
    ['obfuscated Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
    ['DELETE with chunked body (http-proxy deleteLength path)', 'DELETE / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n5\r\nGET /\r\n0\r\n\r\n'],
  ])('rejects %s with 400 before any backend sees it', async (_name, payload) => {
    const { gw, b } = await guarded();
    const answer = await rawExchange(gw.port, payload);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(b.seen.length).toBe(0);
  });

  it('forwards a DELETE with a chunked body framed exactly as parsed', async () => {
    const { gw, b } = await guarded();
    const answer = await rawExchange(gw.port, 'DELETE /item HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(b.seen.length).toBe(1);
    expect(b.seen[0]!.method).toBe('DELETE');
    expect(b.seen[0]!.bodyBytes).toBe(5);
  });

  it('answers 431 to oversized headers', async () => {
    const { gw, b } = await guarded();
    const answer = await rawExchange(gw.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(b.seen.length).toBe(0);
  });

  it('refuses absolute-form requests for foreign hosts and CONNECT', async () => {
    const { gw, b } = await guarded();
    expect(await rawExchange(gw.port, 'GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 [^]*FORWARD_PROXY_REFUSED/);
    expect(await rawExchange(gw.port, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n')).toMatch(/^HTTP\/1\.1 (400|405) /);
    expect(b.seen.length).toBe(0);
    const same = await rawExchange(gw.port, 'GET http://x/p?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(same).toMatch(/^HTTP\/1\.1 200 /);
    expect(b.seen[0]!.url).toBe('/p?q');
  });

  it('cuts off a slowloris client that never finishes its headers', async () => {
    const { gw } = await guarded();
    const socket = net.connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const dripper = setInterval(() => socket.write('a'), 100);
    const closedAfter = await new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('close', () => resolve(data));
    });
    clearInterval(dripper);
    expect(closedAfter === '' || closedAfter.startsWith('HTTP/1.1 408')).toBe(true);
  });

  it('never forwards a request whose head is completed after its 408', async () => {
    const { gw, b } = await guarded();
    const socket = net.connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    let data = '';
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const answered = new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        data += chunk.toString();
        if (data.includes('\r\n\r\n')) resolve();
      }),
    );
    socket.write('GET /late HTTP/1.1\r\nHost: x\r\n');
    await answered;
    expect(data).toMatch(/^HTTP\/1\.1 408 /);
    // The connection lingers for the client to read the answer; the rest of the head must not become a request.
    socket.write('X-Late: 1\r\n\r\n');
    await closed;
    // A request sent after it, on a fresh connection, reaches the backend after the late one would have.
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect(b.seen.map((seen) => seen.url)).toEqual(['/after']);
  });
});

describe('hot reload', () => {
  it('applies a valid edit of the file and keeps serving the old config on an invalid one', async () => {
    const [b1, b2] = await backends(2);
    const gw = await gateway(poolYaml([b1!]));
    const { writeFile } = await import('node:fs/promises');
    const header = `listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token: test-token\n`;
    await writeFile(gw.file, header + poolYaml([b2!]));
    await eventually(async () => (await request(`${gw.url}/`)).headers['x-backend'] === 'b2', 'edit to apply');
    await writeFile(gw.file, header + 'pools:\n  web:\n    strategy: fastest\n    backends:\n      - { url: ftp://nope }\n');
    const summary = 'config edit rejected: the file is invalid; the previous config keeps serving';
    await eventually(() => gw.logs.some((l) => l['msg'] === summary), 'invalid edit to be logged');
    const rejected = gw.logs.find((l) => l['msg'] === summary)!;
    // Each problem has its own line, FILE:LINE:COL first, as `balancer validate` prints it.
    const problemLines = gw.logs.filter((l) => l['level'] === 'error' && String(l['msg']).startsWith(`${gw.file}:`)).map((l) => String(l['msg']));
    expect(problemLines).toHaveLength(Number(rejected['problems']));
    expect(problemLines.some((line) => line.startsWith(`${gw.file}:7:15: pools.web.strategy`))).toBe(true);
    expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('b2');
  });

  it('lets an in-flight request finish on the old config while a new one is applied', async () => {
    const [slow, fresh] = await backends(2);
    let release: () => void = () => undefined;
    slow!.handle((_req, res) => {
      release = () => res.end('old');
    });
    const gw = await gateway(poolYaml([slow!]));
    const pending = request(`${gw.url}/`);
    await eventually(() => gw.app.dataPlane.table.pools.get('web')!.pool.backends[0]!.inflight === 1, 'request in flight');
    await gw.app.store.putConfig({ pools: { web: { backends: [{ url: fresh!.url, id: 'fresh' }] } }, routes: [] }, {});
    expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('b2');
    release();
    expect((await pending).body).toBe('old');
  });
});

describe('graceful shutdown', () => {
  it('lets in-flight requests finish, then stops accepting', async () => {
    const [b] = await backends(1);
    let release: () => void = () => undefined;
    b!.handle((_req, res) => {
      release = () => res.end('done');
    });
    const gw = await startGateway(poolYaml([b!]));
    const pending = request(`${gw.url}/`);
    await eventually(() => gw.app.dataPlane.table.pools.get('web')!.pool.backends[0]!.inflight === 1, 'request in flight');
    const stopped = gw.app.stop(5_000);
    setTimeout(() => release(), 50);
    expect((await pending).body).toBe('done');
    await stopped;
    await expect(request(`${gw.url}/`)).rejects.toThrow();
  });
});
