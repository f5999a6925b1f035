// Request ids: random version 4 UUIDs made without crypto.randomUUID, a trusted proxy's id kept, anyone else's replaced.

import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { assignRequestId, newRequestId, requestIdOf } from '../../src/proxy/request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function request(headers: Record<string, string>): IncomingMessage {
  return { headers: { ...headers } } as unknown as IncomingMessage;
}

describe('newRequestId', () => {
  it('makes version 4 UUIDs, all different, across many draws of random bytes', () => {
    const ids = Array.from({ length: 5_000 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('uses every hex digit in every free position (the bytes are random, not a counter)', () => {
    const ids = Array.from({ length: 2_000 }, () => newRequestId());
    for (const position of [0, 7, 9, 15, 20, 35]) {
      expect(new Set(ids.map((id) => id[position])).size).toBe(16);
    }
    // Position 19 carries the variant: only 8, 9, a and b.
    expect(new Set(ids.map((id) => id[19]))).toEqual(new Set(['8', '9', 'a', 'b']));
  });
});

describe('assignRequestId', () => {
  it('keeps the id a trusted proxy sent, when it is visible ASCII of at most 200 characters', () => {
    const req = request({ 'x-request-id': 'edge-42' });
    expect(assignRequestId(req, true)).toBe('edge-42');
    expect(requestIdOf(req)).toBe('edge-42');
  });

  it.each([
    ['an untrusted client', 'edge-42', false],
    ['a trusted proxy with an id containing a space', 'edge 42', true],
    ['a trusted proxy with an id over 200 characters', 'x'.repeat(201), true],
  ])('replaces the id of %s with a new one', (_who, given, trusted) => {
    const req = request({ 'x-request-id': given });
    const id = assignRequestId(req, trusted);
    expect(id).toMatch(UUID_V4);
    expect(requestIdOf(req)).toBe(id);
  });
});
