// A simulated disk for crash tests: an in-memory RaftFs that can kill the process image before or after any call, and loses what was not made durable.

/*
 * The model is the usual one for a journaling file system, taken adversarially:
 * - A file's data becomes durable only by fsync/fdatasync of that file. On a crash, data written since
 *   may be lost entirely, kept entirely, or torn: a prefix of it kept, possibly followed by zeros (the
 *   file grew but the blocks behind the new size were never written).
 * - Directory changes (create, rename, unlink, link) become durable only by fsync of the directory. On a
 *   crash, the changes since the last one survive as a prefix, in order (the journal replays in order);
 *   each rename is atomic. A file whose name survives keeps whatever its data came to (above), so a
 *   rename of a file that was never fsynced can leave an empty or torn file under the new name.
 * - mkdir is durable at once (data dirs are created once; we do not test losing one).
 *
 * Every call is one numbered operation. `decide` (set by the test) can crash the process image before
 * the operation takes effect or after it; from then on every call fails with SimulatedCrash, as if the
 * process were gone. `afterCrash()` builds the disk a restarted process would find. Everything resolves
 * through microtasks only, so a run is deterministic for a given seed.
 */

import { basename, dirname } from 'node:path';
import { randomInt, type Random } from '../../clock.js';
import type { RaftFile, RaftFs } from '../runtime/raft-fs.js';

export class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
}

export type FsOperationKind =
  | 'mkdir'
  | 'readFile'
  | 'readdir'
  | 'openAppend'
  | 'create'
  | 'write'
  | 'datasync'
  | 'sync'
  | 'close'
  | 'rename'
  | 'unlink'
  | 'link'
  | 'truncate'
  | 'fsync';

export interface FsOperation {
  /** 0, 1, 2, ... in call order on this disk image. */
  readonly index: number;
  readonly kind: FsOperationKind;
  readonly path: string;
}

/** What happens to data and directory changes that were not made durable when the process dies. */
export type CrashLoss = 'lose-all' | 'keep-all' | 'random';

export interface FaultFsOptions {
  /** Decides, for each operation, whether the process image dies just before or just after it. */
  readonly decide?: (operation: FsOperation) => 'crash-before' | 'crash-after' | undefined;
  /** Drives short writes and what a crash keeps; required for CrashLoss 'random' and for short writes. */
  readonly random?: Random;
  /** Chance that a write(2) writes only part of what it was given (callers must loop). */
  readonly shortWriteRate?: number;
  /**
   * A deliberately broken disk driver, to prove the crash tests catch a storage layer that skips an
   * fsync: fsync/fdatasync of the files it names (all, with true) return without making anything durable.
   */
  readonly ignoreFileSync?: boolean | ((path: string) => boolean);
}

interface Inode {
  data: Buffer;
  durable: Buffer;
}

type DirChange =
  | { readonly kind: 'set'; readonly name: string; readonly inode: Inode }
  | { readonly kind: 'delete'; readonly name: string }
  | { readonly kind: 'rename'; readonly from: string; readonly to: string; readonly inode: Inode };

interface Directory {
  readonly entries: Map<string, Inode>;
  durable: Map<string, Inode>;
  pending: DirChange[];
}

