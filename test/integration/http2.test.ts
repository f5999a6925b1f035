// HTTP/2 to clients with real clients (curl --http2 and --http2-prior-knowledge, Node's http2 client): served like HTTP/1.1, with its own guards and flood limits.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http2 from 'node:http2';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const run = promisify(execFile);
const resources = perTestResources();

let dir: string;
let certs: TestCerts;
let backend: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-h2-'));
  certs = makeCerts(dir, 'h2');
  backend = await startBackend('b');
});

afterAll(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

const pools = () => `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;

function port(gw: TestGateway, name: string): number {
  return gw.app.listenerAddresses.get(name)!.port;
}

/** curl's answer: the protocol it spoke, the status and the body. */
async function curl(args: readonly string[]): Promise<{ version: string; status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_version} %{http_code}', ...args], { encoding: 'utf8' });
  const cut = stdout.lastIndexOf('\n');
  const [version, status] = stdout.slice(cut + 1).split(' ');
  return { version: version!, status: Number(status), body: stdout.slice(0, cut) };
}

/** One request on an open HTTP/2 session: status, headers and body. */
function h2request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, body === undefined ? { endStream: true } : {});
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (received) => (responseHeaders = received));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, body: Buffer.concat(chunks).toString('utf8') }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

describe('HTTP/2 on a TLS listener (ALPN h2, on by default)', () => {
  it('serves curl --http2 and Node clients over h2, many streams on one connection, bodies without Content-Length', async () => {
    const gw = await resources.gateway(`log: { access: true, accessFile: access.log }\ntls: { cert: ${certs.cert}, key: ${certs.key} }\n${pools()}`);
    const p = port(gw, 'default');
    const viaCurl = await curl(['--http2', '--cacert', certs.ca, `https://127.0.0.1:${p}/curl`]);
    expect(viaCurl.version).toBe('2');
    expect(viaCurl.status).toBe(200);
    const seen = backend.seen.find((entry) => entry.url === '/curl')!;
    expect(seen.headers.host).toBe(`127.0.0.1:${p}`);
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(Object.keys(seen.headers).some((name) => name.startsWith(':'))).toBe(false);
    // HTTP/1.1 still works on the same port.
    expect((await curl(['--http1.1', '--cacert', certs.ca, `https://127.0.0.1:${p}/one`])).version).toBe('1.1');

    const session = http2.connect(`https://127.0.0.1:${p}`, { ca: await readFile(certs.ca) });
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => h2request(session, { ':path': `/stream-${i}` })));
      expect(answers.every((answer) => answer.status === 200)).toBe(true);
      // A streamed body (no Content-Length) arrives whole.
      const body = Buffer.alloc(300_000, 7);
      const posted = await h2request(session, { ':method': 'POST', ':path': '/upload' }, body);
      expect(posted.status).toBe(200);
      expect(JSON.parse(posted.body)).toMatchObject({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
      // The limits a client is told.
      expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
      expect(session.remoteSettings.maxHeaderListSize).toBe(16 * 1024);
    } finally {
      session.close();
    }
    // The access log says which protocol each request used.
    await eventually(async () => (await readFile(join(gw.dir, 'access.log'), 'utf8').catch(() => '')).includes('/upload'), 'the access lines');
    const lines = (await readFile(join(gw.dir, 'access.log'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.find((line) => line['path'] === '/curl')!['protocol']).toBe('HTTP/2.0');
    expect(lines.find((line) => line['path'] === '/one')!['protocol']).toBe('HTTP/1.1');
  });

  it('http2: false offers only HTTP/1.1', async () => {
    const gw = await resources.gateway(`listeners:\n  - name: tls\n    listen: "127.0.0.1:0"\n    http2: false\n    tls: { cert: ${certs.cert}, key: ${certs.key} }\n${pools()}`);
    const answer = await curl(['--http2', '--cacert', certs.ca, `https://127.0.0.1:${port(gw, 'tls')}/`]);
    expect(answer.version).toBe('1.1');
    expect(answer.status).toBe(200);
  });
});

