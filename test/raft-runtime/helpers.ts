// Test doubles for the Raft runtime: a recording RaftMetrics and an inbox that resolves waits on events, not sleeps.

import type { RaftMetrics } from '../../src/metrics/types.js';
import type { RaftApplier } from '../../src/raft/runtime/node.js';
import { Watched } from '../helpers/wait.js';

type RejectReason = Parameters<RaftMetrics['peerMessageRejected']>[0];

export class RecordingMetrics extends Watched implements RaftMetrics {
  readonly rejected: RejectReason[] = [];
  readonly reachable = new Map<string, boolean>();

  setTerm(): void {}
  setCommitIndex(): void {}
  setAppliedIndex(): void {}
  setIsLeader(): void {}
  leaderChanged(): void {}
  elections = 0;
  electionsStarted(count: number): void {
    this.elections += count;
    this.changed();
  }
  ticks = 0;
  ticked(): void {
    this.ticks++;
    this.changed();
  }
  proposal(): void {}
  setPeerReachable(peer: string, reachable: boolean): void {
    this.reachable.set(peer, reachable);
    this.changed();
  }
  forgetPeer(peer: string): void {
    this.reachable.delete(peer);
    this.changed();
  }
  failed = false;
  setFailed(failed: boolean): void {
    this.failed = failed;
    this.changed();
  }
  peerMessageRejected(reason: RejectReason): void {
    this.rejected.push(reason);
    this.changed();
  }
  count(reason: RejectReason): number {
    return this.rejected.filter((r) => r === reason).length;
  }
}

export class Inbox<T> extends Watched {
  readonly items: T[] = [];

  readonly push = (item: T): void => {
    this.items.push(item);
    this.changed();
  };
}

/** An applier that keeps nothing, for tests of the Raft node itself (elections, fail-stop, dropped proposals). */
export const IGNORING_APPLIER: RaftApplier = {
  restoreSnapshot() {},
  applyEntry() {},
  applyConfChange() {},
  snapshotData: () => '{}',
  memberAddress: () => null,
};
