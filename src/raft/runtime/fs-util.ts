// Crash-safe file primitives for the Raft data dir: atomic replace (tmp + fsync + rename + dir fsync), full writes, dir fsync.

import { basename, dirname, join } from 'node:path';
import { isFsError, type RaftFile, type RaftFs } from './raft-fs.js';

/**
 * Makes directory entries (creations, renames, unlinks) in `dir` durable. Without it a rename that
 * reached the page cache may be lost on power failure even though the file's data was fsynced.
 */
export function fsyncDir(fs: RaftFs, dir: string): Promise<void> {
  return fs.fsync(dir);
}

/** The temporary name used while `path` is being replaced; replay code ignores and removes these. */
export function tmpPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.tmp`);
}

/** Writes all of `data`: write(2) on a regular file may still return short, so a record is never half written by us. */
export async function writeFully(file: RaftFile, data: Uint8Array): Promise<void> {
  let written = 0;
  for (let guard = 0; written < data.length; guard++) {
    if (guard > 1000) throw new Error('file write made no progress');
    written += await file.write(data, written, data.length - written);
  }
}

/**
 * Replaces `path` with `data` so that after a crash at any point the file holds either the old
 * or the new content in full, never a mix: write a tmp file, fsync it, rename it over, fsync the dir.
 */
export async function writeFileAtomic(fs: RaftFs, path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tmpPathFor(path);
  const file = await fs.create(tmp);
  try {
    await writeFully(file, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    await file.sync();
  } finally {
    await file.close();
  }
  await fs.rename(tmp, path);
  await fsyncDir(fs, dirname(path));
}

/** unlink that treats an already-missing file as success. */
export async function unlinkIfExists(fs: RaftFs, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch (error) {
    if (!isFsError(error, 'ENOENT')) throw error;
  }
}