describe('h2c (prior knowledge) on a plain listener', () => {
  it('serves curl --http2-prior-knowledge and HTTP/1.1 on one port; without h2c the preface gets no HTTP/2', async () => {
    const gw = await resources.gateway(`listeners:\n  - { name: h2c, listen: "127.0.0.1:0", h2c: true }\n  - { name: plain, listen: "127.0.0.1:0" }\n${pools()}`);
    const h2 = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${port(gw, 'h2c')}/h2c`]);
    expect(h2).toMatchObject({ version: '2', status: 200 });
    expect(backend.seen.find((entry) => entry.url === '/h2c')!.headers['x-forwarded-proto']).toBe('http');
    expect((await request(`http://127.0.0.1:${port(gw, 'h2c')}/h1`)).status).toBe(200);
    await expect(curl(['--http2-prior-knowledge', `http://127.0.0.1:${port(gw, 'plain')}/`])).rejects.toThrow();
  });

  it('a Content-Length that the DATA frames do not match never reaches a backend as a whole request', async () => {
    const gw = await resources.gateway(`listeners:\n  - { name: h2c, listen: "127.0.0.1:0", h2c: true }\n${pools()}`);
    const session = http2.connect(`http://127.0.0.1:${port(gw, 'h2c')}`);
    try {
      const short = h2request(session, { ':method': 'POST', ':path': '/short-body', 'content-length': '10' }, 'abc');
      await expect(short).rejects.toThrow();
      const long = h2request(session, { ':method': 'POST', ':path': '/long-body', 'content-length': '2' }, 'abcdef');
      await expect(long).rejects.toThrow();
      // The connection still serves.
      expect((await h2request(session, { ':path': '/after' })).status).toBe(200);
    } finally {
      session.close();
    }
    expect(backend.seen.some((entry) => entry.url === '/short-body' || entry.url === '/long-body')).toBe(false);
  });
});

describe('HTTP/2 flood defences', () => {
  it('closes a connection that resets its streams right after opening them (rapid reset), and serves others', async () => {
    const gw = await resources.gateway(`listeners:\n  - { name: h2c, listen: "127.0.0.1:0", h2c: true }\n${pools()}`);
    const url = `http://127.0.0.1:${port(gw, 'h2c')}`;
    const attacker = http2.connect(url);
    const goaway = new Promise<number>((resolve) => attacker.once('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
    attacker.on('error', () => undefined);
    await new Promise<void>((resolve) => attacker.once('connect', () => resolve()));
    for (let i = 0; i < 1_000 && !attacker.destroyed && !attacker.closed; i++) {
      const stream = attacker.request({ ':path': `/reset-${i}` });
      stream.on('error', () => undefined);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await closed;
    expect(gw.logs.some((line) => line['msg'] === 'HTTP/2 connection closed: streams reset right after opening (rapid reset)')).toBe(true);
    const honest = http2.connect(url);
    try {
      expect((await h2request(honest, { ':path': '/honest' })).status).toBe(200);
    } finally {
      honest.close();
    }
  });
});

describe('draining HTTP/2', () => {
  it('a removed listener sends GOAWAY: the stream in flight finishes, new connections are refused', async () => {
    const header = 'admin:\n  listen: 127.0.0.1:0\n  token: test-token\n';
    const gw = await resources.gateway(`listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n  - { name: h2c, listen: "127.0.0.1:0", h2c: true }\n${pools()}`);
    const url = `http://127.0.0.1:${port(gw, 'h2c')}`;
    backend.handle((req, res) => {
      if (req.url === '/slow-h2') setTimeout(() => res.end('slow h2 done'), 1_000);
      else res.end('ok');
    });
    const session = http2.connect(url);
    session.on('error', () => undefined);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    try {
      expect((await h2request(session, { ':path': '/warm' })).status).toBe(200);
      const slow = h2request(session, { ':path': '/slow-h2' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await writeFile(gw.file, `${header}listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n${pools()}`);
      await goaway;
      const answer = await slow;
      expect(answer).toMatchObject({ status: 200, body: 'slow h2 done' });
      await expect(curl(['--http2-prior-knowledge', `${url}/after`])).rejects.toThrow();
    } finally {
      backend.handle(null);
      session.close();
    }
  });
});
