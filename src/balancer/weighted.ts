// The `weighted` strategy: smooth weighted round-robin (nginx's algorithm) over effective weights.

import { isEligible } from './eligibility.js';
import type { Candidate, Strategy } from './strategy.js';

export class WeightedStrategy implements Strategy {
  readonly name = 'weighted' as const;
  private known: readonly Candidate[] | undefined;
  /** nginx's `current_weight`, parallel to `known`; Float64 because slow start makes weights fractional. */
  private current = new Float64Array(0);

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined {
    if (candidates !== this.known) this.rekey(candidates);
    const current = this.current;
    let total = 0;
    let bestIndex = -1;
    let bestCurrent = -Infinity;
    for (let index = 0; index < candidates.length; index++) {
      const candidate = candidates[index]!;
      if (!isEligible(candidate, excluded)) continue;
      const weight = candidate.effectiveWeight;
      const value = current[index]! + weight;
      current[index] = value;
      total += weight;
      // Strictly greater: ties go to the earlier candidate, which gives the a a b a c a a order for 5,1,1.
      if (value > bestCurrent) {
        bestCurrent = value;
        bestIndex = index;
      }
    }
    if (bestIndex === -1) return undefined;
    current[bestIndex] = current[bestIndex]! - total;
    return candidates[bestIndex];
  }

  /** Keeps each surviving backend's current weight across a change of the candidate set, so the rhythm is not reset. */
  private rekey(candidates: readonly Candidate[]): void {
    const next = new Float64Array(candidates.length);
    const previous = this.known;
    if (previous !== undefined) {
      const byId = new Map<string, number>();
      for (let index = 0; index < previous.length; index++) byId.set(previous[index]!.id, this.current[index]!);
      for (let index = 0; index < candidates.length; index++) next[index] = byId.get(candidates[index]!.id) ?? 0;
    }
    this.known = candidates;
    this.current = next;
  }
}
