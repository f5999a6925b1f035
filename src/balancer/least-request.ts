// The `least-request` strategy: power of two choices on in-flight requests, scaled by effective weight.

import type { Random } from '../clock.js';
import { countEligible, nthEligible } from './random.js';
import type { Candidate, Strategy } from './strategy.js';
import { drawTwo } from './two-choices.js';

/**
 * Envoy's least-request score with active_request_bias = 1: weight / (inflight + 1). Higher is better.
 * With equal weights this orders by fewest in-flight requests, i.e. classic P2C.
 */
export function leastRequestScore(candidate: Candidate): number {
  return candidate.effectiveWeight / (candidate.inflight + 1);
}

export class LeastRequestStrategy implements Strategy {
  readonly name = 'least-request' as const;
  private readonly random: Random;

  constructor(random: Random) {
    this.random = random;
  }

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined {
    const eligible = countEligible(candidates, excluded);
    if (eligible === 0) return undefined;
    if (eligible === 1) return nthEligible(candidates, excluded, 0);
    const [a, b] = drawTwo(this.random, candidates, excluded, eligible);
    return leastRequestScore(b) > leastRequestScore(a) ? b : a;
  }
}
