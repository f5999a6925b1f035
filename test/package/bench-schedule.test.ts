// The bench's schedule: every process of a target is measured as often as the others, and as often first as last.

import { describe, expect, it } from 'vitest';
import { instanceForRound, roundOrder } from '../../bench/lib/schedule.js';

describe('bench schedule', () => {
  it('reverses the targets every other round', () => {
    expect([1, 2, 3, 4].map((round) => roundOrder(['a', 'b', 'c'], round).join(''))).toEqual(['abc', 'cba', 'abc', 'cba']);
  });

  it('measures each of a target\'s processes equally often in each order (twice each in 4 x processes rounds)', () => {
    for (const processes of [1, 2, 3]) {
      const seen = new Map<string, number>();
      for (let round = 1; round <= 4 * processes; round++) {
        const key = `${instanceForRound(round, processes)} ${roundOrder(['a', 'b'], round)[0]}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      // Every (process, order) pair occurs, each exactly twice in 4 x processes rounds.
      expect(seen.size).toBe(2 * processes);
      expect([...seen.values()].every((count) => count === 2)).toBe(true);
    }
  });

  it('takes the processes in pairs of rounds: 1-2 the first, 3-4 the second, then round again', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((round) => instanceForRound(round, 2))).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
  });
});
