// The Raft log as the core sees it: stable entries in Storage plus the unstable tail not yet persisted.

import { isStorageError, limitSize, StorageError, type Storage } from './storage.js';
import type { Entry, Snapshot } from './types.js';

/** Entries and a snapshot the driver has not persisted yet; they move to Storage when advance() reports them. */
class Unstable {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return undefined;
    }
    return this.entries[index - this.offset]?.term;
  }

  stableTo(index: number, term: number): void {
    const found = this.maybeTerm(index);
    // A newer append may have replaced the entry the driver persisted; then nothing is stable yet.
    if (found === term && index >= this.offset) {
      this.entries = this.entries.slice(index + 1 - this.offset);
      this.offset = index + 1;
    }
  }

  stableSnapTo(index: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const after = entries[0]!.index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(entries);
    } else if (after <= this.offset) {
      this.offset = after;
      this.entries = entries.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(entries);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class LogInvariantError extends Error {
  override readonly name = 'LogInvariantError';
}

export class RaftLog {
  readonly storage: Storage;
  private readonly unstable: Unstable;
  committed: number;
  applied: number;

  constructor(storage: Storage, applied = 0) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = Math.max(first - 1, applied);
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** The term of the entry at index, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (index < dummy || index > this.lastIndex()) return undefined;
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (isStorageError(error, 'compacted') || isStorageError(error, 'unavailable')) return undefined;
      throw error;
    }
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Candidate's log (lastTerm, lastIndex) at least as up-to-date as ours: Raft §5.4.1. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Appends a leader's entries after (index, logTerm) if that entry matches; returns the last index the
   * message vouches for, or undefined on mismatch. Only a real conflict truncates, so a stale or
   * duplicated message that carries a prefix of what we hold changes nothing.
   */
  maybeAppend(index: number, logTerm: number, committed: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new LogInvariantError(`entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      }
      this.append(entries.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    if (after < this.committed) {
      throw new LogInvariantError(`append after ${after} would truncate committed ${this.committed}`);
    }
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /** The first index whose term differs from ours (or that we lack), 0 if all present and equal. */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with its term: where a log whose entry at
   * `index` has `term` can possibly agree with ours. One step skips a whole term (fast backtracking).
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    let at = Math.min(index, this.lastIndex());
    for (;;) {
      const found = this.term(at);
      if (found === undefined) return [at, 0];
      if (found <= term) return [at, found];
      at--;
    }
  }

  hasUnstableEntries(): boolean {
    return this.unstable.entries.length > 0;
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  unstableSnapshot(): Snapshot | undefined {
    return this.unstable.snapshot;
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Committed entries not yet applied, that are already stable or may be applied concurrently with persisting. */
  nextCommittedEntries(maxSize?: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 <= lo) return [];
    return this.slice(lo, this.committed + 1, maxSize);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    if (index > this.lastIndex()) {
      throw new LogInvariantError(`commit ${index} is beyond the last index ${this.lastIndex()}`);
    }
    this.committed = index;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    if (index > this.committed || index < this.applied) {
      throw new LogInvariantError(`applied ${index} outside [${this.applied}, ${this.committed}]`);
    }
    this.applied = index;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  /** Commits maxIndex only if it belongs to `term`: Raft §5.4.2, the Figure 8 rule. */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  /** Entries from `index` to the end; throws StorageError('compacted') when `index` was compacted. */
  entriesFrom(index: number, maxSize?: number): Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, maxSize);
  }

  allEntries(): Entry[] {
    return this.entriesFrom(this.firstIndex());
  }

  slice(lo: number, hi: number, maxSize?: number): Entry[] {
    if (lo < this.firstIndex()) {
      throw new StorageError('compacted', `index ${lo} is compacted (first is ${this.firstIndex()})`);
    }
    if (hi > this.lastIndex() + 1) throw new LogInvariantError(`slice [${lo}, ${hi}) beyond last ${this.lastIndex()}`);
    let result: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      result = this.storage.entries(lo, Math.min(hi, offset), maxSize);
      // Storage stopped early because of the size limit: do not add unstable entries after a gap.
      if (result.length < Math.min(hi, offset) - lo) return result;
    }
    if (hi > offset) {
      result = result.concat(this.unstable.slice(Math.max(lo, offset), hi));
    }
    return limitSize(result, maxSize);
  }
}
