// Bearer-token checking for the admin API: parsing the header and comparing in constant time.

import { hash, timingSafeEqual } from 'node:crypto';

export type AuthOutcome = 'ok' | 'missing' | 'wrong' | 'disabled';

/** How operators set a token; quoted in the log at start and in every refusal while none is set. */
export const TOKEN_HOWTO =
  'set admin.token or admin.tokenFile in balancer.yaml (taken when the file is saved), or the BALANCER_ADMIN_TOKEN environment variable and restart';

function digest(value: string): Buffer {
  // One-shot: no Hash object per admin request.
  return hash('sha256', value, 'buffer');
}

/**
 * Compares SHA-256 digests rather than the raw strings: timingSafeEqual needs equal lengths, and
 * comparing fixed-size digests keeps the token's length from leaking through an early length check.
 */
export function createTokenChecker(token: string | null): (authorization: string | undefined) => AuthOutcome {
  const expected = token === null ? null : digest(token);
  return (authorization) => {
    if (expected === null) return 'disabled';
    const presented = parseBearer(authorization);
    if (presented === null) return 'missing';
    return timingSafeEqual(digest(presented), expected) ? 'ok' : 'wrong';
  };
}

/** The token of an `Authorization: Bearer T` header, or null when there is none (scheme is case-insensitive). */
function parseBearer(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const match = /^\s*Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match === null ? null : match[1]!;
}
