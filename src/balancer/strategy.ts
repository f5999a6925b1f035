// The load-balancing strategy interface, the candidate shape strategies see, and the factory for all five.

import type { Random } from '../clock.js';
import type { StrategyName } from '../config/schema.js';
import { LeastRequestStrategy } from './least-request.js';
import { PeakEwmaStrategy } from './peak-ewma.js';
import { RandomStrategy } from './random.js';
import { RoundRobinStrategy } from './round-robin.js';
import { WeightedStrategy } from './weighted.js';

export type { StrategyName } from '../config/schema.js';

/** What a strategy may look at. Implemented by BackendRuntime; plain objects do in tests. */
export interface Candidate {
  readonly id: string;
  /** False while down, ejected or draining (the pool folds panic mode into this flag). */
  readonly available: boolean;
  /** Configured weight scaled by slow start; may be fractional, always > 0. */
  readonly effectiveWeight: number;
  readonly inflight: number;
  /** The backend's latency as measured so far (LatencyEwma); peak-ewma picks by it, the others ignore it. */
  readonly latency: LatencyView;
}

/** What a strategy may read of a backend's latency estimate. */
export interface LatencyView {
  /** Peak-EWMA latency in milliseconds (the configured initial value before any measurement). */
  estimateMs(): number;
  /** The estimate is too old to describe the backend: it should be measured again. */
  dueForProbe(): boolean;
}

export interface Strategy {
  readonly name: StrategyName;
  /**
   * Chooses one candidate that is available and not in `excluded`, or undefined when none is.
   * Strategies may keep per-candidate state between calls; they re-key it by id when a different
   * candidates array is passed, so callers should pass the same array while the set is unchanged.
   */
  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined;
}

export function createStrategy(name: StrategyName, random: Random): Strategy {
  switch (name) {
    case 'random':
      return new RandomStrategy(random);
    case 'round-robin':
      return new RoundRobinStrategy();
    case 'weighted':
      return new WeightedStrategy();
    case 'least-request':
      return new LeastRequestStrategy(random);
    case 'peak-ewma':
      return new PeakEwmaStrategy(random);
  }
}
