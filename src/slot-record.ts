// A small record kept durably in one file of two checksummed slots, rewritten in place: an update costs one write and one fdatasync instead of a replace's temporary file, rename and directory fsync.

/*
 * Layout: two slots of SLOT_BYTES each (offsets 0 and SLOT_BYTES). A slot holds one line of header, then the
 * record's text:
 *
 *   balancer-slot-record 1 <sequence> <byte length> <sha256 of the text, hex>\n<text>
 *
 * An update writes the slot that does not hold the newest record, with the next sequence number, and fdatasyncs it.
 * A crash during that write can only damage that slot; its checksum then fails and the other slot, the previous
 * record, is read. So after a crash at any point the record reads as the old or the new one in full, never a mix:
 * the guarantee of an atomic replace. The slots lie in different file blocks, so writing one never rewrites the
 * other. The file is created (both slots, full size) by an atomic replace, so its length and directory entry are
 * durable before any in-place write; a write that fails makes the next one create it again the same way.
 */

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { replaceFile } from './atomic-write.js';
import { BalancerError, errorMessage } from './errors.js';

/** Room for one record; 32 KiB fits a record naming a path of PATH_MAX bytes even with every byte JSON-escaped. */
export const SLOT_BYTES = 32 * 1024;
const MAGIC = 'balancer-slot-record';
const FORMAT = 1;

export type SlotRecordRead =
  | { readonly kind: 'absent' }
  /** The file exists but neither slot holds a whole record (not written by this code, or both slots damaged). */
  | { readonly kind: 'unreadable'; readonly reason: string }
  | { readonly kind: 'record'; readonly text: string; readonly sequence: number; readonly slot: 0 | 1 };

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The slot's header and text as bytes. */
function encodeSlot(text: string, sequence: number): Buffer {
  const body = Buffer.from(text, 'utf8');
  const slot = Buffer.concat([Buffer.from(`${MAGIC} ${FORMAT} ${sequence} ${body.length} ${sha256(body)}\n`, 'latin1'), body]);
  if (slot.length > SLOT_BYTES) throw new BalancerError('CONFIG_IO', `a record of ${body.length} bytes does not fit a ${SLOT_BYTES}-byte slot`);
  return slot;
}

/** The record in one slot, or null when the slot holds none (never written, torn, or overwritten by something else). */
function decodeSlot(bytes: Buffer): { text: string; sequence: number } | null {
  const newline = bytes.indexOf(0x0a);
  if (newline < 0) return null;
  const header = /^balancer-slot-record (\d+) (\d+) (\d+) ([0-9a-f]{64})$/.exec(bytes.subarray(0, newline).toString('latin1'));
  if (header === null || Number(header[1]) !== FORMAT) return null;
  const sequence = Number(header[2]);
  const length = Number(header[3]);
  if (!Number.isSafeInteger(sequence) || newline + 1 + length > bytes.length) return null;
  const body = bytes.subarray(newline + 1, newline + 1 + length);
  if (sha256(body) !== header[4]) return null;
  return { text: body.toString('utf8'), sequence };
}

/** Reads the newest whole record of the file at `path`. */
export async function readSlotRecord(path: string): Promise<SlotRecordRead> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return { kind: 'absent' };
    return { kind: 'unreadable', reason: errorMessage(error) };
  }
  let newest: { text: string; sequence: number; slot: 0 | 1 } | null = null;
  for (const slot of [0, 1] as const) {
    const found = decodeSlot(bytes.subarray(slot * SLOT_BYTES, (slot + 1) * SLOT_BYTES));
    if (found !== null && (newest === null || found.sequence > newest.sequence)) newest = { ...found, slot };
  }
  if (newest === null) return { kind: 'unreadable', reason: `neither slot of ${path} holds a whole record` };
  return { kind: 'record', ...newest };
}

/** fdatasync on the thread pool: the only step of an update that waits for the disk. */
function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
}

/**
 * Writes updates of one record into the file at `path`. One writer per file at a time (the caller serialises its
 * updates); `after` is what readSlotRecord found there when the writer was made.
 */
export class SlotRecordWriter {
  private readonly path: string;
  /** Slot and sequence of the newest durable record on disk; null: the file must be created (absent, unreadable, or a write failed). */
  private newest: { slot: 0 | 1; sequence: number } | null;
  /** The highest sequence written, durable or not: a record written without a sync may be newer than `newest`. */
  private lastSequence: number;

  constructor(path: string, after: SlotRecordRead) {
    this.path = path;
    this.newest = after.kind === 'record' ? { slot: after.slot, sequence: after.sequence } : null;
    this.lastSequence = after.kind === 'record' ? after.sequence : 0;
  }

  /**
   * Makes `text` the record. Durable (the default): once this resolves it survives a crash. Not durable: it survives a
   * crash of the process (it is in the kernel's page cache), and after an OS crash the record reads as this text or as
   * the newest durable one, whole either way: for a record the newest durable one already stands in for. Writes go to
   * the slot that does not hold the newest durable record, so a record not yet synced is never what the next write's
   * crash falls back to. Throws CONFIG_IO when the file cannot be written.
   */
  async write(text: string, options: { durable?: boolean } = {}): Promise<void> {
    const durable = options.durable ?? true;
    const newest = this.newest;
    if (newest === null) {
      const sequence = this.lastSequence + 1;
      const file = Buffer.alloc(2 * SLOT_BYTES);
      encodeSlot(text, sequence).copy(file, 0);
      await replaceFile(this.path, file);
      this.newest = { slot: 0, sequence };
      this.lastSequence = sequence;
      return;
    }
    const slot: 0 | 1 = newest.slot === 0 ? 1 : 0;
    const sequence = this.lastSequence + 1;
    const bytes = encodeSlot(text, sequence);
    // Until this write is known durable, the slot may hold anything: should it fail, the next write starts a new file
    // rather than overwrite the other slot, the one whole record left on disk.
    this.newest = null;
    try {
      const fd = fs.openSync(this.path, 'r+');
      try {
        let written = 0;
        for (let guard = 0; written < bytes.length; guard++) {
          if (guard > 1000) throw new Error('file write made no progress');
          written += fs.writeSync(fd, bytes, written, bytes.length - written, slot * SLOT_BYTES + written);
        }
        if (durable) await fdatasync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch (error) {
      throw new BalancerError('CONFIG_IO', `cannot write ${this.path}: ${errorMessage(error)}`, { cause: error });
    }
    this.lastSequence = sequence;
    this.newest = durable ? { slot, sequence } : newest;
  }
}
