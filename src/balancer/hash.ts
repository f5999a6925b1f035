// The 32-bit string hash behind consistent hashing: request keys and ring points alike, the same on every node and worker.

/*
 * Murmur3's multiply-rotate mixing over UTF-16 code units, two to a 32-bit block, then its finaliser. Not
 * cryptographic: the inputs are request values and backend ids, and what matters is that nearby strings ("user-1",
 * "user-2") land far apart on the ring and that every process computes the same value (no per-process seed).
 */
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixBlock(hash: number, block: number): number {
  let k = Math.imul(block, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  let h = hash ^ k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Murmur3's finaliser: every input bit affects every output bit. Also spreads small integers over 32 bits. */
export function mix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** An unsigned 32-bit hash of `text`; `seed` gives an independent hash of the same text. */
export function hashString(text: string, seed = 0): number {
  let h = seed | 0;
  const length = text.length;
  let index = 0;
  for (; index + 1 < length; index += 2) h = mixBlock(h, text.charCodeAt(index) | (text.charCodeAt(index + 1) << 16));
  if (index < length) h = mixBlock(h, text.charCodeAt(index));
  return mix32(h ^ length);
}
