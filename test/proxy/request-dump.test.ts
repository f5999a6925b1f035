// A bodiless request is not read to its end by Node after its response, only where the skip was checked, and every
// request on the connection is still served as before, with the skip on and off.

import { afterEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { detectDumpSkip, dumpSkipInUse, skipDumpOfBodiless, useDumpSkip } from '../../src/proxy/request-dump.js';
import { rawExchange } from '../helpers/backend.js';
import { perTestResources } from '../helpers/gateway.js';

const { backend, gateway } = perTestResources();

afterEach(() => useDumpSkip(true));

/**
 * A plain node:http server whose handler marks each request and answers it, over a keep-alive connection left open;
 * resolves once the response has closed with the request, and whether the connection's parser still holds it.
 */
async function answeredRequest(): Promise<{ req: http.IncomingMessage; heldByParser: boolean }> {
  const server = http.createServer();
  const handled = new Promise<{ req: http.IncomingMessage; res: http.ServerResponse }>((resolve) => {
    server.once('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      skipDumpOfBodiless(req);
      res.end('ok');
      resolve({ req, res });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const agent = new http.Agent({ keepAlive: true });
  try {
    const answer = await new Promise<number>((resolve, reject) => {
      http.get({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
    expect(answer).toBe(200);
    const { req, res } = await handled;
    if (!res.closed) await once(res, 'close');
    // Every process.nextTick callback queued by the response's end has run before the next turn of the loop.
    await new Promise((resolve) => setImmediate(resolve));
    expect(req.socket.destroyed).toBe(false);
    const parser = (req.socket as unknown as { parser?: { incoming: unknown } | null }).parser;
    return { req, heldByParser: parser?.incoming === req };
  } finally {
    agent.destroy();
    server.close();
  }
}

describe('skipping the dump of a bodiless request', () => {
  it('is in use on the Node this was written against', () => {
    expect(detectDumpSkip()).toEqual({ ok: true });
    expect(dumpSkipInUse()).toBe(true);
  });

  it('is not used for another _dump, nor for one that reads a request marked dumped', () => {
    expect(detectDumpSkip(function _dump() {})).toEqual({ ok: false, why: '_dump is not the known one' });
    expect(detectDumpSkip(null)).toEqual({ ok: false, why: 'no _dump' });
    // Known by its text, but it resumes a request whatever its mark: the probe catches it.
    const ignoresMark = function _dump(this: http.IncomingMessage) {
      this.resume();
    };
    const known = new Set([createHash('sha256').update(String(ignoresMark)).digest('hex')]);
    expect(detectDumpSkip(ignoresMark, known)).toEqual({ ok: false, why: 'a request marked dumped was read' });
  });

  it('leaves an answered bodiless request undumped and lets go of it; with the skip off, Node reads it to its end and closes it', async () => {
    const skipped = await answeredRequest();
    expect(skipped.req.destroyed).toBe(false);
    expect(skipped.req.readableEnded).toBe(true);
    expect(skipped.req.complete).toBe(true);
    // The idle keep-alive connection does not keep its last request alive.
    expect(skipped.heldByParser).toBe(false);
    useDumpSkip(false);
    const dumped = await answeredRequest();
    expect(dumped.req.destroyed).toBe(true);
    expect(dumped.req.readableEnded).toBe(true);
    expect(dumped.heldByParser).toBe(false);
  });

  for (const enabled of [true, false]) {
    it(`serves pipelined and keep-alive requests with and without bodies alike (skip ${enabled ? 'on' : 'off'})`, async () => {
      useDumpSkip(enabled);
      const b = await backend();
      const gw = await gateway(`pools:\n  web:\n    backends:\n      - { url: ${b.url}, id: b }\n`);
      const requests = [
        'GET /one HTTP/1.1\r\nHost: a\r\n\r\n',
        'HEAD /two HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n',
        'POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
        'GET /four HTTP/1.1\r\nHost: a\r\n\r\n',
        'PUT /five HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
        'GET /six HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      ];
      const answer = await rawExchange(gw.port, requests.join(''));
      expect(answer.match(/HTTP\/1\.1 \d+/g)).toEqual(Array(6).fill('HTTP/1.1 200'));
      expect(b.seen.map((r) => [r.method, r.url, r.bodyBytes])).toEqual([
        ['GET', '/one', 0],
        ['HEAD', '/two', 0],
        ['POST', '/three', 5],
        ['GET', '/four', 0],
        ['PUT', '/five', 3],
        ['GET', '/six', 0],
      ]);
    });
  }
});
