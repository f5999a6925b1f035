// The `least-request` strategy: power of two choices on in-flight requests, scaled by effective weight.

import { randomInt, type Random } from '../clock.js';
import { countEligible, nthEligible } from './random.js';
import type { Candidate, Strategy } from './strategy.js';

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
    // Two distinct positions drawn uniformly: the second is drawn from the remaining n-1 and shifted past the first.
    const first = randomInt(this.random, eligible);
    let second = randomInt(this.random, eligible - 1);
    if (second >= first) second++;
    const a = nthEligible(candidates, excluded, first)!;
    const b = nthEligible(candidates, excluded, second)!;
    // On a tie the first draw wins; it is itself random, so ties are broken uniformly.
    return leastRequestScore(b) > leastRequestScore(a) ? b : a;
  }
}
