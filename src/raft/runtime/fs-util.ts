// Crash-safe file primitives for the Raft data dir: atomic replace (tmp + fsync + rename + dir fsync) and dir fsync.

import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Makes directory entries (creations, renames, unlinks) in `dir` durable. Without it a rename that
 * reached the page cache may be lost on power failure even though the file's data was fsynced.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The temporary name used while `path` is being replaced; replay code ignores and removes these. */
export function tmpPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.tmp`);
}

/**
 * Replaces `path` with `data` so that after a crash at any point the file holds either the old
 * or the new content in full, never a mix: write a tmp file, fsync it, rename it over, fsync the dir.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tmpPathFor(path);
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** unlink that treats an already-missing file as success. */
export async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
