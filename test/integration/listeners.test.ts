// Several listeners with real clients (curl, openssl s_client): the https redirect, certificates by SNI, client certificates, and listeners changed by a file edit while traffic runs.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import http from 'node:http';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const run = promisify(execFile);
const resources = perTestResources();

let dir: string;
let alpha: TestCerts;
let wildcard: TestCerts;
let fallback: TestCerts;
let client: TestCerts;
let backend: TestBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-listeners-'));
  alpha = makeCerts(dir, 'alpha', ['DNS:alpha.test']);
  wildcard = makeCerts(dir, 'wild', ['DNS:*.wild.test']);
  fallback = makeCerts(dir, 'fallback', ['DNS:fallback.test', 'IP:127.0.0.1']);
  client = makeCerts(dir, 'client', ['DNS:client.test']);
  backend = await startBackend('b');
});

afterAll(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

const pools = () => `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`;

function port(gw: TestGateway, name: string): number {
  const address = gw.app.listenerAddresses.get(name);
  if (address === undefined) throw new Error(`no listener ${name}`);
  return address.port;
}

/** curl's answer: status, headers (lower-cased names) and body; `-k` is never used, the CA is always given. */
async function curl(args: readonly string[]): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-D', '-', ...args], { encoding: 'utf8' });
  // With -L, each response of the chain prints its head: the last one is the answer.
  const blocks = stdout.split('\r\n\r\n');
  let last = 0;
  while (blocks[last + 1]?.startsWith('HTTP/') === true) last += 1;
  const head = blocks[last]!;
  const rest = blocks.slice(last + 1);
  const lines = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(lines[0]!.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

/** The subject CN of the certificate the listener presents for `servername` (none: no SNI). */
async function servedCommonName(portNumber: number, servername: string | null): Promise<string> {
  const args = ['s_client', '-connect', `127.0.0.1:${portNumber}`, servername === null ? '-noservername' : '-servername', ...(servername === null ? [] : [servername])];
  const child = execFile('openssl', args, { encoding: 'utf8', timeout: 10_000 });
  child.stdin?.end();
  let output = '';
  child.stdout?.on('data', (chunk: string) => (output += chunk));
  await new Promise((resolve) => child.on('close', resolve));
  const subject = /subject=.*CN ?= ?([^\s,/]+)/.exec(output);
  if (subject === null) throw new Error(`no certificate in openssl s_client output:\n${output}`);
  return subject[1]!;
}

describe('two listeners with a redirect to https', () => {
  it('redirects http to the TLS listener (301 for GET, 308 for POST) and serves https there', async () => {
    const gw = await resources.gateway(
      `listeners:\n  - { name: http, listen: "127.0.0.1:0", redirectToHttps: true }\n  - name: https\n    listen: "127.0.0.1:0"\n    tls: { cert: ${fallback.cert}, key: ${fallback.key} }\n${pools()}`,
    );
    const httpsPort = port(gw, 'https');
    const get = await curl([`http://127.0.0.1:${port(gw, 'http')}/path/x?y=1`, '-H', 'host: shop.example:8080']);
    expect(get.status).toBe(301);
    expect(get.headers['location']).toBe(`https://shop.example:${httpsPort}/path/x?y=1`);
    const post = await curl([`http://127.0.0.1:${port(gw, 'http')}/form`, '-d', 'a=1']);
    expect(post.status).toBe(308);
    expect(post.headers['location']).toBe(`https://127.0.0.1:${httpsPort}/form`);
    // The redirect never reached the backend.
    expect(backend.seen.some((seen) => seen.url === '/form' || seen.url.startsWith('/path/x'))).toBe(false);

    const served = await curl(['--cacert', fallback.ca, `https://127.0.0.1:${httpsPort}/secure`]);
    expect(served.status).toBe(200);
    expect(backend.seen.at(-1)!.headers['x-forwarded-proto']).toBe('https');
    // curl following the redirect ends up served over https.
    const followed = await curl(['-L', '--cacert', fallback.ca, `http://127.0.0.1:${port(gw, 'http')}/followed`]);
    expect(followed.status).toBe(200);
    expect(backend.seen.at(-1)!.url).toBe('/followed');
  });
});

describe('redirectToHttps and routes that claim the plain listener', () => {
  it('serves the paths a route names the plain listener for (ACME challenges) and redirects everything else', async () => {
    const gw = await resources.gateway(
      `listeners:\n  - { name: http, listen: "127.0.0.1:0", redirectToHttps: true }\n  - name: https\n    listen: "127.0.0.1:0"\n    tls: { cert: ${fallback.cert}, key: ${fallback.key} }\n` +
        `routes:\n  - { match: { listener: http, pathPrefix: /.well-known/acme-challenge/ }, pool: web }\n` +
        `  - { match: { pathPrefix: /.well-known/ }, respond: { status: 200, body: "on any listener" } }\n` +
        `  - { match: { pathPrefix: / }, pool: web }\n${pools()}`,
    );
    const plain = `http://127.0.0.1:${port(gw, 'http')}`;
    const challenge = await curl([`${plain}/.well-known/acme-challenge/token-1`]);
    expect(challenge.status).toBe(200);
    expect(backend.seen.at(-1)!.url).toBe('/.well-known/acme-challenge/token-1');
    expect(backend.seen.at(-1)!.headers['x-forwarded-proto']).toBe('http');
    // A route that names no listener does not claim the plain one: still redirected, as is everything else.
    const unclaimed = await curl([`${plain}/.well-known/security.txt`]);
    expect(unclaimed.status).toBe(301);
    const other = await curl([`${plain}/shop`]);
    expect(other.status).toBe(301);
    expect(other.headers['location']).toBe(`https://127.0.0.1:${port(gw, 'https')}/shop`);
    // The claimed path on the https listener goes by the routes there (the http-only route does not match it).
    const overTls = await curl(['--cacert', fallback.ca, `https://127.0.0.1:${port(gw, 'https')}/.well-known/acme-challenge/token-1`]);
    expect(overTls.body).toBe('on any listener');
  });
});

describe('TLS by SNI', () => {
  it('chooses the certificate by exact and wildcard names; the first serves no SNI and unknown names', async () => {
    const gw = await resources.gateway(
      `tls:\n  certificates:\n    - { cert: ${fallback.cert}, key: ${fallback.key} }\n    - { cert: ${alpha.cert}, key: ${alpha.key} }\n    - { cert: ${wildcard.cert}, key: ${wildcard.key} }\n${pools()}`,
    );
    const p = port(gw, 'default');
    expect(await servedCommonName(p, 'alpha.test')).toBe('alpha.test');
    expect(await servedCommonName(p, 'ALPHA.test')).toBe('alpha.test');
    expect(await servedCommonName(p, 'api.wild.test')).toBe('*.wild.test');
    // A wildcard covers one label only.
    expect(await servedCommonName(p, 'a.b.wild.test')).toBe('fallback.test');
    expect(await servedCommonName(p, 'wild.test')).toBe('fallback.test');
    expect(await servedCommonName(p, 'unknown.test')).toBe('fallback.test');
    expect(await servedCommonName(p, null)).toBe('fallback.test');
    // And a real request by name, verified against the name's own CA.
    const res = await curl(['--cacert', alpha.ca, '--resolve', `alpha.test:${p}:127.0.0.1`, `https://alpha.test:${p}/by-name`]);
    expect(res.status).toBe(200);
  });

  it('refuses TLS versions below minVersion', async () => {
    const gw = await resources.gateway(`tls: { cert: ${fallback.cert}, key: ${fallback.key}, minVersion: TLSv1.3 }\n${pools()}`);
    const p = port(gw, 'default');
    await expect(curl(['--cacert', fallback.ca, '--tls-max', '1.2', `https://127.0.0.1:${p}/`])).rejects.toThrow();
    expect((await curl(['--cacert', fallback.ca, `https://127.0.0.1:${p}/`])).status).toBe(200);
  });
});

describe('client certificates', () => {
  it('require: no certificate, no connection; the verified subject reaches the backend, a forged header never does', async () => {
    const gw = await resources.gateway(
      `tls: { cert: ${fallback.cert}, key: ${fallback.key}, clientCa: ${client.ca}, clientAuth: require, clientCertHeader: X-Client-Subject }\n${pools()}`,
    );
    const url = `https://127.0.0.1:${port(gw, 'default')}/mtls`;
    await expect(curl(['--cacert', fallback.ca, url])).rejects.toThrow();
    // A certificate from another CA does not verify.
    await expect(curl(['--cacert', fallback.ca, '--cert', alpha.cert, '--key', alpha.key, url])).rejects.toThrow();
    const res = await curl(['--cacert', fallback.ca, '--cert', client.cert, '--key', client.key, '-H', 'X-Client-Subject: CN=admin', url]);
    expect(res.status).toBe(200);
    expect(backend.seen.at(-1)!.headers['x-client-subject']).toBe('CN=client.test');
  });

  it('request: a client without a certificate is served, without the header even when it sends one', async () => {
    const gw = await resources.gateway(
      `tls: { cert: ${fallback.cert}, key: ${fallback.key}, clientCa: ${client.ca}, clientAuth: request, clientCertHeader: X-Client-Subject }\n${pools()}`,
    );
    const url = `https://127.0.0.1:${port(gw, 'default')}/optional`;
    const anonymous = await curl(['--cacert', fallback.ca, '-H', 'X-Client-Subject: CN=admin', url]);
    expect(anonymous.status).toBe(200);
    expect(backend.seen.at(-1)!.headers['x-client-subject']).toBeUndefined();
    const named = await curl(['--cacert', fallback.ca, '--cert', client.cert, '--key', client.key, url]);
    expect(named.status).toBe(200);
    expect(backend.seen.at(-1)!.headers['x-client-subject']).toBe('CN=client.test');
    // A certificate that does not verify is refused even though none is required.
    await expect(curl(['--cacert', fallback.ca, '--cert', alpha.cert, '--key', alpha.key, url])).rejects.toThrow();
  });
});

describe('listeners changed by a file edit', () => {
  /** Requests on one listener in a loop (bounded) until stopped: counts of answers and failures. */
  function traffic(portNumber: () => number): { stop(): Promise<{ ok: number; failed: number }> } {
    let running = true;
    const counts = { ok: 0, failed: 0 };
    const loop = (async () => {
      for (let i = 0; running && i < 5_000; i++) {
        const res = await request(`http://127.0.0.1:${portNumber()}/steady`).catch(() => null);
        if (res?.status === 200) counts.ok += 1;
        else counts.failed += 1;
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return counts;
      },
    };
  }

  it('adds a listener, moves one, drains a removed one, while the untouched one serves every request', async () => {
    const header = 'admin:\n  listen: 127.0.0.1:0\n  token: test-token\n';
    const gw = await resources.gateway(`listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n  - { name: old, listen: "127.0.0.1:0" }\n${pools()}`);
    const mainPort = port(gw, 'main');
    const oldPort = port(gw, 'old');
    const steady = traffic(() => mainPort);

    // A slow request in flight on the listener about to be removed.
    backend.handle((req, res) => {
      if (req.url === '/slow') setTimeout(() => res.end('slow done'), 1_500);
      else res.end('ok');
    });
    try {
      const slow = request(`http://127.0.0.1:${oldPort}/slow`);
      await eventually(() => gw.app.listenerAddresses.get('old') !== undefined, 'old listener');
      await new Promise((resolve) => setTimeout(resolve, 200));

      const extra = await new Promise<number>((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
          const free = (probe.address() as net.AddressInfo).port;
          probe.close(() => resolve(free));
        });
      });
      await writeFile(gw.file, `${header}listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n  - { name: extra, listen: "127.0.0.1:${extra}" }\n${pools()}`);
      await eventually(() => gw.app.listenerAddresses.get('extra') !== undefined && gw.app.listenerAddresses.get('old') === undefined, 'extra added and old removed');

      expect((await request(`http://127.0.0.1:${extra}/on-extra`)).status).toBe(200);
      // The removed listener accepts nothing new, but its request in flight finishes.
      await expect(request(`http://127.0.0.1:${oldPort}/after-removal`)).rejects.toThrow(/ECONNREFUSED/);
      const slowAnswer = await slow;
      expect(slowAnswer.status).toBe(200);
      expect(slowAnswer.body).toBe('slow done');

      // Turning TLS on replaces the server on the same address: it serves https at once.
      await writeFile(gw.file, `${header}listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n  - { name: extra, listen: "127.0.0.1:${extra}", tls: { cert: ${fallback.cert}, key: ${fallback.key} } }\n${pools()}`);
      await eventually(() => gw.logs.some((line) => line['msg'] === 'listener replaced' && line['listener'] === 'extra'), 'extra replaced');
      expect((await curl(['--cacert', fallback.ca, `https://127.0.0.1:${extra}/replaced`])).status).toBe(200);
    } finally {
      backend.handle(null);
    }
    const counts = await steady.stop();
    expect(counts.failed).toBe(0);
    expect(counts.ok).toBeGreaterThan(0);
    // Listener edits apply live: nothing asks for a restart.
    const metrics = (await request(`${gw.adminUrl}/metrics`)).body;
    expect(/^balancer_config_restart_required 0$/m.test(metrics)).toBe(true);
  });

  it('a listener that cannot bind is logged and left out; the others keep serving', async () => {
    const header = 'admin:\n  listen: 127.0.0.1:0\n  token: test-token\n';
    const gw = await resources.gateway(`listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n${pools()}`);
    const taken = http.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    try {
      const busy = (taken.address() as net.AddressInfo).port;
      await writeFile(gw.file, `${header}listeners:\n  - { name: main, listen: "127.0.0.1:0" }\n  - { name: busy, listen: "127.0.0.1:${busy}" }\n${pools()}`);
      await eventually(() => gw.logs.some((line) => line['msg'] === 'listener could not start; the other listeners are unaffected'), 'the bind failure logged');
      expect(gw.app.listenerAddresses.has('busy')).toBe(false);
      expect((await request(`http://127.0.0.1:${port(gw, 'main')}/still`)).status).toBe(200);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('certificates edited in the file are served to the next handshake without a new server', async () => {
    const header = 'admin:\n  listen: 127.0.0.1:0\n  token: test-token\n';
    const gw = await resources.gateway(`listeners:\n  - name: tls\n    listen: "127.0.0.1:0"\n    tls: { cert: ${fallback.cert}, key: ${fallback.key} }\n${pools()}`);
    const p = port(gw, 'tls');
    expect(await servedCommonName(p, 'alpha.test')).toBe('fallback.test');
    await writeFile(
      gw.file,
      `${header}listeners:\n  - name: tls\n    listen: "127.0.0.1:0"\n    tls:\n      certificates:\n        - { cert: ${fallback.cert}, key: ${fallback.key} }\n        - { cert: ${alpha.cert}, key: ${alpha.key} }\n${pools()}`,
    );
    await eventually(() => gw.logs.some((line) => line['msg'] === 'listener changed in place'), 'the listener updated');
    expect(port(gw, 'tls')).toBe(p);
    expect(await servedCommonName(p, 'alpha.test')).toBe('alpha.test');
  });
});
