// The request body an upstream exchange reads: nothing taken from the client before its writer starts, every byte in
// order, backpressure onto the client's request, the limit counted as it streams, the client's request left whole
// when the writer lets go, a client gone mid-body told to the writer, and HTTP/2's pipeline() able to pipe it.

import { afterEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { pipeline, Writable } from 'node:stream';
import { RequestBody, type BodyEvents } from '../../src/proxy/request-body.js';
import { closeServer } from '../helpers/backend.js';

interface Received {
  req: http.IncomingMessage;
  res: http.ServerResponse;
}

const servers: http.Server[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) await closeServer(server);
});

/** A node:http server whose next request is handed to the test, and a raw client connection to it. */
async function serverAndClient(): Promise<{ next: Promise<Received>; client: net.Socket }> {
  const server = http.createServer();
  servers.push(server);
  const next = new Promise<Received>((resolve) => server.once('request', (req, res) => resolve({ req, res })));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  sockets.push(client);
  await once(client, 'connect');
  return { next, client };
}

function recorder(): BodyEvents & { started: number; overLimit: number[]; wentOver: Promise<void> } {
  let wentOver = (): void => {};
  return {
    started: 0,
    overLimit: [],
    wentOver: new Promise<void>((resolve) => (wentOver = resolve)),
    onBodyStarted() {
      this.started += 1;
    },
    onBodyOverLimit(limit: number) {
      this.overLimit.push(limit);
      wentOver();
    },
  };
}

/** The request the client's first bytes (`sent`) make, its RequestBody (not yet resumed) and the events it reported. */
async function receivedBody(sent: string, limit = 0): Promise<Received & { client: net.Socket; body: RequestBody; events: ReturnType<typeof recorder> }> {
  const { next, client } = await serverAndClient();
  client.write(sent);
  const { req, res } = await next;
  const events = recorder();
  return { req, res, client, body: new RequestBody(req, limit, events), events };
}

/** Everything the body passes until 'end'. */
function collect(body: RequestBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  body.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    body.on('end', () => resolve(Buffer.concat(chunks)));
    body.on('error', reject);
  });
}

/** One chunk of a chunked body. */
function chunk(text: string): string {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
}

describe('RequestBody', () => {
  it('takes nothing from the client until its writer resumes it, then passes every byte in order', async () => {
    const { req, client, body, events } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk('first ') + chunk('second'));
    // The request's head and first chunks are in; the server would have emitted them to a listener by now.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(events.started).toBe(0);
    expect(req.listenerCount('data')).toBe(0);
    const all = collect(body);
    body.resume();
    client.write(chunk(' third') + '0\r\n\r\n');
    expect((await all).toString()).toBe('first second third');
    expect(events.started).toBe(1);
    expect(req.listenerCount('data')).toBe(0);
  });

  it('keeps up to 64 KiB while its writer is full, then pauses the client\'s request; resumed, passes all in order', async () => {
    const rest = Buffer.alloc(200 * 1024, 'y');
    const { req, client, body } = await receivedBody(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${3 + rest.length}\r\n\r\nabc`);
    const passed: Buffer[] = [];
    body.on('data', (data: Buffer) => passed.push(data));
    const ended = once(body, 'end');
    body.once('data', () => body.pause());
    body.resume();
    await once(body, 'data');
    const paused = once(req, 'pause');
    client.write(rest);
    await paused;
    // Nothing went to the paused writer; the client's socket stops being read once the request's own buffer fills.
    expect(passed.map((data) => data.toString())).toEqual(['abc']);
    body.resume();
    await ended;
    expect(Buffer.concat(passed).equals(Buffer.concat([Buffer.from('abc'), rest]))).toBe(true);
  });

  it('holds the end of a body that ended while its writer was full until what waited has gone', async () => {
    const { req, client, body } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc');
    const passed: string[] = [];
    let endedEarly = false;
    body.on('data', (data: Buffer) => passed.push(data.toString()));
    body.on('end', () => (endedEarly = passed.length < 2));
    const ended = once(body, 'end');
    body.once('data', () => body.pause());
    body.resume();
    const clientDone = once(req, 'end');
    client.write('def');
    await clientDone;
    expect(passed).toEqual(['abc']);
    body.resume();
    await ended;
    expect(passed).toEqual(['abc', 'def']);
    expect(endedEarly).toBe(false);
  });

  it('lets go of the client\'s request when destroyed: not destroyed, not read further, still answerable', async () => {
    const { req, res, client, body } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    const seen: string[] = [];
    body.on('data', (data: Buffer) => seen.push(data.toString()));
    body.resume();
    await once(body, 'data');
    body.destroy();
    expect(body.destroyed).toBe(true);
    expect(req.destroyed).toBe(false);
    expect(req.isPaused()).toBe(true);
    expect(req.listenerCount('data') + req.listenerCount('end') + req.listenerCount('close')).toBe(0);
    // A destroyed body does not start again: undici may call resume() on a drain after it gave up.
    body.resume();
    expect(req.listenerCount('data')).toBe(0);
    res.writeHead(502, { connection: 'close', 'content-length': 8 }).end('answered');
    let answer = '';
    client.on('data', (data: Buffer) => (answer += data.toString()));
    await once(client, 'end');
    expect(answer).toMatch(/^HTTP\/1\.1 502 [\s\S]*answered$/);
    expect(seen).toEqual(['abc']);
  });

  it('counts a body without Content-Length as it streams: over the limit it reports once and passes no more', async () => {
    const { req, client, body, events } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk('12345'), 8);
    const seen: string[] = [];
    body.on('data', (data: Buffer) => seen.push(data.toString()));
    body.resume();
    await once(body, 'data');
    client.write(chunk('6789') + chunk('more'));
    await events.wentOver;
    expect(events.overLimit).toEqual([8]);
    expect(seen).toEqual(['12345']);
    expect(body.destroyed).toBe(true);
    expect(req.destroyed).toBe(false);
  });

  it('tells its writer, with an error on a later tick, that the client left before its body ended', async () => {
    const { client, body } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    body.on('data', () => client.destroy());
    const failed = once(body, 'error');
    body.resume();
    const [error] = (await failed) as [Error];
    expect(error.message).toMatch(/client closed the connection before its request body ended/);
    expect(body.destroyed).toBe(true);
  });

  it('flows when piped, as HTTP/2\'s pipeline() sends it, and ends its destination', async () => {
    const { body } = await receivedBody('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world');
    const chunks: Buffer[] = [];
    const sink = new Writable({
      // A small buffer, so the pipe meets backpressure on the way.
      highWaterMark: 1,
      write(data: Buffer, _encoding, callback) {
        chunks.push(data);
        setImmediate(callback);
      },
    });
    // undici hands it to pipeline() untyped; Node's types know only Readables and iterables as sources.
    const source = body as unknown as NodeJS.ReadableStream;
    await new Promise<void>((resolve, reject) => pipeline(source, sink, (error) => (error ? reject(error) : resolve())));
    expect(Buffer.concat(chunks).toString()).toBe('hello world');
  });
});
