// What ring-hash and maglev share: picking by a request key's hash over a table built from the backends' ids and weights.

import type { Random } from '../clock.js';
import { isEligible } from './eligibility.js';
import { pickWeightedRandom } from './random.js';
import type { Candidate, Strategy, StrategyName } from './strategy.js';

/** The weight a table is built from: the configured one, so slow start ramping a backend up never reshuffles keys. */
export function tableWeight(candidate: Candidate): number {
  const weight = candidate.weight ?? candidate.effectiveWeight;
  return weight > 0 && Number.isFinite(weight) ? weight : 1;
}

/** A lookup structure over one candidate set: the index of the candidate owning `key`, walking on past ineligible ones. */
export interface HashTable {
  /** A candidate index, or -1 when no eligible candidate owns any slot. */
  lookup(key: number, eligible: (index: number) => boolean): number;
}

/**
 * The table is a function of the candidates' ids and configured weights only (never of health, load or time), so
 * every node and worker with the same config maps a key to the same backend, and an unavailable backend's keys
 * are handed on deterministically while every other key stays where it was.
 */
export abstract class ConsistentHashStrategy implements Strategy {
  abstract readonly name: StrategyName;
  private readonly random: Random;
  private known: readonly Candidate[] | undefined;
  private signature = '';
  private table: HashTable | undefined;

  constructor(random: Random) {
    this.random = random;
  }

  protected abstract build(candidates: readonly Candidate[]): HashTable;

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>, key?: number): Candidate | undefined {
    // No key to hash (the header, cookie or parameter is absent): any backend will do, in proportion to weight.
    if (key === undefined) return pickWeightedRandom(this.random, candidates, excluded);
    let any = false;
    for (const candidate of candidates) {
      if (isEligible(candidate, excluded)) {
        any = true;
        break;
      }
    }
    if (!any) return undefined;
    const table = this.tableFor(candidates);
    const index = table.lookup(key >>> 0, (i) => isEligible(candidates[i]!, excluded));
    return index === -1 ? undefined : candidates[index];
  }

  /** The table is checked against the candidates' ids and weights again at the next pick (rebuilt if they differ). */
  reweighted(): void {
    this.known = undefined;
  }

  /** Rebuilt only when ids or weights change: a new array with the same backends (a config swap elsewhere) keeps the table. */
  private tableFor(candidates: readonly Candidate[]): HashTable {
    if (candidates === this.known && this.table !== undefined) return this.table;
    let signature = '';
    for (const candidate of candidates) signature += `${candidate.id}\u0000${tableWeight(candidate)}\u0000`;
    if (this.table === undefined || signature !== this.signature) {
      this.table = this.build(candidates);
      this.signature = signature;
    }
    this.known = candidates;
    return this.table;
  }
}
