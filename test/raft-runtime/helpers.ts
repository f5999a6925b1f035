// Test doubles for the Raft runtime: a recording RaftMetrics and an inbox that resolves waits on events, not sleeps.

import type { RaftMetrics } from '../../src/metrics/types.js';

type RejectReason = Parameters<RaftMetrics['peerMessageRejected']>[0];

/** Calls `check` after every change until it returns true or the deadline passes. */
export class Watched {
  private readonly listeners = new Set<() => void>();

  protected changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  until(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const listener = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve();
      };
      this.listeners.add(listener);
    });
  }
}

export class RecordingMetrics extends Watched implements RaftMetrics {
  readonly rejected: RejectReason[] = [];
  readonly reachable = new Map<string, boolean>();

  setTerm(): void {}
  setCommitIndex(): void {}
  setAppliedIndex(): void {}
  setIsLeader(): void {}
  leaderChanged(): void {}
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
