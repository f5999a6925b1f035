// Durable Raft storage in the node's data dir: the write-ahead log, the snapshot file, the lock and the node-id record.

/*
 * Layout of the data dir:
 *   LOCK                    pid of the process that owns the dir (created atomically with link(2))
 *   meta.json               {"format":1,"nodeId":"n1"}, written once; a different node id refuses to start
 *   snapshot.snap           the latest snapshot, one CRC-checked record; replaced tmp + fsync + rename + dir fsync
 *   wal-<seq>.log           the write-ahead log segment; only the highest sequence is live
 *
 * Every WAL segment starts with a checkpoint record (snapshot index/term it builds on, hard state,
 * every entry after the snapshot) and continues with batch records, one per `save()` (= one Ready):
 * one write(2) and one fdatasync before the promise resolves, so nothing the driver sends afterwards
 * can depend on state that is not on disk.
 *
 * Hard state lives in the WAL, not in a separate tmp+rename file: a batch record carries the hard
 * state next to the entries it goes with and is fsynced with them, so the two can never disagree
 * after a crash, and a Ready costs one fsync instead of three (file, rename, dir). A record whose CRC
 * checks out is as good as an atomically renamed file; a torn one was never acknowledged.
 *
 * Appends at an index at or below the last one replace the suffix from that index, on replay exactly
 * as in memory (PersistedLog.append), so replay reproduces what the core persisted without separate
 * truncate records.
 *
 * saveSnapshot(): (1) snapshot.snap.tmp written + fsynced, renamed, dir fsynced; (2) the next segment
 * written as .tmp holding a checkpoint of the compacted log, fsynced, renamed, dir fsynced; (3) older
 * segments unlinked. A crash before (1) completes leaves the old snapshot and segment; between (1)
 * and (2) the new snapshot is applied on replay to the old segment with the same rule used live
 * (PersistedLog.applySnapshot); after (2) the highest segment wins and older ones are deleted on open.
 * Leftover .tmp files are never read and are removed on open.
 *
 * Recovery: a damaged record with no intact record after it is a torn final write (the fsync that
 * would have acknowledged it never returned) and is cut off with a warning. A damaged record followed
 * by intact ones means acknowledged data was lost, and open() refuses with STORAGE_CORRUPT. A CRC
 * cannot tell a torn final write from a bit flip in the final acknowledged record; we treat both as
 * torn, which only loses state that the rest of the cluster also holds if it was ever acknowledged.
 */

import { link, mkdir, open, readFile, readdir, rename, truncate } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BalancerError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Entry, HardState, Snapshot } from '../core/types.js';
import { fsyncDir, unlinkIfExists, writeFileAtomic } from './fs-util.js';
import { RecordType, encodeRecord, parseSegmentFileName, scanRecords, segmentFileName } from './wal.js';
import type { RawRecord } from './wal.js';

export const LOCK_FILE = 'LOCK';
export const META_FILE = 'meta.json';
export const SNAPSHOT_FILE = 'snapshot.snap';
const FORMAT_VERSION = 1;

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: null, commit: 0 });

/** What a restarted node feeds into the core's in-memory storage. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  /** Entries after the snapshot (or from index 1 without one), contiguous. */
  readonly entries: readonly Entry[];
}

/**
 * The log as persisted: a snapshot position plus the contiguous entries after it. The live path and
 * replay both go through these two methods, which is what makes replay reproduce the live state.
 */
export class PersistedLog {
  snapshotIndex = 0;
  snapshotTerm = 0;
  hardState: HardState = EMPTY_HARD_STATE;
  entries: Entry[] = [];

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  termAt(index: number): number | null {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return null;
    return this.entries[index - this.snapshotIndex - 1]?.term ?? null;
  }

  /** Why `entries` cannot be appended, or null when they can. */
  appendProblem(entries: readonly Entry[]): string | null {
    let expected: number | null = null;
    for (const entry of entries) {
      if (expected !== null && entry.index !== expected) return `entries are not contiguous at index ${entry.index}`;
      expected = entry.index + 1;
    }
    const first = entries[0];
    if (first !== undefined && first.index > this.lastIndex() + 1) {
      return `entry ${first.index} leaves a gap after the last index ${this.lastIndex()}`;
    }
    return null;
  }

