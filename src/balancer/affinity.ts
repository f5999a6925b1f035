// Request affinity at pick time: the backend a sticky cookie names while it may take the request, else the strategy with the request's hash key.

import { isEligible } from './eligibility.js';
import type { StickyTable } from './sticky.js';
import type { Candidate, Strategy } from './strategy.js';

/** What one request brings to a pick (request-key.ts reads it off the request). */
export interface PickRequest {
  /** The hash of the pool's hashOn value, absent when the pool hashes on nothing or the request lacks the value. */
  readonly hashKey?: number | undefined;
  /** The value of the pool's sticky cookie as the client sent it. */
  readonly sticky?: string | undefined;
}

export function pickWithAffinity<C extends Candidate>(
  strategy: Strategy,
  candidates: readonly C[],
  sticky: StickyTable | null,
  byId: ReadonlyMap<string, C>,
  excluded: ReadonlySet<string> | undefined,
  request: PickRequest | undefined,
): C | undefined {
  if (sticky !== null && request?.sticky !== undefined) {
    const id = sticky.backendFor(request.sticky);
    const backend = id === undefined ? undefined : byId.get(id);
    // Unavailable (down, ejected, draining, a backup while primaries serve) or already tried: the strategy picks anew.
    if (backend !== undefined && isEligible(backend, excluded)) return backend;
  }
  return strategy.pick(candidates, excluded, request?.hashKey) as C | undefined;
}
