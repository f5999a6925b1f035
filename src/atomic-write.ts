// Crash-safe replacement of a file (temporary file, fsync, rename over, fsync of the directory): the one implementation, for Raft storage and for config files, and the stamp naming the copies kept beside one.

import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BalancerError, errorMessage } from './errors.js';

/** An open file being written; `write` may write fewer bytes than asked, like write(2). */
export interface WritableFile {
  write(data: Uint8Array, offset: number, length: number): Promise<number>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file operations an atomic replace needs; Raft storage passes its own (possibly simulated, crash-injecting) disk. */
export interface AtomicWriteFs {
  /** Creates `path` for writing (refusing or emptying an existing one, as the implementation chooses). */
  create(path: string, mode?: number): Promise<WritableFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** fsync by path; on a directory it makes the rename durable. */
  fsync(path: string): Promise<void>;
}

export interface AtomicWriteOptions {
  /** Default `<path>.tmp`, which Raft storage's start-up removes; writers that may race take a unique name. */
  readonly tmpPath?: string;
  /** Mode of the new file. */
  readonly mode?: number;
  /** Removes the temporary file when the write fails (Raft storage leaves it: its replay removes it, and a simulated crash allows no more I/O). */
  readonly removeTmpOnError?: boolean;
  /** Some filesystems refuse fsync on a directory; a config file write accepts that, Raft storage does not. */
  readonly tolerateDirSyncFailure?: boolean;
}

/** The temporary name used while `path` is being replaced. */
function tmpPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.tmp`);
}

/** Writes all of `data`: write(2) on a regular file may still return short, so a record is never half written by us. */
export async function writeFully(file: WritableFile, data: Uint8Array): Promise<void> {
  let written = 0;
  for (let guard = 0; written < data.length; guard++) {
    if (guard > 1000) throw new Error('file write made no progress');
    written += await file.write(data, written, data.length - written);
  }
}

/** writeFully on the calling thread, for an append that reaches the page cache in microseconds (the Raft WAL's batches). */
export function writeFullySync(file: { writeSync(data: Uint8Array, offset: number, length: number): number }, data: Uint8Array): void {
  let written = 0;
  for (let guard = 0; written < data.length; guard++) {
    if (guard > 1000) throw new Error('file write made no progress');
    written += file.writeSync(data, written, data.length - written);
  }
}

/**
 * Replaces `path` with `data` so that after a crash at any point the file holds either the old or the new
 * content in full, never a mix: write a temporary file, fsync it, rename it over, fsync the directory.
 */
export async function writeFileAtomic(fs: AtomicWriteFs, path: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  const tmp = options.tmpPath ?? tmpPathFor(path);
  const removeTmp = async (): Promise<void> => {
    if (options.removeTmpOnError === true) await fs.unlink(tmp).catch(() => undefined);
  };
  const file = await fs.create(tmp, options.mode);
  try {
    await writeFully(file, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    await file.sync();
  } catch (error) {
    await file.close();
    await removeTmp();
    throw error;
  }
  await file.close();
  try {
    await fs.rename(tmp, path);
  } catch (error) {
    await removeTmp();
    throw error;
  }
  try {
    await fs.fsync(dirname(path));
  } catch (error) {
    if (options.tolerateDirSyncFailure !== true) throw error;
  }
}

/** A callback fs call as a promise: fs/promises builds a FileHandle (an event emitter) per open, a fifth of a small replace's CPU. */
function call<T>(run: (done: (error: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((error, value) => (error === null ? resolve(value) : reject(error))));
}

function closeFd(fd: number): Promise<void> {
  return call<void>((done) => fs.close(fd, (error) => done(error, undefined)));
}

/** fsync on the thread pool: the step that waits for the disk. */
function fsyncFd(fd: number): Promise<void> {
  return call<void>((done) => fs.fsync(fd, (error) => done(error, undefined)));
}

/**
 * The real disk for config files (a few KB, written once per config change): new files are created exclusively, with
 * the mode asked for (umask aside). Only the fsyncs, which wait for the disk, go to the thread pool; creating, writing
 * into the page cache, closing and renaming are done in place. Each thread-pool round trip costs a wakeup of a pool
 * thread and of the event loop, and a replace made ten of them: most of a small replace's CPU.
 */
const configFileFs: AtomicWriteFs = {
  create: async (path, mode = 0o600) => {
    const fd = fs.openSync(path, 'wx', mode);
    try {
      fs.fchmodSync(fd, mode);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    return {
      write: async (data, offset, length) => fs.writeSync(fd, data, offset, length, null),
      sync: () => fsyncFd(fd),
      close: async () => fs.closeSync(fd),
    };
  },
  rename: async (from, to) => fs.renameSync(from, to),
  unlink: async (path) => fs.unlinkSync(path),
  fsync: async (path) => {
    const fd = fs.openSync(path, 'r');
    try {
      await fsyncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
};

/** fsync of a file or directory by path. */
export async function fsyncPath(path: string): Promise<void> {
  const fd = await call<number>((done) => fs.open(path, 'r', done));
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/**
 * writeFileAtomic for config and state files: keeps the old file's permissions (a config holding a token may be
 * 0600), takes a unique temporary name, and fails with CONFIG_IO naming the file.
 */
export async function replaceFile(path: string, data: string | Uint8Array): Promise<void> {
  let mode = 0o644;
  try {
    mode = fs.statSync(path).mode & 0o777;
  } catch {
    // A new file.
  }
  // Unique enough for a name taken with O_EXCL (a clash fails the write; nothing is overwritten); no need for crypto.
  const tmpPath = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  try {
    await writeFileAtomic(configFileFs, path, data, { tmpPath, mode, removeTmpOnError: true, tolerateDirSyncFailure: true });
  } catch (error) {
    throw new BalancerError('CONFIG_IO', `cannot write ${path}: ${errorMessage(error)}`, { cause: error });
  }
}

/** `2024-05-01T12-30-45.123Z`: an ISO time that is also a portable file-name part (`balancer.yaml.rejected-<stamp>`). */
export function fileStamp(date: Date): string {
  return date.toISOString().replace(/:/g, '-');
}
