// The data plane's own answers: one catalogue of statuses and codes, written the same way on a ServerResponse and on a bare socket.

import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  CONNECT_REFUSED,
  bodyOverLimit,
  circuitQueueFull,
  circuitWaitExpired,
  classifyUpstreamError,
  framing,
  noAvailableBackend,
  noBackendReachable,
  ConnectionWaitExpired,
  noRoute,
  parseErrorReply,
  target,
  UpstreamTimeout,
  writeErrorResponse,
  writeRawError,
  type ErrorReply,
} from '../../src/proxy/error-status.js';

const servers: Array<http.Server | net.Server> = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

const CATALOGUE: Array<[string, ErrorReply, number, string]> = [
  ['CL and TE together', framing.bothLengthAndEncoding, 400, 'BAD_REQUEST'],
  ['a foreign absolute-form target', target.foreignAuthority('evil.example', 'a'), 400, 'FORWARD_PROXY_REFUSED'],
  ['no route', noRoute('a.example', '/x'), 404, 'NO_ROUTE'],
  ['CONNECT', CONNECT_REFUSED, 405, 'METHOD_NOT_ALLOWED'],
  ['a request head not received in time', parseErrorReply('ERR_HTTP_REQUEST_TIMEOUT'), 408, 'REQUEST_TIMEOUT'],
  ['a chunked body over the limit', bodyOverLimit(1024), 413, 'REQUEST_TOO_LARGE'],
  ['a Content-Length over the limit', framing.lengthOverLimit('2048', 1024), 413, 'REQUEST_TOO_LARGE'],
  ['oversized headers', parseErrorReply('HPE_HEADER_OVERFLOW'), 431, 'HEADERS_TOO_LARGE'],
  ['any other parse error', parseErrorReply('HPE_INVALID_METHOD'), 400, 'BAD_REQUEST'],
  ['a refused connection', classifyUpstreamError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), false), 502, 'UPSTREAM_CONNECT_FAILED'],
  ['a reset', classifyUpstreamError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), true), 502, 'UPSTREAM_RESET'],
  ['no available backend', noAvailableBackend('web', 7), 503, 'NO_AVAILABLE_BACKEND'],
  ['no backend reachable', noBackendReachable('web', 2, classifyUpstreamError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), false)), 503, 'NO_AVAILABLE_BACKEND'],
  ['a wait for a connection under connections.max', classifyUpstreamError(new ConnectionWaitExpired(100), false), 503, 'CIRCUIT_OPEN'],
  ['an undici connect timeout', classifyUpstreamError(Object.assign(new Error('t'), { code: 'UND_ERR_CONNECT_TIMEOUT' }), false), 504, 'UPSTREAM_CONNECT_TIMEOUT'],
  ['an undici body timeout', classifyUpstreamError(Object.assign(new Error('t'), { code: 'UND_ERR_BODY_TIMEOUT' }), true), 504, 'UPSTREAM_IDLE_TIMEOUT'],
  ['a malformed response', classifyUpstreamError(Object.assign(new Error('bad'), { code: 'HPE_INVALID_CONSTANT' }), true), 502, 'UPSTREAM_PROTOCOL_ERROR'],
  ['a full circuit-breaker queue', circuitQueueFull('web'), 503, 'CIRCUIT_OPEN'],
  ['an expired circuit-breaker wait', circuitWaitExpired('web', 100), 503, 'CIRCUIT_OPEN'],
  ['a response timeout', classifyUpstreamError(new UpstreamTimeout('response', 10), true), 504, 'UPSTREAM_RESPONSE_TIMEOUT'],
];

async function listen(server: http.Server | net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as AddressInfo).port;
}

/** Node's own HTTP client parses the answer: what a client gets is a well-formed HTTP response. */
function get(port: number): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ port, host: '127.0.0.1', agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

describe('data-plane answers', () => {
  it.each(CATALOGUE)('%s: the same status, code, message and Retry-After from both writers', async (_name, reply, status, code) => {
    expect(reply.status).toBe(status);
    expect(reply.code).toBe(code);
    const viaResponse = await get(await listen(http.createServer((_req, res) => writeErrorResponse(res, reply, false))));
    const viaSocket = await get(await listen(net.createServer((socket) => socket.once('data', () => writeRawError(socket, reply)))));
    for (const answer of [viaResponse, viaSocket]) {
      expect(answer.status).toBe(status);
      expect(answer.headers['content-type']).toBe('application/json');
      expect(answer.headers['cache-control']).toBe('no-store');
      expect(JSON.parse(answer.body)).toEqual({ error: { code, message: reply.message } });
      expect(answer.headers['retry-after']).toBe(reply.retryAfterSeconds === undefined ? undefined : String(reply.retryAfterSeconds));
    }
    expect(viaSocket.headers.connection).toBe('close');
  });

  it('every 503 tells the client when to come back', () => {
    for (const [, reply] of CATALOGUE) if (reply.status === 503) expect(reply.retryAfterSeconds).toBeGreaterThanOrEqual(1);
  });
});
