// The file-system operations Raft storage is allowed to use, behind one interface, so a test can put a fault-injecting disk under it.

/*
 * Storage (storage.ts, fs-util.ts) touches the disk only through RaftFs. The real one below maps each
 * call to one node:fs call. The simulated one (src/raft/sim/fault-fs.ts) keeps files in memory, can
 * stop the process image before or after any call, and on a crash keeps only what was made durable
 * (plus, at random, some of what was not), which is how the crash tests reach every fsync.
 *
 * Errors keep node's shape: an Error with `code` ('ENOENT', 'EEXIST', ...), which callers check.
 */

import { writeSync } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, truncate, unlink } from 'node:fs/promises';
import { fsyncPath } from '../../atomic-write.js';

/** An open file: appends (openAppend) or writes from offset 0 (create). */
export interface RaftFile {
  /** Writes `length` bytes of `data` from `offset`; may write fewer, like write(2). */
  write(data: Uint8Array, offset: number, length: number): Promise<number>;
  /**
   * The same write(2) on the calling thread: a WAL append reaches the page cache in microseconds, far less than the
   * thread-pool round trip of `write` costs; only what waits for the disk (datasync, sync) goes to the pool.
   */
  writeSync(data: Uint8Array, offset: number, length: number): number;
  /** Makes the file's data durable (fdatasync). */
  datasync(): Promise<void>;
  /** Makes the file's data and metadata durable (fsync). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface RaftFs {
  /** mkdir -p with mode 0700. */
  mkdir(path: string): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  readdir(path: string): Promise<string[]>;
  /** Opens for appending, creating the file if it is missing. */
  openAppend(path: string): Promise<RaftFile>;
  /** Creates (or empties) a file for writing, mode 0600. */
  create(path: string): Promise<RaftFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Hard link; fails with EEXIST when `to` exists, which is what the data dir lock relies on. */
  link(from: string, to: string): Promise<void>;
  truncate(path: string, length: number): Promise<void>;
  /** fsync of a file or directory by path; for a directory it makes creations, renames and unlinks in it durable. */
  fsync(path: string): Promise<void>;
}

class NodeFile implements RaftFile {
  constructor(private readonly handle: import('node:fs/promises').FileHandle) {}

  async write(data: Uint8Array, offset: number, length: number): Promise<number> {
    return (await this.handle.write(data, offset, length)).bytesWritten;
  }

  writeSync(data: Uint8Array, offset: number, length: number): number {
    return writeSync(this.handle.fd, data, offset, length);
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** The real disk. */
export const nodeRaftFs: RaftFs = {
  mkdir: async (path) => {
    await mkdir(path, { recursive: true, mode: 0o700 });
  },
  readFile: (path) => readFile(path),
  readdir: (path) => readdir(path),
  openAppend: async (path) => new NodeFile(await open(path, 'a', 0o600)),
  create: async (path) => new NodeFile(await open(path, 'w', 0o600)),
  rename: (from, to) => rename(from, to),
  unlink: (path) => unlink(path),
  link: (from, to) => link(from, to),
  truncate: (path, length) => truncate(path, length),
  fsync: fsyncPath,
};

/** Whether `error` is a file-system error with this code (ENOENT, EEXIST, ...). */
export function isFsError(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === code;
}
