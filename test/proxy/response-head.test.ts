// Relayed response heads: the fast writer writes what Node's writeHead writes, is used only where it was checked, and
// skips no check that matters (undici's parser refuses, byte for byte, what Node's writer would).

import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import {
  detectFastHeadWriter,
  fastHeadWriterInUse,
  headOutcome,
  LOAD_PROBES,
  probeResponse,
  useFastHeadWriter,
  writeBothWays,
  writeRelayedHead,
  type HeadProbe,
} from '../../src/proxy/response-head.js';
import { perTestResources } from '../helpers/gateway.js';
import type { TestBackend } from '../helpers/backend.js';

const { backend, gateway } = perTestResources();

afterEach(() => useFastHeadWriter(true));

const FIELD_NAMES = ['Content-Length', 'content-length', 'Transfer-Encoding', 'transfer-encoding', 'Connection', 'connection', 'Keep-Alive',
  'Date', 'DATE', 'Trailer', 'Expect', 'Content-Disposition', 'Content-Type', 'Set-Cookie', 'ETag', 'x-request-id', 'Vary', 'X-A'];
const FIELD_VALUES = ['0', '5', '12', 'chunked', 'gzip, chunked', 'close', 'keep-alive', 'Keep-Alive, close', 'timeout=2', 'text/plain',
  'attachment; filename="\u00e9.txt"', 'attachment; filename="\u00c3\u00a9"', 'a=1; Path=/', '"etag"', '', ' x ', '\u00ff'];

const probes: fc.Arbitrary<HeadProbe> = fc.record({
  method: fc.constantFrom('GET', 'HEAD', 'POST'),
  httpVersion: fc.constantFrom('1.0' as const, '1.1' as const),
  te: fc.option(fc.constantFrom('chunked', 'trailers', 'gzip'), { nil: undefined }),
  keepAlive: fc.boolean(),
  keepAliveTimeout: fc.constantFrom(0, 5_000, 65_500),
  maxRequestsPerSocket: fc.constantFrom(0, 3),
  lastRequest: fc.boolean(),
  status: fc.constantFrom(200, 201, 204, 206, 301, 304, 404, 500, 502, 599),
  statusMessage: fc.option(fc.constantFrom('OK', 'Fine', 'Not Modified', 'x\u00e9y', 'bad\u0007'), { nil: undefined }),
  list: fc.array(fc.tuple(fc.constantFrom(...FIELD_NAMES), fc.constantFrom(...FIELD_VALUES)), { maxLength: 7 }).map((pairs) => pairs.flat()),
});

describe('the fast head writer', () => {
  it('is in use on the Node this was written against', () => {
    expect(detectFastHeadWriter()).toMatchObject({ ok: true });
    expect(fastHeadWriterInUse()).toBe(true);
  });

  it('writes the bytes and leaves the state Node\'s writeHead does, for any head (or throws what it throws)', () => {
    for (const probe of LOAD_PROBES) {
      const { node, relayed } = writeBothWays(probe);
      expect(relayed).toBe(node);
    }
    fc.assert(
      fc.property(probes, (probe) => {
        const { node, relayed } = writeBothWays(probe);
        expect(relayed).toBe(node);
      }),
      { numRuns: 3_000 },
    );
  });

  it('is not used when Node\'s functions are not the ones it copies, or a probe head comes out otherwise', () => {
    expect(detectFastHeadWriter(function writeHead() {})).toMatchObject({ ok: false, why: 'writeHead is not the known one' });
    expect(detectFastHeadWriter(undefined, function _storeHeader() {})).toMatchObject({ ok: false, why: '_storeHeader is not the known one' });
    // A probe whose two outcomes differ (Node throws for the value, the fast writer, trusting it, does not).
    const unequal: HeadProbe = { ...LOAD_PROBES[0]!, list: ['x-a', 'bad\u0001value'] };
    expect(detectFastHeadWriter(undefined, undefined, [unequal])).toMatchObject({ ok: false });
  });

  it('checks again only the fields the proxy added, and a response with headers set one by one goes through writeHead', () => {
    const probe = LOAD_PROBES[0]!;
    // The first two entries came from the parser: written as they are. The rest are checked as Node checks them.
    const parsed = probeResponse(probe);
    writeRelayedHead(parsed, 200, 'OK', ['x-parsed', 'as\u0001given'], 2);
    expect(headOutcome(parsed)).toContain('x-parsed: as\\u0001given');
    expect(() => writeRelayedHead(probeResponse(probe), 200, 'OK', ['x-parsed', 'ok', 'x-added', 'bad\u0001'], 2)).toThrow(/Invalid character/);
    expect(() => writeRelayedHead(probeResponse(probe), 200, 'OK', ['x-parsed', 'ok', 'bad name', 'v'], 2)).toThrow(/valid HTTP token/);
    const progressive = probeResponse(probe);
    progressive.setHeader('x-set', '1');
    expect(() => writeRelayedHead(progressive, 200, 'OK', ['x-parsed', 'as\u0001given'], 2)).toThrow(/Invalid character/);
    // Off (as on a Node whose internals differ): every field is Node's to check.
    useFastHeadWriter(false);
    expect(fastHeadWriterInUse()).toBe(false);
    expect(() => writeRelayedHead(probeResponse(probe), 200, 'OK', ['x-parsed', 'as\u0001given'], 2)).toThrow(/Invalid character/);
    const node = probeResponse(probe);
    writeRelayedHead(node, 200, 'OK', ['x-parsed', 'fine'], 2);
    expect(headOutcome(node)).toContain('x-parsed: fine');
  });
});