  /** Entries at or before the snapshot are already covered; an overlap replaces the suffix, as Raft's log does. */
  append(entries: readonly Entry[]): void {
    const fresh = entries.filter((entry) => entry.index > this.snapshotIndex);
    const first = fresh[0];
    if (first === undefined) return;
    this.entries.length = first.index - this.snapshotIndex - 1;
    for (const entry of fresh) this.entries.push(entry);
  }

  /**
   * Entries after the snapshot survive only when the log agrees with the snapshot at its index
   * (a local compaction, or a leader snapshot of a prefix this log already has); otherwise the
   * snapshot replaces the whole log, which is what the core does when it restores from one.
   */
  applySnapshot(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    const kept = this.termAt(index) === term ? this.entries.slice(index - this.snapshotIndex) : [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.entries = kept;
  }
}

interface CheckpointPayload {
  readonly format: number;
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly hardState: HardState;
  readonly entries: readonly Entry[];
}

interface BatchPayload {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
}

export interface DiskStorageOptions {
  /** Whether the pid named in an existing lock still runs; replaceable so tests need not find a dead pid. */
  readonly isProcessAlive?: (pid: number) => boolean;
}

export class DiskStorage {
  private readonly log: PersistedLog;
  private snapshot: Snapshot | null = null;
  private segmentSequence = 0;
  private segment: FileHandle | null = null;
  /** Serialises writes: the driver awaits each call, but a stray concurrent call must not interleave records. */
  private queue: Promise<void> = Promise.resolve();
  /** Set when a write failed half way: the file no longer matches memory, so every later write must refuse. */
  private failure: Error | null = null;
  private closed = false;
  private readonly initial: PersistedState;

  private constructor(
    readonly dir: string,
    readonly nodeId: string,
    private readonly logger: Logger,
    private readonly lockPath: string,
    loaded: { log: PersistedLog; snapshot: Snapshot | null; segmentSequence: number; segment: FileHandle },
  ) {
    this.log = loaded.log;
    this.snapshot = loaded.snapshot;
    this.segmentSequence = loaded.segmentSequence;
    this.segment = loaded.segment;
    this.initial = Object.freeze({
      hardState: this.log.hardState,
      snapshot: this.snapshot,
      entries: Object.freeze([...this.log.entries]),
    });
  }

  /**
   * Opens (creating if needed) the data dir for `nodeId`: takes the lock, checks the node id,
   * recovers the WAL. Throws BalancerError STORAGE_LOCKED, STORAGE_NODE_MISMATCH or STORAGE_CORRUPT.
   */
  static async open(dir: string, nodeId: string, logger: Logger, options: DiskStorageOptions = {}): Promise<DiskStorage> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const lockPath = join(dir, LOCK_FILE);
    await acquireLock(lockPath, logger, options.isProcessAlive ?? isProcessAlive);
    try {
      await checkNodeId(dir, nodeId);
      const loaded = await recover(dir, logger);
      return new DiskStorage(dir, nodeId, logger, lockPath, loaded);
    } catch (error) {
      await releaseLock(lockPath);
      throw error;
    }
  }

  /** The state found on disk at open(), to seed the core's in-memory storage. */
  initialState(): PersistedState {
    return this.initial;
  }

  lastIndex(): number {
    return this.log.lastIndex();
  }

  currentSnapshot(): Snapshot | null {
    return this.snapshot;
  }

  hardState(): HardState {
    return this.log.hardState;
  }

