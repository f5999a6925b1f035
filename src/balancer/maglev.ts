// The `maglev` strategy: Google's Maglev hashing, a prime-sized lookup table filled from each backend's own permutation.

import type { Random } from '../clock.js';
import { DEFAULTS } from '../config/schema.js';
import { ConsistentHashStrategy, tableWeight, type HashTable } from './consistent-hash.js';
import { hashString, mix32 } from './hash.js';
import type { Candidate } from './strategy.js';

const OFFSET_SEED = 0x6d61676c; // 'magl'
const SKIP_SEED = 0x65762121; // 'ev!!'

/**
 * Every backend walks its own permutation of the table (offset + i * skip, mod a prime) and claims the next free
 * slot on its turn; a backend takes turns in proportion to its weight against the heaviest (Envoy's weighted
 * variant). The result: near-equal shares per unit of weight, and a backend leaving takes little more than its own
 * slots with it.
 */
export class MaglevStrategy extends ConsistentHashStrategy {
  readonly name = 'maglev' as const;
  private readonly size: number;

  constructor(random: Random, tableSize: number = DEFAULTS.maglevTableSize) {
    super(random);
    this.size = tableSize;
  }

  protected build(candidates: readonly Candidate[]): HashTable {
    const size = this.size;
    const count = candidates.length;
    const table = new Int32Array(size).fill(-1);
    if (count === 0) return new MaglevTable(table);
    const next = new Float64Array(count);
    const skip = new Float64Array(count);
    const credit = new Float64Array(count);
    const weights = candidates.map(tableWeight);
    const heaviest = Math.max(...weights);
    candidates.forEach((candidate, index) => {
      next[index] = hashString(candidate.id, OFFSET_SEED) % size;
      skip[index] = (hashString(candidate.id, SKIP_SEED) % (size - 1)) + 1;
    });
    let filled = 0;
    while (filled < size) {
      for (let index = 0; index < count && filled < size; index++) {
        const owed = credit[index]! + weights[index]!;
        if (owed < heaviest) {
          credit[index] = owed;
          continue;
        }
        credit[index] = owed - heaviest;
        let slot = next[index]!;
        while (table[slot] !== -1) slot = (slot + skip[index]!) % size;
        table[slot] = index;
        next[index] = (slot + skip[index]!) % size;
        filled++;
      }
    }
    return new MaglevTable(table);
  }
}

class MaglevTable implements HashTable {
  constructor(private readonly table: Int32Array) {}

  lookup(key: number, eligible: (index: number) => boolean): number {
    const table = this.table;
    const size = table.length;
    let slot = key % size;
    const owner = table[slot]!;
    if (owner !== -1 && eligible(owner)) return owner;
    // The owner may not take it: probe the table along a stride drawn from the key, so this key's next backend is
    // fixed (the same on every node) and the keys of one unavailable backend spread over all the others by share.
    // The size is prime, so the stride visits every slot before repeating.
    const stride = (mix32(key ^ SKIP_SEED) % (size - 1)) + 1;
    for (let step = 1; step < size; step++) {
      slot = (slot + stride) % size;
      const candidate = table[slot]!;
      if (candidate !== -1 && eligible(candidate)) return candidate;
    }
    return -1;
  }
}
