// The storage crash simulator in npm test: real RaftNodes and DiskStorage on simulated disks, crashed at random file operations, across many seeds; and proof it catches durability bugs.

import { describe, expect, it } from 'vitest';
import { StorageSimulationFailure, runStorageSeed, type StorageBug, type StorageSimResult } from '../../src/raft/sim/storage-sim.js';

/** Seeds per half, run as two tests so the two workers can share them; `npm run sim -- --storage --seeds N` runs more. */
const SEEDS_PER_HALF = 150;

async function runSeeds(from: number, count: number): Promise<{ results: StorageSimResult[]; failures: string[] }> {
  const results: StorageSimResult[] = [];
  const failures: string[] = [];
  for (let seed = from; seed < from + count; seed++) {
    try {
      results.push(await runStorageSeed(seed));
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  }
  return { results, failures };
}

function summary(results: readonly StorageSimResult[]): Record<string, number> {
  const sum = (pick: (r: StorageSimResult) => number) => results.reduce((total, r) => total + pick(r), 0);
  return {
    seeds: results.length,
    crashesBeforeAnOperation: sum((r) => r.crashes.before),
    crashesAfterAnOperation: sum((r) => r.crashes.after),
    crashesBetweenOperations: sum((r) => r.crashes.between),
    restarts: sum((r) => r.restarts),
    snapshotsInstalled: sum((r) => r.snapshotsInstalled),
    committed: sum((r) => r.committed),
    acknowledged: sum((r) => r.acknowledged),
  };
}

describe('three RaftNodes on crashing disks', () => {
  for (const half of [0, 1]) {
    const from = 1 + half * SEEDS_PER_HALF;
    it(`seeds ${from}-${from + SEEDS_PER_HALF - 1}: every node restarts, no acknowledged write is lost, applied logs agree, histories are linearizable`, async () => {
      const { results, failures } = await runSeeds(from, SEEDS_PER_HALF);
      expect(failures, failures[0]).toEqual([]);
      const totals = summary(results);
      console.log(`[storage-sim] ${JSON.stringify(totals)}`);
      // The runs reach what they are for: crashes on both sides of file operations, restarts from them, snapshots, real traffic.
      expect(totals['crashesBeforeAnOperation']).toBeGreaterThan(SEEDS_PER_HALF);
      expect(totals['crashesAfterAnOperation']).toBeGreaterThan(SEEDS_PER_HALF);
      expect(totals['restarts']).toBeGreaterThan(SEEDS_PER_HALF * 5);
      expect(totals['snapshotsInstalled']).toBeGreaterThan(SEEDS_PER_HALF);
      expect(totals['acknowledged']).toBeGreaterThan(SEEDS_PER_HALF * 20);
      const kinds = new Set(results.flatMap((r) => Object.keys(r.crashedOperations)));
      for (const kind of ['write', 'datasync', 'sync', 'rename', 'fsync', 'unlink']) expect(kinds, `a crash at ${kind}`).toContain(kind);
    }, 300_000);
  }

  it('replays a seed exactly', async () => {
    const first = await runStorageSeed(7, { fullTrace: true });
    const second = await runStorageSeed(7, { fullTrace: true });
    expect(second.trace).toEqual(first.trace);
  });

  /** Runs seeds with a bug until one fails, and returns what the first failure said. */
  async function firstCatch(bug: StorageBug, maxSeeds: number): Promise<{ seed: number; message: string } | null> {
    for (let seed = 1; seed <= maxSeeds; seed++) {
      try {
        await runStorageSeed(seed, { bug });
      } catch (error) {
        if (!(error instanceof StorageSimulationFailure)) throw error;
        return { seed, message: error.message };
      }
    }
    return null;
  }

  it('catches a skipped fsync of the write-ahead log', async () => {
    const caught = await firstCatch('skip-wal-fsync', 20);
    expect(caught, 'no seed caught the bug').not.toBeNull();
    expect(caught!.message).toMatch(/lost-log|restarted at term|restarted voting|two leaders|applied .* elsewhere|acknowledged write .* missing|not linearizable/);
    expect(caught!.message).toContain('--bug skip-wal-fsync');
  });

  it('catches a hard state saved after the messages that depend on it were sent', async () => {
    const caught = await firstCatch('late-hard-state', 80);
    expect(caught, 'no seed caught the bug').not.toBeNull();
    expect(caught!.message).toMatch(/restarted at term|restarted voting|two leaders|granted its vote/);
  }, 300_000);
});