describe('relaying through the gateway', () => {
  const pool = (b: TestBackend, extra = '') => `pools:\n  web:\n${extra}    backends:\n      - { url: ${b.url}, id: b }\n`;

  it('checks again neither an HTTP/1.1 backend\'s fields nor the request id, and checks a route rule\'s field', async () => {
    const b = await backend();
    b.handle((_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'x-from-backend': 'yes', 'content-length': 2 }).end('ok'));
    const plain = await gateway(pool(b));
    const checked = vi.spyOn(http, 'validateHeaderValue');
    try {
      const got = await get(`${plain.url}/`);
      expect(got.status).toBe(200);
      expect(got.raw).toEqual(expect.arrayContaining(['x-from-backend', 'yes', 'x-request-id']));
      expect(checked.mock.calls.map(([name]) => name)).toEqual([]);
      const ruled = await gateway(`${pool(b)}routes:\n  - match: { pathPrefix: / }\n    pool: web\n    headers: { response: { set: { x-served-by: edge } } }\n`);
      const again = await get(`${ruled.url}/`);
      expect(again.raw).toEqual(expect.arrayContaining(['x-served-by', 'edge', 'x-from-backend', 'yes']));
      // After a rule, every field is checked (rules may move fields around), the rule's among them.
      expect(checked.mock.calls.map(([name]) => name)).toEqual(expect.arrayContaining(['x-served-by', 'x-from-backend', 'x-request-id']));
    } finally {
      checked.mockRestore();
    }
  });
});

/** A backend that answers each connection once, with a head that carries `field` as raw bytes, then closes. */
async function rawBackend(): Promise<{ url: string; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    let seen = '';
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      const end = seen.indexOf('\r\n\r\n');
      if (end === -1) return;
      // GET /name/<byte> or /value/<byte>
      const [, where, byteText] = /^GET \/(name|value)\/(\d+) /.exec(seen) ?? [];
      const byte = Buffer.from([Number(byteText)]);
      const field = where === 'name' ? Buffer.concat([Buffer.from('x-a'), byte, Buffer.from('b: v')]) : Buffer.concat([Buffer.from('x-t: a'), byte, Buffer.from('b')]);
      socket.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n'), field, Buffer.from('\r\n\r\nok')]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function get(url: string): Promise<{ status: number; raw: string[] }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, raw: res.rawHeaders }));
    }).on('error', reject);
  });
}

const refuses = (check: () => void): boolean => {
  try {
    check();
    return false;
  } catch {
    return true;
  }
};

describe.each([true, false])('a backend field with any byte in it (fast writer %s)', (fast) => {
  it('is relayed exactly when Node\'s writer would accept it, else the answer is a 502', async () => {
    useFastHeadWriter(fast);
    const backend = await rawBackend();
    try {
      const gw = await gateway(`pools:\n  web:\n    retries: 0\n    outlierDetection: { enabled: false }\n    backends:\n      - { url: ${backend.url}, id: b }\n`);
      const mismatches: string[] = [];
      const cases: Array<{ where: 'name' | 'value'; byte: number }> = [];
      // ':' ends a name: "x-a:b: v" is the field x-a with the value "b: v", not a name with a colon in it.
      for (let byte = 0; byte < 256; byte++) {
        if (byte !== 0x3a) cases.push({ where: 'name', byte });
        cases.push({ where: 'value', byte });
      }
      for (let i = 0; i < cases.length; i += 16) {
        await Promise.all(cases.slice(i, i + 16).map(async ({ where, byte }) => {
          const ch = String.fromCharCode(byte);
          const name = where === 'name' ? `x-a${ch}b` : 'x-t';
          const value = where === 'name' ? 'v' : `a${ch}b`;
          const nodeRefuses = refuses(() => http.validateHeaderName(name)) || refuses(() => http.validateHeaderValue(name, value));
          const got = await get(`${gw.url}/${where}/${byte}`);
          const relayed = got.status === 200 && got.raw.some((text, at) => at % 2 === 0 && text === name && got.raw[at + 1] === value);
          if (nodeRefuses ? got.status !== 502 : !relayed) mismatches.push(`${where} byte ${byte}: Node refuses ${nodeRefuses}, got ${got.status}`);
        }));
      }
      expect(mismatches).toEqual([]);
    } finally {
      await backend.close();
    }
  });
});
