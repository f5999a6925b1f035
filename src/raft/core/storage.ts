// The Storage interface the core reads its stable log through, and MemoryStorage, the complete in-memory log.

import type { ConfState, Entry, HardState, Snapshot } from './types.js';

export type StorageErrorKind = 'compacted' | 'unavailable' | 'snapshot-out-of-date' | 'snapshot-temporarily-unavailable';

/** Thrown by Storage methods; the core treats `compacted` as "send a snapshot instead". */
export class StorageError extends Error {
  readonly kind: StorageErrorKind;
  constructor(kind: StorageErrorKind, message: string) {
    super(message);
    this.name = 'StorageError';
    this.kind = kind;
  }
}

export function isStorageError(value: unknown, kind?: StorageErrorKind): value is StorageError {
  return value instanceof StorageError && (kind === undefined || value.kind === kind);
}

export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

/**
 * The stable (persisted) part of the log, as etcd's raft.Storage. Index `firstIndex() - 1` is the
 * snapshot's index; its term stays readable through term() so the consistency check works at the boundary.
 */
export interface Storage {
  initialState(): InitialState;
  /** Entries in [lo, hi), at least one if any exist, at most maxSize characters of data beyond the first. */
  entries(lo: number, hi: number, maxSize?: number): Entry[];
  term(index: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: null, commit: 0 });
export const EMPTY_CONF_STATE: ConfState = Object.freeze({ voters: [], learners: [] });

function entrySize(entry: Entry): number {
  return entry.data.length + 16;
}

/** Keeps entries while their cumulative size stays under maxSize; always keeps the first. */
export function limitSize(entries: Entry[], maxSize: number | undefined): Entry[] {
  if (maxSize === undefined || entries.length === 0) return entries;
  let size = entrySize(entries[0]!);
  let keep = 1;
  for (; keep < entries.length; keep++) {
    size += entrySize(entries[keep]!);
    if (size > maxSize) break;
  }
  return entries.slice(0, keep);
}

/**
 * The whole log in memory. `ents[0]` is a placeholder carrying the snapshot's index and term, so
 * term(snapshotIndex) answers without keeping the compacted entry.
 */
export class MemoryStorage implements Storage {
  private hard: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = { metadata: { index: 0, term: 0, confState: EMPTY_CONF_STATE }, data: '' };
  private ents: Entry[] = [{ term: 0, index: 0, type: 'empty', data: '' }];

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.metadata.confState };
  }

  hardState(): HardState {
    return this.hard;
  }

  setHardState(hardState: HardState): void {
    this.hard = hardState;
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxSize?: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new StorageError('compacted', `index ${lo} is compacted (first is ${offset + 1})`);
    if (hi > this.lastIndex() + 1) throw new StorageError('unavailable', `index ${hi - 1} is beyond the last index ${this.lastIndex()}`);
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSize);
  }

  term(index: number): number {
    const offset = this.offset();
    if (index < offset) throw new StorageError('compacted', `index ${index} is compacted`);
    const entry = this.ents[index - offset];
    if (entry === undefined) throw new StorageError('unavailable', `index ${index} is beyond the last index`);
    return entry.term;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /**
   * Sets the membership a log with no snapshot starts from (tests and hand-built logs); a cluster
   * bootstrapped through RaftConfig.voters records its membership in the log instead.
   */
  setConfState(confState: ConfState): void {
    this.snap = { ...this.snap, metadata: { ...this.snap.metadata, confState } };
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index <= this.snap.metadata.index) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${snapshot.metadata.index} is not newer than ${this.snap.metadata.index}`);
    }
    this.snap = snapshot;
    this.ents = [{ term: snapshot.metadata.term, index: snapshot.metadata.index, type: 'empty', data: '' }];
  }

  /** Records the state machine's snapshot at `index` (already applied); entries stay until compact(). */
  createSnapshot(index: number, confState: ConfState, data: string): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${index} is not newer than ${this.snap.metadata.index}`);
    }
    if (index > this.lastIndex()) throw new StorageError('unavailable', `snapshot index ${index} is beyond the last index`);
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    return this.snap;
  }

  /** Drops entries up to and including `index`; the caller must have snapshotted at least that far. */
  compact(index: number): void {
    const offset = this.offset();
    if (index <= offset) return;
    if (index > this.lastIndex()) throw new StorageError('unavailable', `compact ${index} is beyond the last index`);
    const kept = this.ents.slice(index - offset);
    const boundary = kept[0]!;
    kept[0] = { term: boundary.term, index: boundary.index, type: 'empty', data: '' };
    this.ents = kept;
  }

  /** Appends entries from a Ready, replacing any conflicting suffix; entries already compacted are skipped. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const lastNew = entries[entries.length - 1]!.index;
    if (lastNew < first) return;
    const usable = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const at = usable[0]!.index - this.offset();
    if (at > this.ents.length) {
      throw new StorageError('unavailable', `missing log entry before ${usable[0]!.index} (last is ${this.lastIndex()})`);
    }
    this.ents = this.ents.slice(0, at).concat(usable);
  }

  /** A deep-enough copy for the simulator's crash model: what was persisted survives, nothing else. */
  clone(): MemoryStorage {
    const copy = new MemoryStorage();
    copy.hard = this.hard;
    copy.snap = this.snap;
    copy.ents = this.ents.slice();
    return copy;
  }
}
