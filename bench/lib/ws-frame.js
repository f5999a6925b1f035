// A minimal WebSocket (RFC 6455) handshake and frame codec for the benchmark's echo backend and client; no extensions, no fragmentation.

import { createHash, randomBytes } from 'node:crypto';

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(clientKey) {
  return createHash('sha1').update(clientKey + ACCEPT_GUID).digest('base64');
}

export function newClientKey() {
  return randomBytes(16).toString('base64');
}

/** Builds one final binary frame; clients must mask (RFC 6455 5.3), servers must not. */
export function encodeFrame(payload, masked, opcode = 0x2) {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (masked ? 4 : 0);
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x80 | opcode;
  const maskBit = masked ? 0x80 : 0;
  if (lengthBytes === 0) frame[1] = maskBit | length;
  else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = maskBit | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!masked) {
    payload.copy(frame, headerLength);
    return frame;
  }
  const mask = randomBytes(4);
  mask.copy(frame, 2 + lengthBytes);
  for (let i = 0; i < length; i++) frame[headerLength + i] = payload[i] ^ mask[i & 3];
  return frame;
}

/**
 * Splits a byte stream into frames. Calls onFrame(opcode, payload) for each complete frame, unmasking as needed.
 * Returns a push(chunk) function.
 */
export function frameReader(onFrame) {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    // Bounded: each iteration consumes at least one whole frame header or stops.
    for (;;) {
      if (pending.length < 2) return;
      const opcode = pending[0] & 0x0f;
      const masked = (pending[1] & 0x80) !== 0;
      let length = pending[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (pending.length < 4) return;
        length = pending.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (pending.length < 10) return;
        length = Number(pending.readBigUInt64BE(2));
        offset = 10;
      }
      const maskOffset = offset;
      if (masked) offset += 4;
      if (pending.length < offset + length) return;
      const payload = Buffer.from(pending.subarray(offset, offset + length));
      if (masked) for (let i = 0; i < length; i++) payload[i] ^= pending[maskOffset + (i & 3)];
      pending = pending.subarray(offset + length);
      onFrame(opcode, payload);
    }
  };
}
