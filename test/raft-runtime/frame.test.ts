import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  FrameEncoder,
  FrameKey,
  FrameKind,
  FrameReader,
  LENGTH_PREFIX_BYTES,
  decodeFrame,
  encodeFrame,
  handshakeKey,
  sessionKeys,
} from '../../src/raft/runtime/frame.js';
import type { Frame, FrameDecodeResult } from '../../src/raft/runtime/frame.js';
import { MessageEncoder, parsePeerMessage } from '../../src/raft/runtime/peer-message.js';
import type { Entry, Message } from '../../src/raft/core/types.js';

const key = handshakeKey('s3cret', 'prod');
const options = { key, clusterId: 'prod', maxFrameBytes: 1 << 20 } as const;
const REASONS = new Set(['malformed', 'oversized', 'bad_version', 'wrong_cluster', 'bad_mac', 'replay']);

function frame(overrides: Partial<Frame> = {}): Frame {
  return {
    kind: FrameKind.message,
    seq: 7,
    clusterId: 'prod',
    from: 'n1',
    to: 'n2',
    payload: Buffer.from('{"type":"MsgHeartbeat","from":"n1","to":"n2","term":3}'),
    ...overrides,
  };
}

function expectRejected(result: FrameDecodeResult): void {
  expect(result.ok).toBe(false);
  if (!result.ok) expect(REASONS.has(result.reason)).toBe(true);
}

const frameArb: fc.Arbitrary<Frame> = fc.record({
  kind: fc.constantFrom(...Object.values(FrameKind)),
  seq: fc.nat(),
  clusterId: fc.constant('prod'),
  from: fc.string({ maxLength: 20 }),
  to: fc.string({ maxLength: 20 }),
  payload: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
});

describe('encodeFrame / decodeFrame', () => {
  it('round-trips any frame', () => {
    fc.assert(
      fc.property(frameArb, (original) => {
        const decoded = decodeFrame(encodeFrame(original, key), { ...options, expectedSeq: original.seq });
        expect(decoded).toEqual({ ok: true, frame: original });
      }),
    );
  });

  it('rejects arbitrary bytes without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        expectRejected(decodeFrame(bytes, options));
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects arbitrary bytes behind a length prefix that matches them', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 40, maxLength: 600 }), (body) => {
        const bytes = Buffer.alloc(LENGTH_PREFIX_BYTES + body.length);
        bytes.writeUInt32BE(body.length, 0);
        Buffer.from(body).copy(bytes, LENGTH_PREFIX_BYTES);
        bytes[LENGTH_PREFIX_BYTES] = 1; // a valid version, so decoding goes deeper
        expectRejected(decodeFrame(bytes, options));
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects every single-bit flip of a valid frame', () => {
    const valid = encodeFrame(frame(), key);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: valid.length * 8 - 1 }), (bit) => {
        const flipped = Buffer.from(valid);
        flipped[bit >> 3] = flipped[bit >> 3]! ^ (1 << (bit & 7));
        expectRejected(decodeFrame(flipped, options));
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects truncated and extended frames', () => {
    const valid = encodeFrame(frame(), key);
    for (let cut = 0; cut < valid.length; cut++) expectRejected(decodeFrame(valid.subarray(0, cut), options));
    expectRejected(decodeFrame(Buffer.concat([valid, Buffer.from([0])]), options));
  });

  it('names the reason: other cluster, wrong key, replayed sequence, oversized', () => {
    const reasonOf = (result: FrameDecodeResult): string => (result.ok ? 'ok' : result.reason);
    expect(reasonOf(decodeFrame(encodeFrame(frame({ clusterId: 'staging' }), key), options))).toBe('wrong_cluster');
    expect(reasonOf(decodeFrame(encodeFrame(frame(), handshakeKey('other', 'prod')), options))).toBe('bad_mac');
    expect(reasonOf(decodeFrame(encodeFrame(frame({ seq: 6 }), key), { ...options, expectedSeq: 7 }))).toBe('replay');
    const big = encodeFrame(frame({ payload: Buffer.alloc(2 << 20) }), key);
    expect(reasonOf(decodeFrame(big, options))).toBe('oversized');
  });

  it('keeps the wire format byte for byte, sequence numbers up to 2^53 - 1 included', () => {
    // Written by the encoder before it built the id header once per connection: nodes of either build talk to each other.
    const payload = '{"type":"MsgHeartbeat","from":"n1","to":"n2","term":3,"context":"é"}';
    const body = '0470726f64026e31026e327b2274797065223a224d7367486561727462656174222c2266726f6d223a226e31222c22746f223a226e32222c227465726d223a332c22636f6e74657874223a22c3a9227d';
    const golden: ReadonlyArray<readonly [number, string]> = [
      [7, `0000007a01030000000000000007${body}d6e7436ceebb4e3090db57e00f53e25fe760398bb9707ae03c2387cc6d9b41dd`],
      [2 ** 32 + 5, `0000007a01030000000100000005${body}41ae7356fb5161d349920d697e2ed877b8b9c4ceec79e2f969c6638d2f26c18e`],
      [Number.MAX_SAFE_INTEGER, `0000007a0103001fffffffffffff${body}98726a07043283fc3ee0031ffe669c8d1588f0898e259a688eb74fc08c5af080`],
    ];
    const encoder = new FrameEncoder('prod', 'n1', 'n2');
    for (const [seq, hex] of golden) {
      expect(encoder.encode(FrameKind.message, seq, payload, key).toString('hex')).toBe(hex);
      expect(encodeFrame(frame({ seq, payload: Buffer.from(payload) }), key).toString('hex')).toBe(hex);
      const decoded = decodeFrame(Buffer.from(hex, 'hex'), { ...options, expectedSeq: seq });
      expect(decoded.ok && decoded.frame.seq === seq && decoded.frame.payload.toString('utf8') === payload).toBe(true);
    }
    const beyond = Buffer.from(golden[2]![1], 'hex');
    beyond.writeUInt32BE(0x20_0000, 6);
    const result = decodeFrame(beyond, options);
    expect(result.ok ? 'ok' : result.detail).toBe('sequence number out of range');
  });

  it('derives different keys per direction and per nonce pair', () => {
    const a = sessionKeys('s', 'c', 'n1', 'n2', 'a'.repeat(64), 'b'.repeat(64));
    const b = sessionKeys('s', 'c', 'n1', 'n2', 'a'.repeat(64), 'c'.repeat(64));
    const data = Buffer.from('frame');
    expect(a.clientToServer.mac(data).equals(a.serverToClient.mac(data))).toBe(false);
    expect(a.clientToServer.mac(data).equals(b.clientToServer.mac(data))).toBe(false);
  });
});

