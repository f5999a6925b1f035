// Header rewriting between client and backend: the fast paths (raw field names, common Connection values, remembered
// response field strings) give exactly what looking every hop-by-hop name up and converting every field gives.

import fc from 'fast-check';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { detectLatin1Slice, latin1Text, prepareRequestHeaders, responseHeaderList } from '../../src/proxy/headers.js';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** The rule as written out in full: every token Connection names and every hop-by-hop name is removed unless kept. */
function stripReference(headers: IncomingHttpHeaders, keep: ReadonlySet<string>): void {
  const connection = headers['connection'];
  if (connection !== undefined) {
    const joined = Array.isArray(connection) ? connection.join(',') : connection;
    for (const raw of joined.split(',')) {
      const token = raw.trim().toLowerCase();
      if (token !== '' && !keep.has(token)) delete headers[token];
    }
  }
  for (const name of HOP_BY_HOP) if (!keep.has(name)) delete headers[name];
}

/** Request fields as Node parses them: names kept raw in rawHeaders, lower-cased keys (repeats joined) in headers. */
function parsed(fields: ReadonlyArray<readonly [string, string]>): { raw: string[]; headers: IncomingHttpHeaders } {
  const raw: string[] = [];
  const headers: Record<string, string> = {};
  for (const [name, value] of fields) {
    raw.push(name, value);
    const key = name.toLowerCase();
    headers[key] = headers[key] === undefined ? value : `${headers[key]}, ${value}`;
  }
  return { raw, headers };
}

const fieldName = fc.oneof(
  fc.constantFrom(...HOP_BY_HOP, 'Connection', 'Keep-Alive', 'TE', 'Upgrade', 'Transfer-Encoding', 'Host', 'Accept', 'X-Secret-Hop', 'Close', 'close', 'User-Agent', 'X-Forwarded-For'),
  fc.stringMatching(/^[A-Za-z][A-Za-z-]{0,18}$/),
);
const connectionValue = fc.oneof(
  fc.constantFrom('keep-alive', 'Keep-Alive', 'close', 'CLOSE', 'upgrade', 'keep-alive, x-secret-hop', 'close, te', ' keep-alive', 'x-forwarded-for, Close'),
  fc.array(fc.oneof(fc.constantFrom('close', 'keep-alive', 'x-secret-hop', 'te', 'upgrade', 'host'), fc.stringMatching(/^[a-z-]{1,8}$/)), { maxLength: 4 }).map((tokens) => tokens.join(', ')),
);
const requestFields = fc.array(
  fc.oneof(
    fc.tuple(fieldName, fc.stringMatching(/^[ -~]{0,12}$/)),
    connectionValue.map((value) => ['Connection', value] as const),
  ),
  { maxLength: 8 },
);
const client = { remoteAddress: '10.0.0.7', encrypted: false, trusted: false };

