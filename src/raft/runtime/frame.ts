// The authenticated wire format of Raft peer traffic: frame encode/decode, the streaming frame reader, key derivation.

/*
 * Frame layout (big-endian), every field covered by the MAC:
 *   length u32        bytes after this field
 *   version u8        FRAME_VERSION
 *   kind u8           hello | welcome | proof | message | ack
 *   seq u64           0 for the handshake; 1, 2, ... per direction of a session, so a frame cannot be
 *                     replayed, dropped or reordered within its connection without failing the MAC
 *   clusterIdLen u8, clusterId, fromLen u8, from, toLen u8, to
 *   payload           JSON
 *   mac               HMAC-SHA256 (32 bytes) over everything before it
 *
 * Handshake frames are MACed with a key derived from the secret and cluster id; session frames with
 * per-direction keys derived from both peers' fresh nonces (see sessionKeys), so a frame recorded on
 * one connection is worthless on any other.
 */

import { createHash, createHmac, hash, timingSafeEqual, type Hash } from 'node:crypto';
import { errorMessage } from '../../errors.js';

const FRAME_VERSION = 1;
export const LENGTH_PREFIX_BYTES = 4;
const MAC_BYTES = 32;
const FIXED_HEADER_BYTES = 1 + 1 + 8; // version, kind, seq
/** Smallest possible frame after the length prefix: fixed header, three empty strings' lengths, MAC. */
const MIN_FRAME_BODY_BYTES = FIXED_HEADER_BYTES + 3 + MAC_BYTES;
const MAX_ID_BYTES = 255;

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Frames before authentication are tiny; capping them keeps an unauthenticated client from making us buffer much. */
export const MAX_HANDSHAKE_FRAME_BYTES = 4096;

/** proof: the client's first session frame, proving it holds the secret before the server trusts the connection. */
export const FrameKind = { hello: 1, welcome: 2, message: 3, ack: 4, proof: 5 } as const;
export type FrameKindCode = (typeof FrameKind)[keyof typeof FrameKind];
const KIND_CODES: ReadonlySet<number> = new Set(Object.values(FrameKind));

export interface Frame {
  readonly kind: FrameKindCode;
  readonly seq: number;
  readonly clusterId: string;
  readonly from: string;
  readonly to: string;
  /** From decodeFrame: a view of the decoded bytes (not a copy). */
  readonly payload: Buffer;
}

export type FrameRejectReason = 'malformed' | 'oversized' | 'bad_version' | 'wrong_cluster' | 'bad_mac' | 'replay';

export type FrameDecodeResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly reason: FrameRejectReason; readonly detail: string };

export interface DecodeOptions {
  readonly key: FrameKey;
  readonly clusterId: string;
  readonly maxFrameBytes?: number;
  /** When set, the frame's seq must equal it. */
  readonly expectedSeq?: number;
}

/** SHA-256 block size: HMAC pads its key to one block. */
const SHA256_BLOCK_BYTES = 64;
/** Frames up to this size are MACed by one-shot hashes of a copy behind the pad block; bigger ones (snapshots) by streaming. */
const ONE_SHOT_MAX_BYTES = 64 * 1024;
/** Bytes an encoder leaves in front of a frame for the MAC's inner pad block (see FrameKey). */
const PAD_ROOM_BYTES = SHA256_BLOCK_BYTES;

/**
 * An HMAC-SHA256 key made ready once for many frames (RFC 2104: H(k ^ opad || H(k ^ ipad || data))). The inner and
 * outer pad blocks are kept, and a frame's MAC is two one-shot hashes: of the inner pad followed by the frame, then of
 * the outer pad followed by that digest. Same bytes as createHmac with the key, so nodes of either build verify each
 * other's frames; what is saved is the per-frame set-up a Hash or Hmac object costs (a native object, its digest
 * context and its JS wrapper, three of them per frame before), which on a leader fanning a change out to a fleet is
 * paid per member. A frame the encoder writes leaves the pad block's room in front of itself (PAD_ROOM_BYTES), so it
 * is hashed where it lies; a received one is copied behind a pad block first, unless it is big.
 */
export class FrameKey {
  private readonly innerPad: Buffer;
  private readonly innerState: Hash;
  private readonly outerState: Hash;
  /** The outer pad and room for the inner digest: the outer hash's whole input. */
  private readonly outerInput: Buffer;

  constructor(key: Buffer) {
    const block = Buffer.alloc(SHA256_BLOCK_BYTES);
    (key.length > SHA256_BLOCK_BYTES ? createHash('sha256').update(key).digest() : key).copy(block);
    this.innerPad = Buffer.from(block.map((byte) => byte ^ 0x36));
    const outerPad = Buffer.from(block.map((byte) => byte ^ 0x5c));
    this.innerState = createHash('sha256').update(this.innerPad);
    this.outerState = createHash('sha256').update(outerPad);
    this.outerInput = Buffer.alloc(SHA256_BLOCK_BYTES + MAC_BYTES);
    outerPad.copy(this.outerInput);
  }

