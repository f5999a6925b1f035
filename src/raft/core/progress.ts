// The leader's view of each follower: match/next indexes, replication state and the in-flight window.

/**
 * A bounded window of MsgApp batches sent but not acknowledged, keyed by each batch's last index;
 * when full, the leader stops sending to that follower (flow control).
 */
class Inflights {
  private readonly lastIndexes: number[] = [];
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  add(lastIndex: number): void {
    this.lastIndexes.push(lastIndex);
  }

  /** An acknowledgement up to `index` frees every batch that ended at or before it. */
  freeLE(index: number): void {
    let drop = 0;
    while (drop < this.lastIndexes.length && this.lastIndexes[drop]! <= index) drop++;
    if (drop > 0) this.lastIndexes.splice(0, drop);
  }

  freeFirstOne(): void {
    this.lastIndexes.shift();
  }

  full(): boolean {
    return this.lastIndexes.length >= this.capacity;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
  }
}

/**
 * probe: one MsgApp at a time until we find where the logs match; replicate: stream optimistically
 * up to the inflight window; snapshot: wait for the snapshot to be installed.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round; also gates sending snapshots to dead peers. */
  recentActive = false;
  /** In probe state: a MsgApp is out and we wait for its answer (or a heartbeat reply) before the next. */
  probeSent = false;
  /** A MsgApp went to this member since its last heartbeat was due (see bcastHeartbeat). */
  appendedSinceBeat = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflight: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement of `index`; false when it is stale (we already knew this much). */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the MsgApp whose previous index was `rejected`; `matchHint` is the highest index
   * where the follower's log might match. False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Records that entries ending at `lastIndex` were sent (count = how many). */
  sentEntries(count: number, lastIndex: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