describe('prepareRequestHeaders', () => {
  it.each([false, true])('removes the same fields from the raw names as from looking every name up (upgrade: %s)', (upgrade) => {
    fc.assert(
      fc.property(requestFields, (fields) => {
        const viaRaw = parsed(fields);
        const viaLookup = parsed(fields);
        const expected = parsed(fields);
        prepareRequestHeaders(viaRaw.headers, client, upgrade, viaRaw.raw);
        prepareRequestHeaders(viaLookup.headers, client, upgrade, null);
        stripReference(expected.headers, upgrade ? new Set(['transfer-encoding', 'connection', 'upgrade']) : new Set());
        if (upgrade) expected.headers['connection'] = 'upgrade';
        expected.headers['x-forwarded-for'] = client.remoteAddress;
        expected.headers['x-forwarded-proto'] = 'http';
        expected.headers['x-forwarded-host'] = expected.headers.host ?? '';
        delete expected.headers['forwarded'];
        // toEqual reads a key whose value is undefined as absent, which is how undici reads it too.
        expect(viaRaw.headers).toEqual(expected.headers);
        expect(viaLookup.headers).toEqual(expected.headers);
        if (upgrade) {
          // http-proxy writes every key it finds: for upgrades removed fields leave no key behind.
          expect(Object.keys(viaRaw.headers).filter((name) => viaRaw.headers[name] === undefined)).toEqual([]);
          expect(Object.keys(viaLookup.headers).filter((name) => viaLookup.headers[name] === undefined)).toEqual([]);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('removes a field named Close when Connection says close, and the fields a longer Connection value names', () => {
    const { raw, headers } = parsed([['Host', 'x'], ['Connection', 'Close'], ['Close', 'hop'], ['Keep-Alive', 'timeout=5'], ['Accept', '*/*']]);
    prepareRequestHeaders(headers, client, false, raw);
    expect(headers).toEqual({ host: 'x', accept: '*/*', 'x-forwarded-for': '10.0.0.7', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'x' });
  });
});

describe('responseHeaderList', () => {
  it('gives from raw bytes what it gives from the same fields as strings, however often the fields repeat', () => {
    const responseFields = fc.array(fc.tuple(fieldName, fc.oneof(fc.constantFrom('text/plain', '6', 'timeout=5', 'keep-alive, x-named'), fc.stringMatching(/^[ -~]{0,80}$/))), {
      maxLength: 8,
    });
    fc.assert(
      fc.property(fc.array(responseFields, { minLength: 1, maxLength: 4 }), fc.boolean(), (responses, close) => {
        for (const fields of responses) {
          const strings = fields.flat();
          const bytes = strings.map((field) => Buffer.from(field, 'latin1'));
          expect(responseHeaderList(bytes, close)).toEqual(responseHeaderList(strings, close));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('leaves out every hop-by-hop field (Trailer excepted) and every field Connection names, in any case, keeping the order', () => {
    const responseHopByHop = HOP_BY_HOP.filter((name) => name !== 'trailer');
    /** The rule written out in full: lower-case every name, drop the hop-by-hop ones and the ones Connection names. */
    const reference = (fields: ReadonlyArray<readonly [string, string]>, close: boolean): string[] => {
      const named = new Set<string>();
      for (const [name, value] of fields) {
        if (name.toLowerCase() !== 'connection') continue;
        for (const token of value.split(',')) {
          const lower = token.trim().toLowerCase();
          if (lower !== '' && lower !== 'close') named.add(lower);
        }
      }
      const kept = fields.filter(([name]) => !responseHopByHop.includes(name.toLowerCase()) && !named.has(name.toLowerCase())).flat();
      return close ? [...kept, 'connection', 'close'] : kept;
    };
    const casings = fc.constantFrom(...responseHopByHop, 'Connection', 'CONNECTION', 'Keep-Alive', 'KEEP-ALIVE', 'kEEP-aLIVE', 'Transfer-Encoding', 'Trailer', 'TE', 'Te', 'Upgrade', 'Proxy-Connection');
    const fields = fc.array(
      fc.oneof(
        fc.tuple(fc.oneof(fieldName, casings, fc.constantFrom('X-Named', 'x-named', 'Content-Length', 'Keep_Alive', 'Keep-Alivf')), fc.stringMatching(/^[ -~]{0,20}$/)),
        connectionValue.map((value) => ['Connection', value] as const),
      ),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(fields, fc.boolean(), (list, close) => {
        const bytes = list.flat().map((field) => Buffer.from(field, 'latin1'));
        expect(responseHeaderList(bytes, close)).toEqual(reference(list, close));
      }),
      { numRuns: 1000 },
    );
  });

  it('keeps giving the right strings for fields that share a remembered slot, in whatever order they come', () => {
    // 'content-length' and '6' share a slot; so do these other pairs (same length and end bytes).
    const sharing = [['content-length', '6'], ['X-Aaaa-Z', 'X-Bbbb-Z', 'X-Cccc-Z']];
    for (let round = 0; round < 4; round++) {
      for (const group of sharing) {
        const order = round % 2 === 0 ? group : [...group].reverse();
        const raw = order.flatMap((name) => [Buffer.from(name), Buffer.from(`${name}-value`)]);
        expect(responseHeaderList(raw, false)).toEqual(order.flatMap((name) => [name, `${name}-value`]));
      }
    }
  });

  it('tells apart fields of the same length with the same first and last bytes', () => {
    // Same length and end bytes: the same slot of the remembered strings, one after the other.
    const first = responseHeaderList([Buffer.from('X-Aaaa-Z'), Buffer.from('value-1')], false);
    const second = responseHeaderList([Buffer.from('X-Bbbb-Z'), Buffer.from('value-2')], false);
    const again = responseHeaderList([Buffer.from('X-Aaaa-Z'), Buffer.from('value-1')], false);
    expect(first).toEqual(['X-Aaaa-Z', 'value-1']);
    expect(second).toEqual(['X-Bbbb-Z', 'value-2']);
    expect(again).toEqual(['X-Aaaa-Z', 'value-1']);
  });

  it('judges a name by its own bytes when it takes a remembered slot from a hop-by-hop name, and back', () => {
    // 'CoNnEcTiOn', 'kaaaaaaaaV' and 'kbbbbbbbbV' share a slot (length 10, end bytes hashing alike), in casings no
    // other test uses: each arrives new and pushes the one before out of the slot.
    const hop = (name: string) => responseHeaderList([Buffer.from(name), Buffer.from('keep-alive'), Buffer.from('X-After'), Buffer.from('1')], false);
    for (let round = 0; round < 3; round++) {
      expect(hop('CoNnEcTiOn')).toEqual(['X-After', '1']);
      expect(hop('kaaaaaaaaV')).toEqual(['kaaaaaaaaV', 'keep-alive', 'X-After', '1']);
      expect(hop('kbbbbbbbbV')).toEqual(['kbbbbbbbbV', 'keep-alive', 'X-After', '1']);
      expect(hop('CoNnEcTiOn')).toEqual(['X-After', '1']);
      expect(hop('kaaaaaaaaV')).toEqual(['kaaaaaaaaV', 'keep-alive', 'X-After', '1']);
    }
  });

  it('remembers a field by its bytes at the time, not by the read buffer they were a view of', () => {
    // undici's fields are views into the socket's read buffer, which the next read overwrites.
    // Bytes no other test converts, so the first call remembers them from this buffer.
    const chunk = Buffer.from('X-Qqqq-Zfresh-1');
    expect(responseHeaderList([chunk.subarray(0, 8), chunk.subarray(8)], false)).toEqual(['X-Qqqq-Z', 'fresh-1']);
    chunk.write('X-Rrrr-Zfresh-2', 'latin1');
    expect(responseHeaderList([chunk.subarray(0, 8), chunk.subarray(8)], false)).toEqual(['X-Rrrr-Z', 'fresh-2']);
  });
});

describe('latin1Text', () => {
  it('gives what toString(\'latin1\') gives for any bytes, without calling it where Node has latin1Slice', () => {
    expect(detectLatin1Slice()).toBe(true);
    const toString = vi.spyOn(Buffer.prototype, 'toString');
    try {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(16), (bytes, offset) => {
          // A view into a larger buffer, as undici hands body chunks over.
          const view = Buffer.concat([Buffer.alloc(offset, 0x61), Buffer.from(bytes)]).subarray(offset);
          const text = latin1Text(view);
          expect(text.length).toBe(bytes.length);
          for (let i = 0; i < bytes.length; i++) expect(text.charCodeAt(i)).toBe(bytes[i]);
        }),
        { numRuns: 500 },
      );
      expect(toString).not.toHaveBeenCalled();
    } finally {
      toString.mockRestore();
    }
  });

  it('is not used on a Buffer without latin1Slice, or with one that converts otherwise', () => {
    expect(detectLatin1Slice({})).toBe(false);
    expect(detectLatin1Slice({ latin1Slice: () => 'other' })).toBe(false);
    expect(detectLatin1Slice({ latin1Slice: Buffer.prototype.utf8Slice })).toBe(false);
  });
});
