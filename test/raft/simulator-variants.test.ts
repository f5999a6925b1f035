// Randomized simulator runs over other cluster shapes and fault mixes than the default.

import { describe, it } from 'vitest';
import { runSeed, type SimOptions } from '../../src/raft/sim/simulator.js';

function runSeeds(from: number, count: number, options: SimOptions): void {
  for (let seed = from; seed < from + count; seed++) runSeed(seed, options);
}

describe('simulated cluster variants', () => {
  it('3 nodes, frequent faults', () => {
    runSeeds(5000, 80, { nodes: 3, faultRate: 0.08 });
  });

  it('7 nodes', () => {
    runSeeds(7000, 20, { nodes: 7 });
  });

  it('a lossy, slow network: 20% drops, 10% duplicates, delays up to 8 ticks', () => {
    runSeeds(9000, 40, { dropRate: 0.2, duplicateRate: 0.1, maxDelay: 8, healTicks: 400 });
  });

  it('pre-vote and check-quorum off (plain Raft) is still safe', () => {
    runSeeds(11000, 30, { node: { preVote: false, checkQuorum: false } });
  });

  it('tight flow control: one entry per message, one message in flight', () => {
    runSeeds(13000, 30, { node: { maxEntriesPerMsg: 1, maxInflightMsgs: 1 } });
  });
});