describe('FrameKey', () => {
  it('is HMAC-SHA256: the RFC 4231 vectors, and createHmac for any key and data, however often it is used', () => {
    // RFC 4231 test cases 1 (short key) and 6 (a key longer than the block, hashed first).
    expect(new FrameKey(Buffer.alloc(20, 0x0b)).mac(Buffer.from('Hi There')).toString('hex')).toBe(
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    expect(new FrameKey(Buffer.alloc(131, 0xaa)).mac(Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First')).toString('hex')).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.uint8Array({ maxLength: 600 }), { minLength: 1, maxLength: 4 }), (keyBytes, messages) => {
        const frameKey = new FrameKey(Buffer.from(keyBytes));
        // The kept states are copied, never consumed: every use of one key gives the MAC a fresh HMAC would.
        for (const data of messages) expect(frameKey.mac(data).equals(createHmac('sha256', keyBytes).update(data).digest())).toBe(true);
      }),
    );
  });

  it('MACs a frame the encoder writes, small or snapshot-sized, as createHmac does over its bytes', () => {
    const keyBytes = Buffer.from('a session key of some length');
    const frameKey = new FrameKey(keyBytes);
    const encoder = new FrameEncoder('prod', 'n1', 'n2');
    for (const size of [0, 1, 300, 64 * 1024 - 60, 64 * 1024, 200 * 1024]) {
      for (const payload of ['x'.repeat(size), Buffer.alloc(size, 7)]) {
        const bytes = encoder.encode(FrameKind.message, 3, payload, frameKey);
        const end = bytes.length - 32;
        expect(bytes.subarray(end).equals(createHmac('sha256', keyBytes).update(bytes.subarray(0, end)).digest())).toBe(true);
        expect(decodeFrame(bytes, { key: frameKey, clusterId: 'prod', expectedSeq: 3 }).ok).toBe(true);
      }
    }
    const big = Buffer.alloc(100 * 1024, 1);
    expect(frameKey.mac(big).equals(createHmac('sha256', keyBytes).update(big).digest())).toBe(true);
  });
});

describe('FrameReader', () => {
  it('reassembles frames split at any points', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f, key)));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
        const reader = new FrameReader(1 << 20);
        const out: Buffer[] = [];
        let previous = 0;
        for (const point of [...points, stream.length]) {
          reader.push(stream.subarray(previous, point));
          previous = point;
          for (let next = reader.next(); next !== null; next = reader.next()) {
            if (!Buffer.isBuffer(next)) throw new Error(next.detail);
            out.push(Buffer.from(next));
          }
        }
        expect(out.map((raw, i) => decodeFrame(raw, { ...options, expectedSeq: frames[i]!.seq }))).toEqual(
          frames.map((f) => ({ ok: true, frame: f })),
        );
      }),
    );
  });

  it('refuses an oversized declared length before the bytes arrive', () => {
    const reader = new FrameReader(4096);
    reader.push(Buffer.from('GET / HTTP/1.1\r\n'));
    expect(reader.next()).toMatchObject({ reason: 'oversized' });
  });
});

