// The `round-robin` strategy: strict rotation over eligible candidates, weights ignored.

import { isEligible } from './eligibility.js';
import type { Candidate, Strategy } from './strategy.js';

export class RoundRobinStrategy implements Strategy {
  readonly name = 'round-robin' as const;
  /** Index in `known` where the next scan starts: one past the last pick. */
  private cursor = 0;
  private known: readonly Candidate[] | undefined;
  private lastPickedId: string | undefined;

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined {
    const count = candidates.length;
    if (count === 0) return undefined;
    if (candidates !== this.known) this.relocate(candidates);
    // The cursor stays tied to positions, not to who was available: a backend that drops out is
    // simply skipped and, when it returns, gets its next turn in place, so nobody is picked twice
    // in a row while others wait.
    for (let step = 0; step < count; step++) {
      const index = (this.cursor + step) % count;
      const candidate = candidates[index]!;
      if (!isEligible(candidate, excluded)) continue;
      this.cursor = (index + 1) % count;
      this.lastPickedId = candidate.id;
      return candidate;
    }
    return undefined;
  }

  /** A new candidate array (config change): continue after the last backend picked, if it is still there. */
  private relocate(candidates: readonly Candidate[]): void {
    this.known = candidates;
    if (this.lastPickedId !== undefined) {
      const index = candidates.findIndex((candidate) => candidate.id === this.lastPickedId);
      if (index !== -1) {
        this.cursor = (index + 1) % candidates.length;
        return;
      }
    }
    this.cursor = this.cursor % candidates.length;
  }
}