  /** Persists one Ready's hard state and entries with one write and one fsync; resolves once durable. */
  save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
    if (hardState === undefined && entries.length === 0) return this.enqueue(async () => {});
    return this.enqueue(async () => {
      const problem = this.log.appendProblem(entries);
      if (problem !== null) {
        throw new BalancerError('INTERNAL', `refusing to persist entries: ${problem}`);
      }
      const payload: BatchPayload = hardState === undefined ? { entries } : { hardState, entries };
      await this.appendRecord(encodeRecord(RecordType.batch, payload));
      this.log.append(entries);
      if (hardState !== undefined) this.log.hardState = hardState;
    });
  }

  /**
   * Persists a snapshot (from a Ready, or a local one of the applied state) and compacts the WAL to
   * the entries after it. A snapshot not newer than the current one is ignored.
   */
  saveSnapshot(snapshot: Snapshot): Promise<void> {
    return this.enqueue(async () => {
      const { index, term } = snapshot.metadata;
      if (index <= this.log.snapshotIndex) {
        this.logger.debug('ignoring snapshot not newer than the stored one', { index, stored: this.log.snapshotIndex });
        return;
      }
      await writeFileAtomic(join(this.dir, SNAPSHOT_FILE), encodeRecord(RecordType.snapshot, snapshot));
      this.snapshot = snapshot;
      this.log.applySnapshot(index, term);
      await this.rotateSegment();
    });
  }

  /** Releases the lock and the WAL file; idempotent. Pending writes finish first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => {});
    const segment = this.segment;
    this.segment = null;
    if (segment !== null) await segment.close();
    await releaseLock(this.lockPath);
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.closed) throw new BalancerError('INTERNAL', 'raft storage is closed');
      if (this.failure !== null) {
        throw new BalancerError('INTERNAL', `raft storage failed earlier: ${this.failure.message}`, { cause: this.failure });
      }
      try {
        await work();
      } catch (error) {
        // Our own refusals happen before any I/O; anything else may have left a partial write behind.
        if (!(error instanceof BalancerError)) this.failure = error instanceof Error ? error : new Error(String(error));
        throw error;
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  private async appendRecord(record: Buffer): Promise<void> {
    const segment = this.segment;
    if (segment === null) throw new BalancerError('INTERNAL', 'raft storage is closed');
    let written = 0;
    // write(2) on a regular file may still return short; loop so a record is never half written by us.
    for (let guard = 0; written < record.length; guard++) {
      if (guard > 1000) throw new Error('WAL write made no progress');
      const { bytesWritten } = await segment.write(record, written, record.length - written);
      written += bytesWritten;
    }
    await segment.datasync();
  }

  /** Writes the next segment holding the whole current log, then retires the older one. */
  private async rotateSegment(): Promise<void> {
    const nextSequence = this.segmentSequence + 1;
    const nextPath = join(this.dir, segmentFileName(nextSequence));
    await writeFileAtomic(nextPath, encodeRecord(RecordType.checkpoint, checkpointOf(this.log)));
    const next = await open(nextPath, 'a');
    const previous = this.segment;
    const previousPath = join(this.dir, segmentFileName(this.segmentSequence));
    this.segment = next;
    this.segmentSequence = nextSequence;
    if (previous !== null) await previous.close();
    await unlinkIfExists(previousPath);
    await fsyncDir(this.dir);
  }
}

