// File primitives for the Raft data dir beside the atomic replace of atomic-write.ts: directory fsync, unlink if present.

import { isFsError, type RaftFs } from './raft-fs.js';

/**
 * Makes directory entries (creations, renames, unlinks) in `dir` durable. Without it a rename that
 * reached the page cache may be lost on power failure even though the file's data was fsynced.
 */
export function fsyncDir(fs: RaftFs, dir: string): Promise<void> {
  return fs.fsync(dir);
}

/** unlink that treats an already-missing file as success. */
export async function unlinkIfExists(fs: RaftFs, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch (error) {
    if (!isFsError(error, 'ENOENT')) throw error;
  }
}
