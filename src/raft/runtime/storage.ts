// Durable Raft storage in the node's data dir: the write-ahead log with its snapshot, the lock and the data dir's identity record.

/*
 * Layout of the data dir:
 *   LOCK                    pid of the process that owns the dir (created atomically with link(2))
 *   meta.json               {"format":2,"nodeId":"n1","incarnation":"<random>"}, written when the dir is created;
 *                           a different node id refuses to start; the incarnation names this copy of the
 *                           node's state (a wiped dir gets a new one, which peers can tell apart)
 *   wal-<seq>.log           the write-ahead log segment; only the highest sequence is live
 *   snapshot.snap           only in data dirs written before snapshots moved into the segment (format 1)
 *
 * Every WAL segment starts with a checkpoint record (the snapshot the log builds on, in full, the hard
 * state, every entry after the snapshot) and continues with batch records, one per `save()` (= one
 * Ready): one write(2) and one fdatasync before the promise resolves, so nothing the driver sends
 * afterwards can depend on state that is not on disk. A batch of only a new commit index may skip the
 * fdatasync (`sync: false`, as etcd does for a Ready that need not sync): the commit index need not be
 * durable (a restarted node learns it again from the leader), and the next synced batch makes it durable
 * with everything before it. Lost in a crash, such a record is the torn tail cut off below.
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
 * saveSnapshot() (a leader's snapshot installed, or a local compaction) is one atomic durable step:
 * the next segment is written as .tmp holding the snapshot, the hard state and the entries after it,
 * fsynced, renamed into place, and the dir fsynced; then older segments are unlinked. A crash before
 * the rename leaves the old segment (the snapshot was never acknowledged); after it the highest
 * segment wins and older ones are deleted on open. Leftover .tmp files are never read and are
 * removed on open. (Format 1 wrote snapshot.snap and the segment as two steps, and a crash between
 * them left a commit index below the snapshot; replay of such a dir raises commit to the snapshot
 * index, which is safe because a snapshot holds only committed entries.)
 *
 * Recovery: a torn final write (the fsync that would have acknowledged it never returned) leaves a
 * short or zero-filled last record; it is cut off with a warning. Anything else is damage to data
 * that was written and may have been acknowledged (a vote, an appended entry), and open() refuses with
 * STORAGE_CORRUPT naming the file and offset: a damaged record followed by intact ones, and also a
 * complete last record with a bad checksum (see wal.ts classifyTail).
 */

import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { BalancerError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { EMPTY_HARD_STATE } from '../core/storage.js';
import type { Entry, HardState, Snapshot } from '../core/types.js';
import { isEntryList, isHardState, isSnapshot } from './record-shapes.js';
import { writeFileAtomic, writeFullySync } from '../../atomic-write.js';
import { fsyncDir, unlinkIfExists } from './fs-util.js';
import { isFsError, nodeRaftFs, type RaftFile, type RaftFs } from './raft-fs.js';
import { RecordType, encodeRecord, parseSegmentFileName, scanRecords, segmentFileName } from './wal.js';
import type { RawRecord } from './wal.js';

export const LOCK_FILE = 'LOCK';
const META_FILE = 'meta.json';
/** Where format-1 data dirs keep their snapshot; format 2 keeps it in the segment's checkpoint. */
const LEGACY_SNAPSHOT_FILE = 'snapshot.snap';
/** 2: the snapshot lives in the checkpoint record; 1: in snapshot.snap. Both are read; 2 is written. */
const CHECKPOINT_FORMAT = 2;
const META_FORMAT = 2;

/** What a restarted node feeds into the core's in-memory storage. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  /** Entries after the snapshot (or from index 1 without one), contiguous. */
  readonly entries: readonly Entry[];
}

