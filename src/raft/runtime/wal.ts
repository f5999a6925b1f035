// The on-disk record format of the Raft write-ahead log and snapshot file: framing, CRC, and a scanner that tells a torn tail from corruption.

import * as zlib from 'node:zlib';

/**
 * Record layout (big-endian):
 *   magic u32 | bodyLength u32 | crc32 u32 (over the 4 length bytes, then the body) | body
 *   body = type u8 | JSON payload (UTF-8)
 * The magic lets the scanner find where a later record would start, so a damaged record can be
 * classified: a valid record after it means corruption before the tail; with nothing valid after it,
 * a short or zero-filled record is a torn final write and a complete one with a bad CRC is corruption
 * (see classifyTail). The CRC covers the length, so a damaged length cannot pass as valid.
 */
const RECORD_MAGIC = 0x42_57_4c_31; // "BWL1"
const RECORD_HEADER_BYTES = 12;
/** Upper bound for one record; anything longer is treated as a damaged length field. */
const MAX_RECORD_BYTES = 1 << 30;

export const RecordType = {
  /** First record of every WAL segment: the full log state at the moment the segment was written. */
  checkpoint: 1,
  /** One Ready's worth of persisted state: optional hard state and appended entries. */
  batch: 2,
  /** The only record of a snapshot file. */
  snapshot: 3,
} as const;
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType];

const MAGIC_BYTES = Buffer.from([0x42, 0x57, 0x4c, 0x31]);

type Crc32 = (data: Uint8Array, value?: number) => number;

function tableCrc32(): Crc32 {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return (data, value = 0) => {
    let crc = (value ^ 0xffffffff) >>> 0;
    for (let i = 0; i < data.length; i++) crc = (table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)) >>> 0;
    return (crc ^ 0xffffffff) >>> 0;
  };
}

// zlib.crc32 exists from Node 20.15; older 20.x releases get the table-driven version (same results).
const nativeCrc32 = (zlib as { crc32?: Crc32 }).crc32;
const crc32: Crc32 = typeof nativeCrc32 === 'function' ? nativeCrc32 : tableCrc32();

export function encodeRecord(type: RecordTypeCode, payload: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(payload), 'utf8');
  const bodyLength = 1 + json.length;
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + bodyLength);
  out.writeUInt32BE(RECORD_MAGIC, 0);
  out.writeUInt32BE(bodyLength, 4);
  out.writeUInt8(type, RECORD_HEADER_BYTES);
  json.copy(out, RECORD_HEADER_BYTES + 1);
  out.writeUInt32BE(recordCrc(out, 4, bodyLength), 8);
  return out;
}

function recordCrc(buf: Buffer, lengthOffset: number, bodyLength: number): number {
  const lengthBytes = buf.subarray(lengthOffset, lengthOffset + 4);
  const bodyStart = lengthOffset + 8;
  return crc32(buf.subarray(bodyStart, bodyStart + bodyLength), crc32(lengthBytes));
}

export interface RawRecord {
  readonly offset: number;
  readonly type: number;
  readonly payload: Buffer;
}

type RecordProbe = { ok: true; record: RawRecord; end: number } | { ok: false; reason: string };

/** Checks whether a complete, intact record starts at `offset`. */
function probeRecord(buf: Buffer, offset: number): RecordProbe {
  if (buf.length - offset < RECORD_HEADER_BYTES) return { ok: false, reason: 'short header' };
  if (buf.readUInt32BE(offset) !== RECORD_MAGIC) return { ok: false, reason: 'bad magic' };
  const bodyLength = buf.readUInt32BE(offset + 4);
  if (bodyLength < 1 || bodyLength > MAX_RECORD_BYTES) return { ok: false, reason: 'bad length' };
  const end = offset + RECORD_HEADER_BYTES + bodyLength;
  if (end > buf.length) return { ok: false, reason: 'short body' };
  if (recordCrc(buf, offset + 4, bodyLength) !== buf.readUInt32BE(offset + 8)) return { ok: false, reason: 'CRC mismatch' };
  const type = buf.readUInt8(offset + RECORD_HEADER_BYTES);
  return { ok: true, record: { offset, type, payload: buf.subarray(offset + RECORD_HEADER_BYTES + 1, end) }, end };
}