function checkpointOf(log: PersistedLog): CheckpointPayload {
  return {
    format: FORMAT_VERSION,
    snapshotIndex: log.snapshotIndex,
    snapshotTerm: log.snapshotTerm,
    hardState: log.hardState,
    entries: log.entries,
  };
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else, so it is alive.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLockPid(path: string): Promise<number | null> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    const pid = Number(text);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function lockedError(path: string, pid: number | null): BalancerError {
  const holder = pid === null ? 'another process' : `process ${pid}`;
  return new BalancerError(
    'STORAGE_LOCKED',
    `raft data dir is locked by ${holder} (${path}); stop that process, or delete the lock file if you are sure it is not running`,
  );
}

/**
 * link(2) creates the lock with its content in one atomic step, so no process ever sees an empty lock.
 * A lock whose pid is dead is moved aside (rename is atomic, so of two processes taking over the same
 * stale lock only one moves it) and then checked again: if what was moved is not the stale lock we
 * judged, it belongs to a live process and is put back.
 */
async function acquireLock(path: string, logger: Logger, alive: (pid: number) => boolean): Promise<void> {
  const mine = `${path}.${process.pid}.tmp`;
  await writeFileAtomic(mine, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(mine, path);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = await readLockPid(path);
      if (holder === null) continue; // released between our link and read
      if (alive(holder)) throw lockedError(path, holder);
      const aside = `${path}.stale.${process.pid}`;
      try {
        await rename(path, aside);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const moved = await readLockPid(aside);
      if (moved !== holder) {
        await link(aside, path).catch(() => {});
        await unlinkIfExists(aside);
        throw lockedError(path, moved);
      }
      await unlinkIfExists(aside);
      logger.warn('took over a stale raft data dir lock', { lock: path, deadPid: holder });
    }
    throw lockedError(path, await readLockPid(path));
  } finally {
    await unlinkIfExists(mine);
  }
}

async function releaseLock(path: string): Promise<void> {
  if ((await readLockPid(path)) === process.pid) await unlinkIfExists(path);
}

async function checkNodeId(dir: string, nodeId: string): Promise<void> {
  const path = join(dir, META_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const names = await readdir(dir);
    if (names.some((name) => name === SNAPSHOT_FILE || parseSegmentFileName(name) !== null)) {
      throw new BalancerError(
        'STORAGE_CORRUPT',
        `raft data dir ${dir} holds a log but no ${META_FILE}; refusing to guess which node it belongs to`,
      );
    }
    await writeFileAtomic(path, JSON.stringify({ format: FORMAT_VERSION, nodeId }) + '\n');
    return;
  }
  let recorded: unknown;
  try {
    recorded = (JSON.parse(text) as { nodeId?: unknown }).nodeId;
  } catch {
    recorded = undefined;
  }
  if (typeof recorded !== 'string') {
    throw new BalancerError('STORAGE_CORRUPT', `${path} is not valid; it should hold {"nodeId": "..."}`);
  }
  if (recorded !== nodeId) {
    throw new BalancerError(
      'STORAGE_NODE_MISMATCH',
      `raft data dir ${dir} belongs to node "${recorded}", not "${nodeId}"; point cluster.dataDir at this node's own directory`,
    );
  }
}

function corrupt(file: string, detail: string): BalancerError {
  return new BalancerError(
    'STORAGE_CORRUPT',
    `raft storage ${file} is corrupt: ${detail}. Refusing to start, since acknowledged Raft state may be lost. ` +
      `Restore the data dir from a backup, or remove it and re-add this node to the cluster (it then catches up from the leader).`,
  );
}

function parsePayload(file: string, record: RawRecord): unknown {
  try {
    return JSON.parse(record.payload.toString('utf8'));
  } catch (error) {
    throw corrupt(file, `record at byte offset ${record.offset} has a valid CRC but unreadable content (${errorMessage(error)})`);
  }
}

function isEntryList(value: unknown): value is Entry[] {
  return (
    Array.isArray(value) &&
    value.every(
      (entry: unknown) =>
        typeof entry === 'object' &&
        entry !== null &&
        Number.isInteger((entry as Entry).index) &&
        Number.isInteger((entry as Entry).term) &&
        typeof (entry as Entry).data === 'string',
    )
  );
}

function isHardState(value: unknown): value is HardState {
  if (typeof value !== 'object' || value === null) return false;
  const hs = value as HardState;
  return Number.isInteger(hs.term) && Number.isInteger(hs.commit) && (hs.vote === null || typeof hs.vote === 'string');
}

async function loadSnapshot(dir: string): Promise<Snapshot | null> {
  const path = join(dir, SNAPSHOT_FILE);
  let image: Buffer;
  try {
    image = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  // The snapshot file is replaced atomically, so any damage in it is corruption, never a torn write.
  const scan = scanRecords(image);
  const record = scan.records[0];
  if (scan.records.length !== 1 || scan.torn !== null || scan.corrupt !== null || record === undefined || record.type !== RecordType.snapshot) {
    const where = scan.corrupt ?? scan.torn;
    throw corrupt(path, where === null ? 'unexpected content' : `${where.reason} at byte offset ${where.offset}`);
  }
  const snapshot = parsePayload(path, record) as Snapshot;
  const meta = (snapshot as { metadata?: Snapshot['metadata'] }).metadata;
  if (typeof snapshot.data !== 'string' || meta === undefined || !Number.isInteger(meta.index) || !Number.isInteger(meta.term)) {
    throw corrupt(path, 'the snapshot record has an unexpected shape');
  }
  return snapshot;
}

async function recover(
  dir: string,
  logger: Logger,
): Promise<{ log: PersistedLog; snapshot: Snapshot | null; segmentSequence: number; segment: FileHandle }> {
  const names = await readdir(dir);
  for (const name of names) {
    // LOCK.<pid>.tmp files belong to other processes trying the lock right now; theirs to clean up.
    if (name.endsWith('.tmp') && !name.startsWith(`${LOCK_FILE}.`)) await unlinkIfExists(join(dir, name));
  }
  const snapshot = await loadSnapshot(dir);
  const sequences = names
    .map(parseSegmentFileName)
    .filter((sequence): sequence is number => sequence !== null)
    .sort((a, b) => a - b);
  const newest = sequences.at(-1);

  if (newest === undefined) {
    if (snapshot !== null) throw corrupt(join(dir, SNAPSHOT_FILE), 'a snapshot exists but no WAL segment does');
    const log = new PersistedLog();
    const path = join(dir, segmentFileName(1));
    await writeFileAtomic(path, encodeRecord(RecordType.checkpoint, checkpointOf(log)));
    return { log, snapshot, segmentSequence: 1, segment: await open(path, 'a') };
  }

  const path = join(dir, segmentFileName(newest));
  const log = await replaySegment(path, logger);

  if (snapshot !== null) {
    const { index, term } = snapshot.metadata;
    if (index < log.snapshotIndex || (index === log.snapshotIndex && term !== log.snapshotTerm)) {
      throw corrupt(path, `the WAL builds on snapshot ${log.snapshotIndex}/${log.snapshotTerm} but ${SNAPSHOT_FILE} holds ${index}/${term}`);
    }
    // A crash after the snapshot was renamed but before the compacted segment was: finish the job's effect.
    log.applySnapshot(index, term);
  } else if (log.snapshotIndex !== 0) {
    throw corrupt(path, `the WAL builds on snapshot index ${log.snapshotIndex} but ${SNAPSHOT_FILE} is missing`);
  }

  // Older segments are only left behind by a crash during compaction; the newest one supersedes them.
  const stale = sequences.filter((sequence) => sequence !== newest);
  for (const sequence of stale) await unlinkIfExists(join(dir, segmentFileName(sequence)));
  if (stale.length > 0) await fsyncDir(dir);

  return { log, snapshot, segmentSequence: newest, segment: await open(path, 'a') };
}

async function replaySegment(path: string, logger: Logger): Promise<PersistedLog> {
  const image = await readFile(path);
  const scan = scanRecords(image);
  if (scan.corrupt !== null) {
    throw corrupt(
      path,
      `${scan.corrupt.reason} in the record at byte offset ${scan.corrupt.offset}, with intact records after it (from offset ${scan.corrupt.nextValidOffset})`,
    );
  }
  const [first, ...rest] = scan.records;
  if (first === undefined || first.type !== RecordType.checkpoint) {
    // Segments become visible only by rename after fsync, so the checkpoint can never be torn.
    throw corrupt(path, `the segment does not start with an intact checkpoint record${scan.torn === null ? '' : ` (${scan.torn.reason})`}`);
  }
  const checkpoint = parsePayload(path, first) as CheckpointPayload;
  if (
    checkpoint.format !== FORMAT_VERSION ||
    !Number.isInteger(checkpoint.snapshotIndex) ||
    !Number.isInteger(checkpoint.snapshotTerm) ||
    !isHardState(checkpoint.hardState) ||
    !isEntryList(checkpoint.entries)
  ) {
    throw corrupt(path, 'the checkpoint record has an unexpected shape or format version');
  }
  const log = new PersistedLog();
  log.snapshotIndex = checkpoint.snapshotIndex;
  log.snapshotTerm = checkpoint.snapshotTerm;
  log.hardState = checkpoint.hardState;
  log.append(checkpoint.entries);

  for (const record of rest) {
    if (record.type !== RecordType.batch) throw corrupt(path, `unexpected record type ${record.type} at byte offset ${record.offset}`);
    const batch = parsePayload(path, record) as BatchPayload;
    if (!isEntryList(batch.entries) || (batch.hardState !== undefined && !isHardState(batch.hardState))) {
      throw corrupt(path, `the record at byte offset ${record.offset} has an unexpected shape`);
    }
    const problem = log.appendProblem(batch.entries);
    if (problem !== null) throw corrupt(path, `the record at byte offset ${record.offset}: ${problem}`);
    log.append(batch.entries);
    if (batch.hardState !== undefined) log.hardState = batch.hardState;
  }

  if (scan.torn !== null) {
    logger.warn('dropping a torn record at the end of the raft WAL; it was never acknowledged', {
      file: path,
      offset: scan.torn.offset,
      reason: scan.torn.reason,
      droppedBytes: image.length - scan.torn.offset,
    });
    // Cut it off now: a later append after the damage would make it look like corruption before the tail.
    await truncate(path, scan.validEnd);
    const handle = await open(path, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  return log;
}