/**
 * The log as persisted: a snapshot position plus the contiguous entries after it. The live path and
 * replay both go through these methods, which is what makes replay reproduce the live state.
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

  copy(): PersistedLog {
    const out = new PersistedLog();
    out.snapshotIndex = this.snapshotIndex;
    out.snapshotTerm = this.snapshotTerm;
    out.hardState = this.hardState;
    out.entries = this.entries.slice();
    return out;
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
   * A snapshot holds only committed entries, so the commit index is at least its index.
   */
  applySnapshot(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    const kept = this.termAt(index) === term ? this.entries.slice(index - this.snapshotIndex) : [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.entries = kept;
    if (this.hardState.commit < index) this.hardState = { ...this.hardState, commit: index };
  }
}

interface CheckpointPayload {
  readonly format: number;
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  /** Format 2: the snapshot at snapshotIndex, null before the first one. Format 1: absent (see snapshot.snap). */
  readonly snapshot?: Snapshot | null;
  readonly hardState: HardState;
  readonly entries: readonly Entry[];
}

interface BatchPayload {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
}

export interface DiskStorageOptions {
  /** The disk; tests put a fault-injecting one here. */
  readonly fs?: RaftFs;
  /** Whether the pid named in an existing lock still runs; replaceable so tests need not find a dead pid. */
  readonly isProcessAlive?: (pid: number) => boolean;
  /** The pid written into the lock (a simulated process in tests); defaults to this process. */
  readonly pid?: number;
  /** Makes the incarnation id of a new data dir; random by default. */
  readonly newIncarnation?: () => string;
}

/** Who this data dir is: the node it belongs to and which copy of that node's state it holds. */
export interface DataDirIdentity {
  readonly nodeId: string;
  /** Made when the data dir was created; a wiped or replaced dir has another one. */
  readonly incarnation: string;
}

/** What the Raft driver needs of its durable storage; DiskStorage is the one implementation (crash tests wrap it). */
export interface RaftStorage {
  readonly identity: DataDirIdentity;
  initialState(): PersistedState;
  save(hardState: HardState | undefined, entries: readonly Entry[], options?: SaveOptions): Promise<void>;
  saveSnapshot(snapshot: Snapshot, hardState?: HardState, entries?: readonly Entry[]): Promise<void>;
  close(): Promise<void>;
}

export interface SaveOptions {
  /**
   * false: write the batch without waiting for fdatasync. Honoured only for a batch without entries; the driver asks
   * for it only when the hard state changed no more than its commit index (a term or vote is synced like entries), a
   * commit index it need not have on disk before it acts on it.
   */
  readonly sync?: boolean;
}

export class DiskStorage implements RaftStorage {
  private readonly log: PersistedLog;
  private snapshot: Snapshot | null = null;
  private segmentSequence = 0;
  private segment: RaftFile | null = null;
  /** Serialises writes: the driver awaits each call, but a stray concurrent call must not interleave records. */
  private queue: Promise<void> = Promise.resolve();
  /** Set when a write failed half way: the file no longer matches memory, so every later write must refuse. */
  private failure: Error | null = null;
  private closed = false;
  private readonly initial: PersistedState;

