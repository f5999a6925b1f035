// The `ring-hash` strategy: Ketama-style consistent hashing, each backend a set of points on a 32-bit ring, a key going to the next point.

import type { Random } from '../clock.js';
import { ConsistentHashStrategy, tableWeight, type HashTable } from './consistent-hash.js';
import { hashString } from './hash.js';
import type { Candidate } from './strategy.js';

/** Candidate indexes share a float64 with the 32-bit position while sorting; 2^20 leaves both exact (2^52 < 2^53). */
const INDEX_SPACE = 2 ** 20;

/**
 * Points per backend come from its own weight against the pool's highest, never from how many backends there are:
 * so when a backend leaves, the others keep every point they had and only the leaver's keys move (a ring normalised
 * to a fixed total would give every survivor new points, moving about as many keys again).
 */
export class RingHashStrategy extends ConsistentHashStrategy {
  readonly name = 'ring-hash' as const;
  private readonly pointsPerBackend: number;

  /** `pointsPerBackend`: points for a backend of the highest weight (the pool's ringSize). */
  constructor(random: Random, pointsPerBackend: number) {
    super(random);
    this.pointsPerBackend = pointsPerBackend;
  }

  protected build(candidates: readonly Candidate[]): HashTable {
    let heaviest = 0;
    for (const candidate of candidates) heaviest = Math.max(heaviest, tableWeight(candidate));
    const counts = candidates.map((candidate) => Math.max(1, Math.round((this.pointsPerBackend * tableWeight(candidate)) / heaviest)));
    const total = counts.reduce((sum, count) => sum + count, 0);
    const packed = new Float64Array(total);
    let at = 0;
    candidates.forEach((candidate, index) => {
      // The point's number seeds the hash: each point of a backend is an independent position.
      for (let point = 0; point < counts[index]!; point++) packed[at++] = hashString(candidate.id, point) * INDEX_SPACE + index;
    });
    // Ties (two points at one position) sort by candidate index: the same order on every node.
    packed.sort();
    const positions = new Uint32Array(total);
    const owners = new Uint32Array(total);
    for (let i = 0; i < total; i++) {
      const value = packed[i]!;
      const position = Math.floor(value / INDEX_SPACE);
      positions[i] = position;
      owners[i] = value - position * INDEX_SPACE;
    }
    return new Ring(positions, owners);
  }
}

class Ring implements HashTable {
  constructor(
    private readonly positions: Uint32Array,
    private readonly owners: Uint32Array,
  ) {}

  lookup(key: number, eligible: (index: number) => boolean): number {
    const positions = this.positions;
    const size = positions.length;
    if (size === 0) return -1;
    // The first point at or after the key, wrapping past the top of the ring.
    let low = 0;
    let high = size;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (positions[middle]! < key) low = middle + 1;
      else high = middle;
    }
    // Walk on clockwise past points of backends that may not take the request: each such key goes to the backend
    // owning the next usable point, the same one on every node.
    let at = low === size ? 0 : low;
    for (let step = 0; step < size; step++) {
      const owner = this.owners[at]!;
      if (eligible(owner)) return owner;
      at = at + 1 === size ? 0 : at + 1;
    }
    return -1;
  }
}
