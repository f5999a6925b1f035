// The `peak-ewma` strategy: power of two choices by peak-EWMA latency x (in-flight + 1), scaled by effective weight.

import type { Random } from '../clock.js';
import { countEligible, nthEligible } from './random.js';
import type { Candidate, Strategy } from './strategy.js';
import { drawTwo } from './two-choices.js';

/**
 * Finagle's and Linkerd's load estimate, divided by the effective weight (so weights and the slow-start ramp
 * act as in least-request): the latency a new request can expect, times the queue it would join. Lower is better.
 */
export function peakEwmaCost(candidate: Candidate): number {
  return (candidate.latency.estimateMs() * (candidate.inflight + 1)) / candidate.effectiveWeight;
}

/** Whether the candidate gets this request as a probe: its estimate is stale and nothing of ours is in flight to it. */
function probing(candidate: Candidate): boolean {
  return candidate.inflight === 0 && candidate.latency.dueForProbe();
}

export class PeakEwmaStrategy implements Strategy {
  readonly name = 'peak-ewma' as const;
  private readonly random: Random;

  constructor(random: Random) {
    this.random = random;
  }

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined {
    const eligible = countEligible(candidates, excluded);
    if (eligible === 0) return undefined;
    if (eligible === 1) return nthEligible(candidates, excluded, 0);
    const [a, b] = drawTwo(this.random, candidates, excluded, eligible);
    // A backend that lost all its traffic by being slow or failing is measured again once its estimate is
    // `decay` old: that single request is how a recovered backend gets its traffic back.
    const probeA = probing(a);
    if (probeA !== probing(b)) return probeA ? a : b;
    // Ties go to the first draw, which is itself random.
    return peakEwmaCost(b) < peakEwmaCost(a) ? b : a;
  }
}
