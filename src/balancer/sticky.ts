// Sticky-session cookies: each backend's opaque cookie value, finding the backend a cookie names, and the Set-Cookie line.

import { createHash } from 'node:crypto';
import type { StickyConfig } from '../config/schema.js';

/**
 * The cookie value naming a backend of a pool: a hash of the pool name and backend id, so it says nothing about the
 * backend's address, is the same on every node and worker (a client keeps its backend whichever node it reaches),
 * and a cookie meant for one pool means nothing to another.
 */
export function stickyValue(pool: string, backendId: string): string {
  return createHash('sha256').update(`${pool}\u0000${backendId}`).digest('base64url').slice(0, 16);
}

/** The sticky cookie values of one pool's backends, both ways. */
export class StickyTable {
  readonly config: StickyConfig;
  private readonly byValue = new Map<string, string>();
  private readonly byId = new Map<string, string>();
  private readonly attributes: string;

  constructor(config: StickyConfig, pool: string, backendIds: Iterable<string>) {
    this.config = config;
    for (const id of backendIds) {
      const value = stickyValue(pool, id);
      this.byValue.set(value, id);
      this.byId.set(id, value);
    }
    let attributes = '; Path=/';
    if (config.ttlMs !== null) attributes += `; Max-Age=${Math.floor(config.ttlMs / 1000)}`;
    if (config.secure) attributes += '; Secure';
    if (config.httpOnly) attributes += '; HttpOnly';
    if (config.sameSite !== null) attributes += `; SameSite=${config.sameSite}`;
    this.attributes = attributes;
  }

  /** The backend id a cookie value names, if it names one of this pool's backends. */
  backendFor(value: string): string | undefined {
    return this.byValue.get(value);
  }

  valueFor(backendId: string): string | undefined {
    return this.byId.get(backendId);
  }

  /** The Set-Cookie field value pointing the client at `backendId`; undefined when the client's cookie already does. */
  setCookieFor(backendId: string, sent: string | undefined): string | undefined {
    const value = this.byId.get(backendId);
    if (value === undefined || value === sent) return undefined;
    return `${this.config.cookie}=${value}${this.attributes}`;
  }
}
