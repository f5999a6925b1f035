// The one rule deciding whether a strategy may pick a candidate (kept apart so strategies and the factory don't import each other).

import type { Candidate } from './strategy.js';

export function isEligible(candidate: Candidate, excluded: ReadonlySet<string> | undefined): boolean {
  return candidate.available && (excluded === undefined || !excluded.has(candidate.id));
}