  private constructor(
    readonly dir: string,
    readonly identity: DataDirIdentity,
    private readonly fs: RaftFs,
    private readonly logger: Logger,
    private readonly lock: DataDirLock,
    loaded: RecoveredLog,
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
    const fs = options.fs ?? nodeRaftFs;
    await fs.mkdir(dir);
    const lock = new DataDirLock(fs, join(dir, LOCK_FILE), options.pid ?? process.pid);
    await lock.acquire(logger, options.isProcessAlive ?? isProcessAlive);
    try {
      const identity = await loadIdentity(fs, dir, nodeId, options.newIncarnation ?? newIncarnationId);
      const loaded = await recover(fs, dir, logger);
      return new DiskStorage(dir, identity, fs, logger, lock, loaded);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  get nodeId(): string {
    return this.identity.nodeId;
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

  /**
   * Persists one Ready's hard state and entries with one write and one fsync; resolves once durable. With `sync: false`
   * and no entries, resolves once written (see SaveOptions).
   */
  save(hardState: HardState | undefined, entries: readonly Entry[], options: SaveOptions = {}): Promise<void> {
    if (hardState === undefined && entries.length === 0) return this.enqueue(async () => {});
    const sync = options.sync !== false || entries.length > 0;
    return this.enqueue(() => this.appendBatch(hardState, entries, sync));
  }

  /**
   * Persists a snapshot (from a Ready, with that Ready's hard state and entries, or a local one of the
   * applied state) and compacts the WAL to the entries after it, as one atomic step: after a crash the
   * disk holds either all of it or none of it. A snapshot not newer than the stored one is skipped (the
   * hard state and entries are still saved).
   */
  saveSnapshot(snapshot: Snapshot, hardState?: HardState, entries: readonly Entry[] = []): Promise<void> {
    return this.enqueue(async () => {
      const { index, term } = snapshot.metadata;
      if (index <= this.log.snapshotIndex) {
        this.logger.debug('ignoring snapshot not newer than the stored one', { index, stored: this.log.snapshotIndex });
        if (hardState !== undefined || entries.length > 0) await this.appendBatch(hardState, entries);
        return;
      }
      const next = this.log.copy();
      next.applySnapshot(index, term);
      const problem = next.appendProblem(entries);
      if (problem !== null) throw new BalancerError('INTERNAL', `refusing to persist entries with a snapshot: ${problem}`);
      next.append(entries);
      if (hardState !== undefined) next.hardState = hardState.commit >= index ? hardState : { ...hardState, commit: index };
      await this.rotateSegment(next, snapshot);
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
    await this.lock.release();
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

  private async appendBatch(hardState: HardState | undefined, entries: readonly Entry[], sync = true): Promise<void> {
    const problem = this.log.appendProblem(entries);
    if (problem !== null) {
      throw new BalancerError('INTERNAL', `refusing to persist entries: ${problem}`);
    }
    const payload: BatchPayload = hardState === undefined ? { entries } : { hardState, entries };
    const segment = this.segment;
    if (segment === null) throw new BalancerError('INTERNAL', 'raft storage is closed');
    // Written on the event loop; only the fdatasync waits in the thread pool (one round trip per Ready instead of two).
    writeFullySync(segment, encodeRecord(RecordType.batch, payload));
    if (sync) await segment.datasync();
    this.log.append(entries);
    if (hardState !== undefined) this.log.hardState = hardState;
  }

  /** Writes the next segment holding `next` (the whole log after `snapshot`), then retires the older ones. */
  private async rotateSegment(next: PersistedLog, snapshot: Snapshot): Promise<void> {
    const fs = this.fs;
    const nextSequence = this.segmentSequence + 1;
    const nextPath = join(this.dir, segmentFileName(nextSequence));
    // The rename inside is the commit point of the whole snapshot install.
    await writeFileAtomic(fs, nextPath, encodeRecord(RecordType.checkpoint, checkpointOf(next, snapshot)));
    const opened = await fs.openAppend(nextPath);
    const previous = this.segment;
    const previousPath = join(this.dir, segmentFileName(this.segmentSequence));
    this.segment = opened;
    this.segmentSequence = nextSequence;
    this.log.snapshotIndex = next.snapshotIndex;
    this.log.snapshotTerm = next.snapshotTerm;
    this.log.hardState = next.hardState;
    this.log.entries = next.entries;
    this.snapshot = snapshot;
    if (previous !== null) await previous.close();
    await unlinkIfExists(fs, previousPath);
    await unlinkIfExists(fs, join(this.dir, LEGACY_SNAPSHOT_FILE));
    await fsyncDir(fs, this.dir);
  }
}

function checkpointOf(log: PersistedLog, snapshot: Snapshot | null): CheckpointPayload {
  return {
    format: CHECKPOINT_FORMAT,
    snapshotIndex: log.snapshotIndex,
    snapshotTerm: log.snapshotTerm,
    snapshot,
    hardState: log.hardState,
    entries: log.entries,
  };
}

function newIncarnationId(): string {
  return randomBytes(16).toString('hex');
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else, so it is alive.
    return isFsError(error, 'EPERM');
  }
}

function lockedError(path: string, pid: number | null): BalancerError {
  const holder = pid === null ? 'another process' : `process ${pid}`;
  return new BalancerError(
    'STORAGE_LOCKED',
    `raft data dir is locked by ${holder} (${path}); stop that process, or delete the lock file if you are sure it is not running`,
  );
}

/** The data dir's LOCK file, holding the owner's pid. */
class DataDirLock {
  constructor(
    private readonly fs: RaftFs,
    private readonly path: string,
    private readonly pid: number,
  ) {}

  private async readPid(path: string): Promise<number | null> {
    try {
      const text = (await this.fs.readFile(path)).toString('utf8').trim();
      const pid = Number(text);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch (error) {
      if (isFsError(error, 'ENOENT')) return null;
      throw error;
    }
  }

  /**
   * link(2) creates the lock with its content in one atomic step, so no process ever sees an empty lock.
   * A lock whose pid is dead is moved aside (rename is atomic, so of two processes taking over the same
   * stale lock only one moves it) and then checked again: if what was moved is not the stale lock we
   * judged, it belongs to a live process and is put back.
   */
  async acquire(logger: Logger, alive: (pid: number) => boolean): Promise<void> {
    const { fs, path } = this;
    const mine = `${path}.${this.pid}.tmp`;
    await writeFileAtomic(fs, mine, `${this.pid}\n`);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await fs.link(mine, path);
          return;
        } catch (error) {
          if (!isFsError(error, 'EEXIST')) throw error;
        }
        const holder = await this.readPid(path);
        if (holder === null) continue; // released between our link and read
        if (alive(holder)) throw lockedError(path, holder);
        const aside = `${path}.stale.${this.pid}`;
        try {
          await fs.rename(path, aside);
        } catch (error) {
          if (isFsError(error, 'ENOENT')) continue;
          throw error;
        }
        const moved = await this.readPid(aside);
        if (moved !== holder) {
          await fs.link(aside, path).catch(() => {});
          await unlinkIfExists(fs, aside);
          throw lockedError(path, moved);
        }
        await unlinkIfExists(fs, aside);
        logger.warn('took over a stale raft data dir lock', { lock: path, deadPid: holder });
      }
      throw lockedError(path, await this.readPid(path));
    } finally {
      await unlinkIfExists(fs, mine);
    }
  }

  async release(): Promise<void> {
    if ((await this.readPid(this.path)) === this.pid) await unlinkIfExists(this.fs, this.path);
  }
}

/**
 * Reads meta.json, or writes it for a new data dir (the moment this copy of the node's state is born,
 * so it gets a fresh incarnation). A format-1 record (no incarnation) gets one now: no peer can have
 * recorded one for it yet.
 */
async function loadIdentity(fs: RaftFs, dir: string, nodeId: string, newIncarnation: () => string): Promise<DataDirIdentity> {
  const path = join(dir, META_FILE);
  let text: string;
  try {
    text = (await fs.readFile(path)).toString('utf8');
  } catch (error) {
    if (!isFsError(error, 'ENOENT')) throw error;
    const names = await fs.readdir(dir);
    if (names.some((name) => name === LEGACY_SNAPSHOT_FILE || parseSegmentFileName(name) !== null)) {
      throw new BalancerError(
        'STORAGE_CORRUPT',
        `raft data dir ${dir} holds a log but no ${META_FILE}; refusing to guess which node it belongs to`,
      );
    }
    const identity: DataDirIdentity = { nodeId, incarnation: newIncarnation() };
    await writeFileAtomic(fs, path, JSON.stringify({ format: META_FORMAT, ...identity }) + '\n');
    // The dir itself may be new: make its entry in the parent durable too.
    await fsyncDir(fs, dirname(dir));
    return identity;
  }
  let recorded: { nodeId?: unknown; incarnation?: unknown } | null;
  try {
    recorded = JSON.parse(text) as { nodeId?: unknown; incarnation?: unknown };
  } catch {
    recorded = null;
  }
  if (typeof recorded?.nodeId !== 'string' || (recorded.incarnation !== undefined && typeof recorded.incarnation !== 'string')) {
    throw new BalancerError('STORAGE_CORRUPT', `${path} is not valid; it should hold {"nodeId": "...", "incarnation": "..."}`);
  }
  if (recorded.nodeId !== nodeId) {
    throw new BalancerError(
      'STORAGE_NODE_MISMATCH',
      `raft data dir ${dir} belongs to node "${recorded.nodeId}", not "${nodeId}"; point cluster.dataDir at this node's own directory`,
    );
  }
  if (typeof recorded.incarnation === 'string') return { nodeId, incarnation: recorded.incarnation };
  const identity: DataDirIdentity = { nodeId, incarnation: newIncarnation() };
  await writeFileAtomic(fs, path, JSON.stringify({ format: META_FORMAT, ...identity }) + '\n');
  return identity;
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

/** The snapshot.snap of a format-1 data dir. */
async function loadLegacySnapshot(fs: RaftFs, dir: string): Promise<Snapshot | null> {
  const path = join(dir, LEGACY_SNAPSHOT_FILE);
  let image: Buffer;
  try {
    image = await fs.readFile(path);
  } catch (error) {
    if (isFsError(error, 'ENOENT')) return null;
    throw error;
  }
  // The snapshot file was replaced atomically, so any damage in it is corruption, never a torn write.
  const scan = scanRecords(image);
  const record = scan.records[0];
  if (scan.records.length !== 1 || scan.torn !== null || scan.corrupt !== null || record === undefined || record.type !== RecordType.snapshot) {
    const where = scan.corrupt ?? scan.torn;
    throw corrupt(path, where === null ? 'unexpected content' : `${where.reason} at byte offset ${where.offset}`);
  }
  const snapshot = parsePayload(path, record);
  if (!isSnapshot(snapshot)) throw corrupt(path, 'the snapshot record has an unexpected shape');
  return snapshot;
}

interface RecoveredLog {
  readonly log: PersistedLog;
  readonly snapshot: Snapshot | null;
  readonly segmentSequence: number;
  readonly segment: RaftFile;
}

async function recover(fs: RaftFs, dir: string, logger: Logger): Promise<RecoveredLog> {
  const names = await fs.readdir(dir);
  for (const name of names) {
    // LOCK.<pid>.tmp files belong to other processes trying the lock right now; theirs to clean up.
    if (name.endsWith('.tmp') && !name.startsWith(`${LOCK_FILE}.`)) await unlinkIfExists(fs, join(dir, name));
  }
  const sequences = names
    .map(parseSegmentFileName)
    .filter((sequence): sequence is number => sequence !== null)
    .sort((a, b) => a - b);
  const newest = sequences.at(-1);
  const legacySnapshotPath = join(dir, LEGACY_SNAPSHOT_FILE);

  if (newest === undefined) {
    if (names.includes(LEGACY_SNAPSHOT_FILE)) throw corrupt(legacySnapshotPath, 'a snapshot exists but no WAL segment does');
    const log = new PersistedLog();
    const path = join(dir, segmentFileName(1));
    await writeFileAtomic(fs, path, encodeRecord(RecordType.checkpoint, checkpointOf(log, null)));
    return { log, snapshot: null, segmentSequence: 1, segment: await fs.openAppend(path) };
  }

  const path = join(dir, segmentFileName(newest));
  const replayed = await replaySegment(fs, path, logger);
  const { log } = replayed;
  let snapshot: Snapshot | null;
  if (replayed.format === CHECKPOINT_FORMAT) {
    snapshot = replayed.snapshot;
    // Left by a format-1 dir; the checkpoint was written after it with a newer snapshot.
    if (names.includes(LEGACY_SNAPSHOT_FILE)) await unlinkIfExists(fs, legacySnapshotPath);
  } else {
    snapshot = await loadLegacySnapshot(fs, dir);
    if (snapshot !== null) {
      const { index, term } = snapshot.metadata;
      if (index < log.snapshotIndex || (index === log.snapshotIndex && term !== log.snapshotTerm)) {
        throw corrupt(path, `the WAL builds on snapshot ${log.snapshotIndex}/${log.snapshotTerm} but ${LEGACY_SNAPSHOT_FILE} holds ${index}/${term}`);
      }
      // A crash after the snapshot was renamed but before the compacted segment was: finish the job's effect
      // (applySnapshot raises the commit index to the snapshot's, which the old segment's hard state may lack).
      log.applySnapshot(index, term);
    } else if (log.snapshotIndex !== 0) {
      throw corrupt(path, `the WAL builds on snapshot index ${log.snapshotIndex} but ${LEGACY_SNAPSHOT_FILE} is missing`);
    }
  }

  // Older segments are only left behind by a crash during compaction; the newest one supersedes them.
  const stale = sequences.filter((sequence) => sequence !== newest);
  for (const sequence of stale) await unlinkIfExists(fs, join(dir, segmentFileName(sequence)));
  if (stale.length > 0 || names.includes(LEGACY_SNAPSHOT_FILE)) await fsyncDir(fs, dir);

  return { log, snapshot, segmentSequence: newest, segment: await fs.openAppend(path) };
}

async function replaySegment(fs: RaftFs, path: string, logger: Logger): Promise<{ log: PersistedLog; format: number; snapshot: Snapshot | null }> {
  const image = await fs.readFile(path);
  const scan = scanRecords(image);
  if (scan.corrupt !== null) {
    const { reason, offset, nextValidOffset } = scan.corrupt;
    throw corrupt(
      path,
      nextValidOffset === null
        ? `${reason} at byte offset ${offset}: the record is complete, so this is damage to a written (possibly acknowledged) record, not a torn write`
        : `${reason} in the record at byte offset ${offset}, with intact records after it (from offset ${nextValidOffset})`,
    );
  }
  const [first, ...rest] = scan.records;
  if (first === undefined || first.type !== RecordType.checkpoint) {
    // Segments become visible only by rename after fsync, so the checkpoint can never be torn.
    throw corrupt(path, `the segment does not start with an intact checkpoint record${scan.torn === null ? '' : ` (${scan.torn.reason})`}`);
  }
  const checkpoint = parsePayload(path, first) as CheckpointPayload;
  const snapshot = checkpoint.snapshot ?? null;
  if (
    (checkpoint.format !== 1 && checkpoint.format !== CHECKPOINT_FORMAT) ||
    !Number.isInteger(checkpoint.snapshotIndex) ||
    !Number.isInteger(checkpoint.snapshotTerm) ||
    !isHardState(checkpoint.hardState) ||
    !isEntryList(checkpoint.entries) ||
    (snapshot !== null && !isSnapshot(snapshot))
  ) {
    throw corrupt(path, 'the checkpoint record has an unexpected shape or format version');
  }
  if (
    checkpoint.format === CHECKPOINT_FORMAT &&
    (snapshot === null
      ? checkpoint.snapshotIndex !== 0
      : snapshot.metadata.index !== checkpoint.snapshotIndex || snapshot.metadata.term !== checkpoint.snapshotTerm)
  ) {
    throw corrupt(path, `the checkpoint builds on snapshot ${checkpoint.snapshotIndex}/${checkpoint.snapshotTerm} but holds another`);
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
    await fs.truncate(path, scan.validEnd);
    await fs.fsync(path);
  }
  return { log, format: checkpoint.format, snapshot };
}
