// The grpc.health.v1 wire format: the request balancer sends and how answers are read.

import { describe, expect, it } from 'vitest';
import { healthCheckRequest, servingStatusName, servingStatusOf } from '../../src/health/grpc-health.js';

const frame = (message: number[]): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), Buffer.from(message)]);

describe('grpc.health.v1 wire format', () => {
  it('the whole-server request is an empty message; a service is field 1', () => {
    expect([...healthCheckRequest('')]).toEqual([0, 0, 0, 0, 0]);
    expect([...healthCheckRequest('a.B')]).toEqual([0, 0, 0, 0, 5, 0x0a, 3, 0x61, 0x2e, 0x42]);
    // A name of 200 bytes needs a two-byte length.
    const long = healthCheckRequest('x'.repeat(200));
    expect([...long.subarray(0, 8)]).toEqual([0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
  });

  it('reads the status, skipping unknown fields; an absent status is UNKNOWN', () => {
    expect(servingStatusOf(frame([0x08, 1]))).toEqual({ status: 1 });
    expect(servingStatusOf(frame([0x08, 2]))).toEqual({ status: 2 });
    expect(servingStatusOf(frame([0x12, 2, 0x61, 0x62, 0x08, 1, 0x1d, 1, 2, 3, 4]))).toEqual({ status: 1 });
    expect(servingStatusOf(frame([]))).toEqual({ status: 0 });
    expect(servingStatusName(1)).toBe('SERVING');
    expect(servingStatusName(2)).toBe('NOT_SERVING');
    expect(servingStatusName(9)).toBe('status 9');
  });

  it('refuses what is not one whole uncompressed message', () => {
    expect(servingStatusOf(Buffer.alloc(0))).toEqual({ error: 'no response message' });
    expect(servingStatusOf(Buffer.from([0, 0, 0, 0, 4, 0x08]))).toEqual({ error: 'a truncated response message' });
    expect(servingStatusOf(Buffer.from([1, 0, 0, 0, 2, 0x08, 1]))).toEqual({ error: 'a compressed response message (none was accepted)' });
    expect(servingStatusOf(frame([0x12, 9, 0x61]))).toEqual({ error: 'a malformed response message' });
    expect(servingStatusOf(frame([0x08]))).toEqual({ error: 'a malformed response message' });
  });
});