  /** HMAC-SHA256 of `data` under this key. */
  mac(data: Uint8Array): Buffer {
    if (data.length > ONE_SHOT_MAX_BYTES) {
      // A snapshot can be megabytes: hashed from the kept states rather than copied.
      return this.outerState.copy().update(this.innerState.copy().update(data).digest()).digest();
    }
    const padded = Buffer.allocUnsafe(PAD_ROOM_BYTES + data.length);
    padded.set(data, PAD_ROOM_BYTES);
    return this.macPadded(padded);
  }

  /** HMAC-SHA256 of `padded` after its first PAD_ROOM_BYTES bytes, which this overwrites with the inner pad block. */
  macPadded(padded: Buffer): Buffer {
    this.innerPad.copy(padded);
    hash('sha256', padded, 'buffer').copy(this.outerInput, SHA256_BLOCK_BYTES);
    // The pad block is key material, and the buffer may be a slice of Node's shared pool: it is not left there.
    padded.fill(0, 0, PAD_ROOM_BYTES);
    return hash('sha256', this.outerInput, 'buffer');
  }
}

function reject(reason: FrameRejectReason, detail: string): FrameDecodeResult {
  return { ok: false, reason, detail };
}

/** Seq travels as a u64; counts stay far below 2^53, so it is written as two u32 halves (no BigInt per frame). */
const TWO_POW_32 = 0x1_0000_0000;
/** The largest high half of a safe integer (2^53 - 1). */
const MAX_SAFE_SEQ_HIGH = 0x1f_ffff;

/**
 * Encodes frames between two fixed ends: the id header (cluster id, from, to) is built once, so a session's frames
 * cost one allocation each, with a string payload written straight into the frame. Throws only on caller mistakes
 * (ids too long).
 */
export class FrameEncoder {
  private readonly ids: Buffer;

  constructor(clusterId: string, from: string, to: string) {
    const parts = [Buffer.from(clusterId, 'utf8'), Buffer.from(from, 'utf8'), Buffer.from(to, 'utf8')];
    for (const [name, bytes] of [['cluster id', parts[0]!], ['from', parts[1]!], ['to', parts[2]!]] as const) {
      if (bytes.length > MAX_ID_BYTES) throw new RangeError(`${name} is longer than ${MAX_ID_BYTES} bytes`);
    }
    this.ids = Buffer.concat(parts.flatMap((bytes) => [Buffer.of(bytes.length), bytes]));
  }

  /** One complete frame, length prefix included; a string payload is encoded as UTF-8. */
  encode(kind: FrameKindCode, seq: number, payload: Uint8Array | string, key: FrameKey): Buffer {
    const payloadBytes = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
    const total = LENGTH_PREFIX_BYTES + FIXED_HEADER_BYTES + this.ids.length + payloadBytes + MAC_BYTES;
    // The frame is written after room for the MAC's pad block, so its bytes are hashed where they lie.
    const padded = Buffer.allocUnsafe(PAD_ROOM_BYTES + total);
    const out = padded.subarray(PAD_ROOM_BYTES);
    out.writeUInt32BE(total - LENGTH_PREFIX_BYTES, 0);
    out[4] = FRAME_VERSION;
    out[5] = kind;
    out.writeUInt32BE(Math.floor(seq / TWO_POW_32), 6);
    out.writeUInt32BE(seq >>> 0, 10);
    let at = LENGTH_PREFIX_BYTES + FIXED_HEADER_BYTES;
    at += this.ids.copy(out, at);
    if (typeof payload === 'string') at += out.write(payload, at, 'utf8');
    else {
      out.set(payload, at);
      at += payload.length;
    }
    const mac = at > ONE_SHOT_MAX_BYTES ? key.mac(out.subarray(0, at)) : key.macPadded(padded.subarray(0, PAD_ROOM_BYTES + at));
    mac.copy(out, at);
    return out;
  }
}

/** Encodes a complete frame, length prefix included. Throws only on caller mistakes (ids too long). */
export function encodeFrame(frame: Frame, key: FrameKey): Buffer {
  return new FrameEncoder(frame.clusterId, frame.from, frame.to).encode(frame.kind, frame.seq, frame.payload, key);
}

/**
 * Decodes one complete frame (length prefix included) and checks it against the cluster id, key and
 * expected sequence number. Never throws: anything wrong comes back as a typed rejection.
 */
export function decodeFrame(bytes: Uint8Array, options: DecodeOptions): FrameDecodeResult {
  try {
    return decodeUnchecked(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), options);
  } catch (error) {
    // Every read is bounds-checked first; this only guards the promise that decoding never throws.
    return reject('malformed', `undecodable frame (${errorMessage(error)})`);
  }
}