function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${syscall} '${path}'`) as NodeJS.ErrnoException;
  error.code = code;
  error.syscall = syscall;
  error.path = path;
  return error;
}

function applyChange(entries: Map<string, Inode>, change: DirChange): void {
  switch (change.kind) {
    case 'set':
      entries.set(change.name, change.inode);
      break;
    case 'delete':
      entries.delete(change.name);
      break;
    case 'rename':
      entries.delete(change.from);
      entries.set(change.to, change.inode);
      break;
  }
}

export class FaultFs implements RaftFs {
  private readonly dirs = new Map<string, Directory>();
  private operations = 0;
  private dead = false;
  private readonly options: FaultFsOptions;

  constructor(options: FaultFsOptions = {}) {
    this.options = options;
  }

  /** Operations started so far (the next one gets this index). */
  get operationCount(): number {
    return this.operations;
  }

  get crashed(): boolean {
    return this.dead;
  }

  /** Kills the process image now, between operations (a crash at a moment with no I/O in progress). */
  crash(): void {
    this.dead = true;
  }

  /**
   * The disk as a restarted process finds it: durable state, plus (per `loss`) some of what was not
   * durable. The new image has no crash plan unless `options` gives one.
   */
  afterCrash(loss: CrashLoss, options: FaultFsOptions = {}): FaultFs {
    const random = this.options.random;
    if (loss === 'random' && random === undefined) throw new Error('FaultFs needs a random source for random crash loss');
    const chance = (): number => random!.next();
    const survivors = new Map<Inode, Buffer>();
    const contentOf = (inode: Inode): Buffer => {
      const known = survivors.get(inode);
      if (known !== undefined) return known;
      let content: Buffer;
      if (inode.data.equals(inode.durable) || loss === 'lose-all') content = inode.durable;
      else if (loss === 'keep-all') content = inode.data;
      else content = tornContent(inode, chance, random!);
      const copy = Buffer.from(content);
      survivors.set(inode, copy);
      return copy;
    };
    const inherited = options.random ?? random;
    const image = new FaultFs(inherited === undefined ? options : { ...options, random: inherited });
    for (const [path, dir] of this.dirs) {
      const kept = loss === 'lose-all' ? 0 : loss === 'keep-all' ? dir.pending.length : randomInt(random!, dir.pending.length + 1);
      const names = new Map(dir.durable);
      for (const change of dir.pending.slice(0, kept)) applyChange(names, change);
      const entries = new Map<string, Inode>();
      const fresh = new Map<Inode, Inode>();
      for (const [name, inode] of names) {
        let copy = fresh.get(inode);
        if (copy === undefined) {
          const content = contentOf(inode);
          copy = { data: content, durable: content };
          fresh.set(inode, copy);
        }
        entries.set(name, copy);
      }
      image.dirs.set(path, { entries, durable: new Map(entries), pending: [] });
    }
    return image;
  }

  /** Names and contents as the process sees them now (tests compare images with it). */
  snapshotFiles(dir: string): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    for (const [name, inode] of this.dirs.get(dir)?.entries ?? []) out.set(name, Buffer.from(inode.data));
    return out;
  }

  /** Writes a file straight into the durable image (test set-up, not an operation). */
  plant(path: string, content: Buffer | string): void {
    const dir = this.ensureDir(dirname(path));
    const data = Buffer.from(content);
    const inode: Inode = { data, durable: Buffer.from(data) };
    dir.entries.set(basename(path), inode);
    dir.durable.set(basename(path), inode);
  }

  // ---- RaftFs ----

  async mkdir(path: string): Promise<void> {
    await this.operation('mkdir', path, () => {
      this.ensureDir(path);
    });
  }

  async readFile(path: string): Promise<Buffer> {
    return this.operation('readFile', path, () => Buffer.from(this.inodeAt(path, 'open').data));
  }

  async readdir(path: string): Promise<string[]> {
    return this.operation('readdir', path, () => {
      const dir = this.dirs.get(path);
      if (dir === undefined) throw fsError('ENOENT', 'scandir', path);
      return [...dir.entries.keys()].sort();
    });
  }

  async openAppend(path: string): Promise<RaftFile> {
    return this.operation('openAppend', path, () => {
      const inode = this.lookup(path) ?? this.createInode(path);
      return new FaultFile(this, path, inode, 'append');
    });
  }

  async create(path: string): Promise<RaftFile> {
    return this.operation('create', path, () => {
      const existing = this.lookup(path);
      const inode = existing ?? this.createInode(path);
      if (existing !== undefined) inode.data = Buffer.alloc(0);
      return new FaultFile(this, path, inode, 'write');
    });
  }

  async rename(from: string, to: string): Promise<void> {
    await this.operation('rename', `${from} -> ${to}`, () => {
      const inode = this.inodeAt(from, 'rename');
      const source = this.dirOf(from, 'rename');
      const target = this.dirOf(to, 'rename');
      if (source === target) {
        const change: DirChange = { kind: 'rename', from: basename(from), to: basename(to), inode };
        applyChange(source.entries, change);
        source.pending.push(change);
        return;
      }
      const unlink: DirChange = { kind: 'delete', name: basename(from) };
      const link: DirChange = { kind: 'set', name: basename(to), inode };
      applyChange(source.entries, unlink);
      source.pending.push(unlink);
      applyChange(target.entries, link);
      target.pending.push(link);
    });
  }

  async unlink(path: string): Promise<void> {
    await this.operation('unlink', path, () => {
      this.inodeAt(path, 'unlink');
      const dir = this.dirOf(path, 'unlink');
      const change: DirChange = { kind: 'delete', name: basename(path) };
      applyChange(dir.entries, change);
      dir.pending.push(change);
    });
  }

  async link(from: string, to: string): Promise<void> {
    await this.operation('link', `${from} -> ${to}`, () => {
      const inode = this.inodeAt(from, 'link');
      if (this.lookup(to) !== undefined) throw fsError('EEXIST', 'link', to);
      const dir = this.dirOf(to, 'link');
      const change: DirChange = { kind: 'set', name: basename(to), inode };
      applyChange(dir.entries, change);
      dir.pending.push(change);
    });
  }

  async truncate(path: string, length: number): Promise<void> {
    await this.operation('truncate', path, () => {
      const inode = this.inodeAt(path, 'open');
      const data = Buffer.alloc(length);
      inode.data.copy(data, 0, 0, Math.min(length, inode.data.length));
      inode.data = data;
    });
  }

  async fsync(path: string): Promise<void> {
    await this.operation('fsync', path, () => {
      const dir = this.dirs.get(path);
      if (dir !== undefined) {
        dir.durable = new Map(dir.entries);
        dir.pending = [];
        return;
      }
      this.syncInode(this.inodeAt(path, 'open'), path);
    });
  }

  // ---- internals, also used by FaultFile ----

  /** @internal Runs one numbered operation under the crash plan. */
  operation<T>(kind: FsOperationKind, path: string, effect: () => T): Promise<T> {
    try {
      return Promise.resolve(this.operationSync(kind, path, effect));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** @internal The same for a call made on the calling thread (writeSync): it throws where `operation` rejects. */
  operationSync<T>(kind: FsOperationKind, path: string, effect: () => T): T {
    if (this.dead) throw new SimulatedCrash(`the process crashed before ${kind} ${path}`);
    const index = this.operations++;
    const decision = this.options.decide?.({ index, kind, path });
    if (decision === 'crash-before') {
      this.dead = true;
      throw new SimulatedCrash(`crash before ${kind} ${path} (operation ${index})`);
    }
    let result: T;
    try {
      result = effect();
    } catch (error) {
      if (decision !== 'crash-after') throw error;
    }
    if (decision === 'crash-after') {
      this.dead = true;
      throw new SimulatedCrash(`crash after ${kind} ${path} (operation ${index})`);
    }
    return result!;
  }

  /** @internal */
  syncInode(inode: Inode, path: string): void {
    const ignore = this.options.ignoreFileSync;
    if (ignore === true || (typeof ignore === 'function' && ignore(path))) return;
    inode.durable = Buffer.from(inode.data);
  }

  /** @internal How much of a write(2) goes through this time. */
  writeLength(length: number): number {
    const random = this.options.random;
    const rate = this.options.shortWriteRate ?? 0;
    if (random === undefined || rate <= 0 || length <= 1 || random.next() >= rate) return length;
    return 1 + randomInt(random, length - 1);
  }

  private ensureDir(path: string): Directory {
    let dir = this.dirs.get(path);
    if (dir === undefined) {
      const parent = dirname(path);
      if (parent !== path) this.ensureDir(parent);
      dir = { entries: new Map(), durable: new Map(), pending: [] };
      this.dirs.set(path, dir);
    }
    return dir;
  }

  private dirOf(path: string, syscall: string): Directory {
    const dir = this.dirs.get(dirname(path));
    if (dir === undefined) throw fsError('ENOENT', syscall, path);
    return dir;
  }

  private lookup(path: string): Inode | undefined {
    return this.dirs.get(dirname(path))?.entries.get(basename(path));
  }

  private inodeAt(path: string, syscall: string): Inode {
    const inode = this.lookup(path);
    if (inode === undefined) throw fsError('ENOENT', syscall, path);
    return inode;
  }

  private createInode(path: string): Inode {
    const dir = this.dirOf(path, 'open');
    const inode: Inode = { data: Buffer.alloc(0), durable: Buffer.alloc(0) };
    const change: DirChange = { kind: 'set', name: basename(path), inode };
    applyChange(dir.entries, change);
    dir.pending.push(change);
    return inode;
  }
}

/**
 * What a crash leaves of a file with writes that were not made durable. For an append (the WAL) the
 * durable prefix always survives and the rest is lost, kept, cut short, or cut short and zero-filled;
 * anything else (a truncate, a rewrite) comes back as either the old or the new content.
 */
function tornContent(inode: Inode, chance: () => number, random: Random): Buffer {
  const { data, durable } = inode;
  const appended = data.length > durable.length && data.subarray(0, durable.length).equals(durable);
  if (!appended) return chance() < 0.5 ? durable : data;
  const extra = data.length - durable.length;
  const roll = chance();
  if (roll < 0.3) return durable;
  if (roll < 0.5) return data;
  const kept = randomInt(random, extra);
  if (roll < 0.8) return data.subarray(0, durable.length + kept);
  const size = durable.length + kept + 1 + randomInt(random, extra - kept);
  const out = Buffer.alloc(size);
  data.copy(out, 0, 0, durable.length + kept);
  return out;
}

class FaultFile implements RaftFile {
  private position = 0;
  private closed = false;

  constructor(
    private readonly fs: FaultFs,
    private readonly path: string,
    private readonly inode: Inode,
    private readonly mode: 'append' | 'write',
  ) {}

  write(data: Uint8Array, offset: number, length: number): Promise<number> {
    return this.fs.operation('write', this.path, () => this.writeNow(data, offset, length));
  }

  writeSync(data: Uint8Array, offset: number, length: number): number {
    return this.fs.operationSync('write', this.path, () => this.writeNow(data, offset, length));
  }

  private writeNow(data: Uint8Array, offset: number, length: number): number {
    this.checkOpen();
    const count = this.fs.writeLength(length);
    const chunk = Buffer.from(data.buffer, data.byteOffset + offset, count);
    const at = this.mode === 'append' ? this.inode.data.length : this.position;
    const end = at + count;
    const next = Buffer.alloc(Math.max(end, this.inode.data.length));
    this.inode.data.copy(next);
    chunk.copy(next, at);
    this.inode.data = next;
    this.position = end;
    return count;
  }

  datasync(): Promise<void> {
    return this.fs.operation('datasync', this.path, () => {
      this.checkOpen();
      this.fs.syncInode(this.inode, this.path);
    });
  }

  sync(): Promise<void> {
    return this.fs.operation('sync', this.path, () => {
      this.checkOpen();
      this.fs.syncInode(this.inode, this.path);
    });
  }

  close(): Promise<void> {
    return this.fs.operation('close', this.path, () => {
      this.checkOpen();
      this.closed = true;
    });
  }

  private checkOpen(): void {
    if (this.closed) throw fsError('EBADF', 'write', this.path);
  }
}
