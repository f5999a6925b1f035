// The load-balancing strategy interface, the candidate shape strategies see, and the factory for all of them.

import type { Random } from '../clock.js';
import { DEFAULTS, type StrategyName } from '../config/schema.js';
import { LeastRequestStrategy } from './least-request.js';
import { MaglevStrategy } from './maglev.js';
import { RingHashStrategy } from './ring-hash.js';
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
  /** The configured weight, which hash tables are built from (effectiveWeight when absent, as in tests). */
  readonly weight?: number;
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
   * `key` is the request's hash key (hashKey in request-key.ts) when the pool hashes on something and the
   * request has it; ring-hash and maglev pick by it, the others ignore it.
   */
  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>, key?: number): Candidate | undefined;
  /**
   * The configured weights of the candidates changed in place (same array, same backends): what the strategy built
   * from them (hash tables) is built again at the next pick. Strategies that read weights at each pick have none.
   */
  reweighted?(): void;
}

export interface StrategyOptions {
  /** ring-hash: points per backend of the highest weight (the pool's ringSize). */
  readonly ringSize?: number;
}

export function createStrategy(name: StrategyName, random: Random, options: StrategyOptions = {}): Strategy {
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
    case 'ring-hash':
      return new RingHashStrategy(random, options.ringSize ?? DEFAULTS.ringSize);
    case 'maglev':
      return new MaglevStrategy(random);
  }
}