describe('parsePeerMessage', () => {
  it('accepts a well-formed network message', () => {
    const message = { type: 'MsgApp', from: 'n1', to: 'n2', term: 2, index: 3, logTerm: 1, commit: 3, entries: [{ index: 4, term: 2, type: 'normal', data: 'x' }] };
    expect(parsePeerMessage(Buffer.from(JSON.stringify(message)))).toEqual(message);
    const notice = { type: 'MsgApp', from: 'n1', to: 'n2', term: 2, index: 4, logTerm: 2, commit: 4, entries: [], commitOnly: true };
    expect(parsePeerMessage(Buffer.from(JSON.stringify(notice)))).toEqual(notice);
  });

  it('refuses local-only message types and wrong shapes', () => {
    for (const bad of [
      { type: 'MsgHup', from: 'n1', to: 'n2', term: 1 },
      { type: 'MsgUnreachable', from: 'n1', to: 'n2', term: 1 },
      { type: 'MsgApp', from: 'n1', to: 'n2', term: -1 },
      { type: 'MsgApp', from: 'n1', to: 'n2', term: 1, entries: [{ index: 1 }] },
      { type: 'MsgSnap', from: 'n1', to: 'n2', term: 1, snapshot: { data: 1 } },
      { type: 'MsgApp', from: 'n1', to: 'n2', term: 1, commitOnly: 'yes' },
      [],
      'MsgApp',
    ]) {
      expect(parsePeerMessage(Buffer.from(JSON.stringify(bad)))).toBeNull();
    }
    expect(parsePeerMessage(Buffer.from('{not json'))).toBeNull();
  });

  it('never throws on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        const parsed = parsePeerMessage(Buffer.from(text));
        expect(parsed === null || typeof parsed === 'object').toBe(true);
      }),
    );
  });
});

describe('MessageEncoder', () => {
  const entries: Entry[] = [{ term: 2, index: 8, type: 'normal', data: '{"command":{"type":"update-backend","patch":{"weight":3}}}', requestId: 'r8' }];
  // What a leader's core makes of one committed change: the same fields and entry objects for every member but `to`.
  const fanOut = (to: readonly string[], overrides: Partial<Message> = {}): Message[] =>
    to.map((id): Message => ({ to: id, type: 'MsgApp', term: 2, index: 7, logTerm: 2, entries: entries.slice(), commit: 8, ...overrides, from: 'n1' }));

  it('writes each message as JSON that parses back to exactly that message', () => {
    const encoder = new MessageEncoder();
    const messages: Message[] = [
      ...fanOut(['l1', 'l2', 'l3']),
      ...fanOut(['l4'], { commit: 9 }),
      ...fanOut(['l5'], { commit: 9, entries: [{ ...entries[0]!, data: '{"command":{"type":"update-backend","patch":{"weight":4}}}' }] }),
      ...fanOut(['l6'], { entries: [] }),
      ...fanOut(['l7'], { entries: [...entries, { term: 2, index: 9, type: 'normal', data: '' }] }),
      { to: 'l8', type: 'MsgApp', term: 2, index: 7, logTerm: 2, commit: 8, entries: entries.slice(), from: 'n1' },
      { to: 'n2', type: 'MsgHeartbeat', term: 2, commit: 8, context: 'read-1', from: 'n1' },
      { to: 'n3', type: 'MsgHeartbeat', term: 2, commit: 8, from: 'n1' },
      // A field present but undefined (the core never makes one; JSON drops it) must not pass for another field.
      { to: 'n2', type: 'MsgHeartbeat', term: 2, context: undefined, from: 'n1' } as unknown as Message,
      { to: 'n3', type: 'MsgHeartbeat', term: 2, commit: 8, from: 'n1' },
      { to: 'n3', type: 'MsgAppResp', term: 2, index: 8, reject: true, rejectHint: 4, from: 'n1' },
      { to: 'n2', type: 'MsgSnap', term: 2, snapshot: { metadata: { index: 8, term: 2, confState: { voters: ['n1'], learners: [] } }, data: '{}' }, from: 'n1' },
      { to: 'n3', type: 'MsgSnap', term: 2, snapshot: { metadata: { index: 8, term: 2, confState: { voters: ['n1'], learners: [] } }, data: '{"x":1}' }, from: 'n1' },
      ...fanOut(['l9', 'l10']),
    ];
    for (const message of messages) {
      const text = encoder.encode(message);
      expect(JSON.parse(text)).toEqual(message);
      expect(parsePeerMessage(Buffer.from(text))).toEqual(message);
    }
  });

  it('serialises the entries of a fan-out once, not once per member', () => {
    const encoder = new MessageEncoder();
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      const members = Array.from({ length: 25 }, (_, i) => `l${i + 1}`);
      const texts = fanOut(members).map((message) => encoder.encode(message));
      const withEntries = stringify.mock.calls.filter(([value]) => typeof value === 'object' && value !== null && 'entries' in value);
      expect(withEntries).toHaveLength(1);
      expect(texts.map((text) => JSON.parse(text) as Message)).toEqual(fanOut(members));
    } finally {
      stringify.mockRestore();
    }
  });
});