function decodeUnchecked(buf: Buffer, options: DecodeOptions): FrameDecodeResult {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (buf.length < LENGTH_PREFIX_BYTES) return reject('malformed', 'shorter than the length prefix');
  const declared = buf.readUInt32BE(0);
  if (declared > maxFrameBytes) return reject('oversized', `frame of ${declared} bytes exceeds the ${maxFrameBytes}-byte limit`);
  if (declared !== buf.length - LENGTH_PREFIX_BYTES) return reject('malformed', 'length prefix does not match the frame size');
  if (declared < MIN_FRAME_BODY_BYTES) return reject('malformed', 'frame too short');
  const end = buf.length - MAC_BYTES;
  let at = LENGTH_PREFIX_BYTES;
  const version = buf.readUInt8(at++);
  if (version !== FRAME_VERSION) return reject('bad_version', `unsupported frame version ${version}`);
  const kind = buf.readUInt8(at++);
  if (!KIND_CODES.has(kind)) return reject('malformed', `unknown frame kind ${kind}`);
  const seqHigh = buf.readUInt32BE(at);
  const seq = seqHigh * TWO_POW_32 + buf.readUInt32BE(at + 4);
  at += 8;
  if (seqHigh > MAX_SAFE_SEQ_HIGH) return reject('malformed', 'sequence number out of range');
  const strings: string[] = [];
  for (let i = 0; i < 3; i++) {
    if (at >= end) return reject('malformed', 'header runs into the MAC');
    const length = buf.readUInt8(at++);
    if (at + length > end) return reject('malformed', 'header runs into the MAC');
    strings.push(buf.toString('utf8', at, at + length));
    at += length;
  }
  const [clusterId = '', from = '', to = ''] = strings;
  if (clusterId !== options.clusterId) return reject('wrong_cluster', `frame for cluster "${clusterId}"`);
  const expected = options.key.mac(buf.subarray(0, end));
  if (!timingSafeEqual(expected, buf.subarray(end))) return reject('bad_mac', 'MAC does not match: wrong secret or tampered frame');
  if (options.expectedSeq !== undefined && seq !== options.expectedSeq) {
    return reject('replay', `sequence ${seq} where ${options.expectedSeq} was expected`);
  }
  return {
    ok: true,
    frame: { kind: kind as FrameKindCode, seq, clusterId, from, to, payload: buf.subarray(at, end) },
  };
}

/**
 * Splits a byte stream into complete frames by their length prefix. A declared length over the limit
 * is refused before its bytes are buffered, so a flood (or an HTTP request, whose first four bytes read
 * as a huge length) costs nothing. Frames come out one at a time because handling one frame (the end
 * of a handshake) may raise the limit that applies to the next.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(public maxFrameBytes: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete frame, null when more bytes are needed, or why the stream must be dropped. */
  next(): Buffer | null | { reason: 'oversized' | 'malformed'; detail: string } {
    if (this.buffered < LENGTH_PREFIX_BYTES) return null;
    if (this.chunks[0]!.length < LENGTH_PREFIX_BYTES) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    const declared = this.chunks[0]!.readUInt32BE(0);
    if (declared > this.maxFrameBytes) {
      return { reason: 'oversized', detail: `frame of ${declared} bytes exceeds the ${this.maxFrameBytes}-byte limit` };
    }
    if (declared < MIN_FRAME_BODY_BYTES) return { reason: 'malformed', detail: 'frame too short' };
    const total = LENGTH_PREFIX_BYTES + declared;
    if (this.buffered < total) return null;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const rest = all.subarray(total);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return all.subarray(0, total);
  }
}

function hmac(secret: string, parts: readonly string[]): Buffer {
  // JSON of an array is an unambiguous encoding of the parts, whatever characters they hold.
  return createHmac('sha256', secret).update(JSON.stringify(parts)).digest();
}

export function handshakeKey(secret: string, clusterId: string): FrameKey {
  return new FrameKey(hmac(secret, ['balancer/raft/handshake/v1', clusterId]));
}

export interface SessionKeys {
  readonly clientToServer: FrameKey;
  readonly serverToClient: FrameKey;
}

/** Per-connection keys: bound to both nonces and both ends, and different per direction so frames cannot be reflected. */
export function sessionKeys(
  secret: string,
  clusterId: string,
  client: string,
  server: string,
  clientNonce: string,
  serverNonce: string,
): SessionKeys {
  const context = [clusterId, client, server, clientNonce, serverNonce];
  return {
    clientToServer: new FrameKey(hmac(secret, ['balancer/raft/session/v1', 'client-to-server', ...context])),
    serverToClient: new FrameKey(hmac(secret, ['balancer/raft/session/v1', 'server-to-client', ...context])),
  };
}
