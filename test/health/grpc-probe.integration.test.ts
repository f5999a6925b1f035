// The gRPC health probe against real @grpc/grpc-js servers: SERVING passes; NOT_SERVING, unknown services, servers without the health service and non-gRPC servers fail with what was seen; h2 over verified TLS.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { systemClock } from '../../src/clock.js';
import { createProbe, type ProbeTarget } from '../../src/health/probe.js';
import { makeCerts } from '../helpers/certs.js';
import { NO_UPSTREAM_TLS } from '../../src/balancer/upstream-tls.js';

const probe = createProbe(systemClock);
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function target(url: string, overrides: Partial<ProbeTarget> = {}): ProbeTarget {
  return { url: new URL(url), path: null, grpcService: '', host: null, timeoutMs: 2_000, expectedStatuses: [[200, 399]], tls: NO_UPSTREAM_TLS, serverName: null, ...overrides };
}

async function grpcServer(options: { health?: boolean; credentials?: grpc.ServerCredentials } = {}): Promise<{ port: number; health: HealthImplementation }> {
  const server = new grpc.Server();
  cleanups.push(() => server.forceShutdown());
  const health = new HealthImplementation({ '': 'SERVING', 'shop.Orders': 'SERVING' });
  if (options.health !== false) health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', options.credentials ?? grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
  );
  return { port, health };
}

describe('gRPC health probe', () => {
  it('passes on SERVING, for the whole server and for a named service; fails on NOT_SERVING', async () => {
    const { port, health } = await grpcServer();
    const url = `http://127.0.0.1:${port}`;
    expect(await probe(target(url))).toEqual({ result: 'pass', detail: 'SERVING' });
    expect(await probe(target(url, { grpcService: 'shop.Orders' }))).toEqual({ result: 'pass', detail: 'SERVING' });
    health.setStatus('shop.Orders', 'NOT_SERVING');
    expect(await probe(target(url, { grpcService: 'shop.Orders' }))).toEqual({ result: 'fail', detail: 'NOT_SERVING' });
    // The whole server's status is its own entry.
    expect(await probe(target(url))).toEqual({ result: 'pass', detail: 'SERVING' });
  });

  it('an unknown service, a server without the health service, and a server that is not gRPC fail', async () => {
    const { port } = await grpcServer();
    const unknown = await probe(target(`http://127.0.0.1:${port}`, { grpcService: 'shop.Missing' }));
    expect(unknown.result).toBe('fail');
    expect(unknown.detail).toMatch(/^grpc-status 5\b/);

    const bare = await grpcServer({ health: false });
    const unimplemented = await probe(target(`http://127.0.0.1:${bare.port}`));
    expect(unimplemented.result).toBe('fail');
    expect(unimplemented.detail).toMatch(/^grpc-status 12\b/);

    // An HTTP/1.1 server does not speak h2c: the connection fails, it is not taken for an answer.
    const plain = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => plain.close(() => resolve())));
    const notGrpc = await probe(target(`http://127.0.0.1:${(plain.address() as { port: number }).port}`, { timeoutMs: 1_000 }));
    expect(notGrpc.result).not.toBe('pass');
  });

  it('speaks h2 over TLS to an https backend, verifying its certificate against the pool CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'grpc-probe-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const certs = makeCerts(dir, 'backend');
    const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(certs.cert), private_key: readFileSync(certs.key) }]);
    const { port } = await grpcServer({ credentials });
    const url = `https://127.0.0.1:${port}`;
    expect(await probe(target(url, { tls: { ...NO_UPSTREAM_TLS, ca: readFileSync(certs.ca, 'utf8') } }))).toEqual({ result: 'pass', detail: 'SERVING' });
    // Without the CA the certificate does not verify: never a pass.
    expect((await probe(target(url))).result).toBe('error');
  });
});