export interface ScanResult {
  readonly records: readonly RawRecord[];
  /** Where the intact prefix ends: the file should be truncated here when `torn` is set. */
  readonly validEnd: number;
  /** The final write never completed: a short or zero-filled record at the end of the file, never acknowledged. */
  readonly torn: { readonly offset: number; readonly reason: string } | null;
  /**
   * Data that was once durable has been damaged: a damaged record followed by an intact one
   * (`nextValidOffset`), or a final record that is complete but fails its checksum (`nextValidOffset` null).
   */
  readonly corrupt: { readonly offset: number; readonly reason: string; readonly nextValidOffset: number | null } | null;
}

/**
 * Classifies a damaged region that runs to the end of the file with no intact record after it.
 *
 * A crash during the final write(2) leaves a prefix of that record, possibly followed by zeros (the file
 * grew but the blocks behind the new size were never written). Our records never end in a zero byte
 * (the payload is a JSON object), so trailing zeros are never part of a real record: what precedes them
 * is what was written. The tail is torn when that written part stops inside the record the header
 * announces; a record that is all there but fails its CRC was damaged after it was written (and, since
 * nothing follows it, possibly after it was acknowledged), which is corruption, not a torn write.
 */
function classifyTail(buf: Buffer, offset: number, probeReason: string): { torn: boolean; reason: string } {
  let written = buf.length;
  while (written > offset && buf[written - 1] === 0) written--;
  const writtenBytes = written - offset;
  if (writtenBytes === 0) return { torn: true, reason: 'zero-filled record' };
  if (writtenBytes < RECORD_HEADER_BYTES) {
    const magicPart = buf.subarray(offset, offset + Math.min(4, writtenBytes));
    return MAGIC_BYTES.subarray(0, magicPart.length).equals(magicPart)
      ? { torn: true, reason: written < buf.length ? 'zero-filled header' : 'short header' }
      : { torn: false, reason: 'bad magic in the last record' };
  }
  if (buf.readUInt32BE(offset) !== RECORD_MAGIC) return { torn: false, reason: 'bad magic in the last record' };
  const bodyLength = buf.readUInt32BE(offset + 4);
  if (bodyLength < 1 || bodyLength > MAX_RECORD_BYTES) return { torn: false, reason: 'bad length in the last record' };
  const end = offset + RECORD_HEADER_BYTES + bodyLength;
  if (written < end) {
    // A damaged length field can also make a complete record look short: the CRC over the length the
    // bytes actually have tells that apart from a write that stopped early.
    const actual = writtenBytes - RECORD_HEADER_BYTES;
    const lengthBytes = Buffer.alloc(4);
    lengthBytes.writeUInt32BE(actual);
    const crcIfComplete = crc32(buf.subarray(offset + RECORD_HEADER_BYTES, written), crc32(lengthBytes));
    if (actual > 0 && crcIfComplete === buf.readUInt32BE(offset + 8)) {
      return { torn: false, reason: 'damaged length field in the last record' };
    }
    return { torn: true, reason: written < buf.length ? 'zero-filled body' : 'short body' };
  }
  return { torn: false, reason: `${probeReason} in the last complete record` };
}

/** Reads every intact record of a file image and classifies the first damaged region, if any. */
export function scanRecords(buf: Buffer): ScanResult {
  const records: RawRecord[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const probe = probeRecord(buf, offset);
    if (probe.ok) {
      records.push(probe.record);
      offset = probe.end;
      continue;
    }
    // Each candidate start is a later occurrence of the magic, so this loop is bounded by the file length.
    for (let at = buf.indexOf(MAGIC_BYTES, offset + 1); at !== -1; at = buf.indexOf(MAGIC_BYTES, at + 1)) {
      if (probeRecord(buf, at).ok) {
        return { records, validEnd: offset, torn: null, corrupt: { offset, reason: probe.reason, nextValidOffset: at } };
      }
    }
    const tail = classifyTail(buf, offset, probe.reason);
    if (!tail.torn) return { records, validEnd: offset, torn: null, corrupt: { offset, reason: tail.reason, nextValidOffset: null } };
    return { records, validEnd: offset, torn: { offset, reason: tail.reason }, corrupt: null };
  }
  return { records, validEnd: offset, torn: null, corrupt: null };
}

const SEGMENT_PATTERN = /^wal-(\d{16})\.log$/;

export function segmentFileName(sequence: number): string {
  return `wal-${String(sequence).padStart(16, '0')}.log`;
}

/** The sequence number of a WAL segment file name, or null for any other file. */
export function parseSegmentFileName(name: string): number | null {
  const match = SEGMENT_PATTERN.exec(name);
  return match === null ? null : Number(match[1]);
}
