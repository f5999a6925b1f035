// Resource limits: per-backend concurrency caps with a bounded queue, request body limits, client connection cap.

import { describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { request, rawExchange, type TestBackend } from '../helpers/backend.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const { backend, gateway } = perTestResources();

describe('circuit breaking', () => {
  it('caps concurrent requests per backend, queues a bounded number, and answers 503 on overflow', async () => {
    const b = await backend('b');
    const releases: Array<() => void> = [];
    b.handle((_req, res) => releases.push(() => res.end('ok')));
    const gw = await gateway(`pools:\n  web:\n    circuitBreaker: { maxRequestsPerBackend: 1, maxPendingPerBackend: 1 }\n    timeouts: { connect: 5s }\n    backends:\n      - { url: ${b.url} }\n`);
    const first = request(`${gw.url}/1`);
    await eventually(() => releases.length === 1, 'first request at the backend');
    const queued = request(`${gw.url}/2`);
    const overflow = await request(`${gw.url}/3`);
    expect(overflow.status).toBe(503);
    expect(JSON.parse(overflow.body).error.code).toBe('CIRCUIT_OPEN');
    // The queued request has not reached the backend: the cap holds.
    expect(releases.length).toBe(1);
    releases[0]!();
    expect((await first).status).toBe(200);
    await eventually(() => releases.length === 2, 'queued request to be sent once a slot freed');
    releases[1]!();
    expect((await queued).status).toBe(200);
  });
});

describe('request body limits', () => {
  async function limited(): Promise<{ gw: TestGateway; b: TestBackend }> {
    const b = await backend('b');
    const gw = await gateway(`limits: { maxBodySize: 1mb }\nroutes:\n  - { match: { pathPrefix: /small }, pool: web, maxBodySize: 1kb }\n  - { match: { pathPrefix: /large }, pool: web, maxBodySize: 4mb }\n  - { match: { pathPrefix: / }, pool: web }\npools:\n  web:\n    backends:\n      - { url: ${b.url} }\n`);
    return { gw, b };
  }

  it('answers 413 to a Content-Length over the route limit without contacting the backend', async () => {
    const { gw, b } = await limited();
    const res = await request(`${gw.url}/small`, { method: 'POST', body: Buffer.alloc(2048) });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('REQUEST_TOO_LARGE');
    expect(b.seen.length).toBe(0);
    expect((await request(`${gw.url}/small`, { method: 'POST', body: Buffer.alloc(1000) })).status).toBe(200);
    expect((await request(`${gw.url}/big`, { method: 'POST', body: Buffer.alloc(100_000) })).status).toBe(200);
  });

  it('answers 413 to a chunked body that grows past the limit', async () => {
    const { gw } = await limited();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${gw.url}/small`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 8; i++) req.write(Buffer.alloc(512));
      req.end();
    });
    expect(status).toBe(413);
  });

  it('lets a route raise the limit above the listener\'s', async () => {
    const { gw, b } = await limited();
    const res = await request(`${gw.url}/large`, { method: 'POST', body: Buffer.alloc(2 * 1024 * 1024) });
    expect(res.status).toBe(200);
    expect(b.seen.at(-1)!.bodyBytes).toBe(2 * 1024 * 1024);
  });

  it('applies the listener limit to routes without their own', async () => {
    const { gw } = await limited();
    const answer = await rawExchange(gw.port, `POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
  });
});

describe('client connection cap', () => {
  it('refuses connections beyond limits.maxConnections and keeps serving the others', async () => {
    const b = await backend('b');
    const gw = await gateway(`limits: { maxConnections: 2 }\npools:\n  web:\n    backends:\n      - { url: ${b.url} }\n`);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    await Promise.all([request(`${gw.url}/`, { agent }), request(`${gw.url}/`, { agent })]);
    // Two keep-alive connections are open; a third is closed by the server at once, unanswered.
    const third = await new Promise<string>((resolve) => {
      const socket = net.connect(gw.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      let data = '';
      const timer = setTimeout(() => {
        socket.destroy();
        resolve('still open');
      }, 3_000);
      socket.on('data', (chunk) => (data += chunk.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(`closed:${data}`);
      });
    });
    expect(third).toBe('closed:');
    expect((await request(`${gw.url}/`, { agent })).status).toBe(200);
    agent.destroy();
  });
});
