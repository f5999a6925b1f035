// The bench's same-round ratio pairs two targets' runs by round, so drift of the machine's speed across rounds cancels.

import { describe, expect, it } from 'vitest';
import { sameRoundRatio } from '../../bench/lib/stats.js';

const cpu = (run: { cpu: number }): number => run.cpu;

describe('sameRoundRatio', () => {
  it('is the median of the per-round ratios, not the ratio of the medians', () => {
    // The machine slows down over the run: every round, the first target uses half the CPU of the second.
    const first = [1, 2, 3, 4, 5].map((round) => ({ round, cpu: 10 * round }));
    const second = [1, 2, 3, 4, 5].map((round) => ({ round, cpu: 20 * round }));
    expect(sameRoundRatio(first, second, cpu)).toBe(0.5);
    // Runs whose rounds are in a different order still pair by round.
    expect(sameRoundRatio(first, [...second].reverse(), cpu)).toBe(0.5);
  });

  it('leaves out rounds where either run failed, and answers null when no round pairs', () => {
    const first = [
      { round: 1, cpu: 10 },
      { round: 2, cpu: 30, error: 'crashed' },
      { round: 3, cpu: 10 },
    ];
    const second = [
      { round: 1, cpu: 40 },
      { round: 2, cpu: 10 },
      { round: 3, cpu: 20 },
    ];
    expect(sameRoundRatio(first, second, cpu)).toBe((0.25 + 0.5) / 2);
    expect(sameRoundRatio(first, [{ round: 2, cpu: 10 }], cpu)).toBeNull();
  });
});
