// Per-client token buckets for the rate limits of routes and pools, bounded by an LRU of keys, kept across config versions.

import type { IncomingMessage } from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import type { Clock } from '../clock.js';
import type { RateLimitConfig } from '../config/schema.js';
import type { RateLimitVerdict } from './error-status.js';

interface Bucket {
  tokens: number;
  /** Clock time (ms) the tokens were counted at. */
  at: number;
}

/** A header value longer than this is cut: a client cannot make one key cost more memory than that. */
const MAX_KEY_LENGTH = 256;

/**
 * Buckets by key, at most `maxKeys` of them, the least recently seen forgotten first, in O(1) per request however many
 * new keys a flood brings: two generations of half the size each (hashlru's scheme). A full current generation
 * becomes the previous one and the previous one is dropped whole; a key found in the previous one moves back into the
 * current. (Evicting one key at a time from a Map's insertion order costs a scan over the deleted entries that V8
 * keeps at its front: about 90 µs per request once every request brings a new key.)
 */
class BucketTable {
  private current = new Map<string, Bucket>();
  private previous = new Map<string, Bucket>();
  private readonly generationSize: number;

  constructor(maxKeys: number) {
    this.generationSize = Math.max(1, Math.floor(maxKeys / 2));
  }

  get size(): number {
    return this.current.size + this.previous.size;
  }

  get(key: string): Bucket | undefined {
    const found = this.current.get(key);
    if (found !== undefined) return found;
    const older = this.previous.get(key);
    if (older !== undefined) {
      this.previous.delete(key);
      this.add(key, older);
    }
    return older;
  }

  add(key: string, bucket: Bucket): void {
    if (this.current.size >= this.generationSize) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(key, bucket);
  }
}

/** One route's or pool's limit in this process: a token bucket per client key. */
export class RateLimiter {
  private readonly buckets: BucketTable;

  constructor(
    /** `route "api"` or `pool "web"`: named in the 429's message. */
    readonly scope: string,
    readonly config: RateLimitConfig,
    private readonly clock: Clock,
    private readonly onLimited: (route: string) => void,
  ) {
    this.buckets = new BucketTable(config.maxKeys);
  }

  /** Clients with a bucket now (at most maxKeys). */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * The bucket key of a request: the header's value, or (by sourceIp, or without the header) its client address,
   * which `clientAddressOf` gives (behind trusted proxies: see clientAddress in headers.ts).
   */
  keyOf(req: IncomingMessage, clientAddressOf: (req: IncomingMessage) => string): string {
    const by = this.config.by;
    if (by.kind === 'header') {
      const value = req.headers[by.name];
      const text = Array.isArray(value) ? value.join(', ') : value;
      if (text !== undefined && text !== '') return `h ${text.length > MAX_KEY_LENGTH ? text.slice(0, MAX_KEY_LENGTH) : text}`;
    }
    return `a ${clientAddressOf(req)}`;
  }

  /**
   * Takes a token from the key's bucket: null when the request may go on, else the verdict its 429 tells.
   * `route` is the route label the refusal is counted under (balancer_rate_limited_total).
   */
  take(key: string, route: string): RateLimitVerdict | null {
    const now = this.clock.now();
    const { burst, requestsPerSecond: rate } = this.config;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: now };
      this.buckets.add(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * rate);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return null;
    }
    this.onLimited(route);
    return {
      limit: burst,
      remaining: 0,
      resetSeconds: Math.max(1, Math.ceil((burst - bucket.tokens) / rate)),
      retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate)),
      windowSeconds: Math.max(1, Math.ceil(burst / rate)),
    };
  }
}

/**
 * The limiters of one process, by scope. A config version that leaves a scope's limit as it was keeps its limiter,
 * buckets and all, so an edit elsewhere does not hand every client a full bucket again.
 */
export class RateLimiters {
  private readonly byScope = new Map<string, RateLimiter>();

  constructor(
    private readonly clock: Clock,
    private readonly onLimited: (route: string) => void,
  ) {}

  /** The limiter for `scope` under `config`; null when there is no limit. Call retain() once a table is built. */
  get(scope: string, config: RateLimitConfig | null): RateLimiter | null {
    if (config === null) return null;
    const existing = this.byScope.get(scope);
    if (existing !== undefined && isDeepStrictEqual(existing.config, config)) return existing;
    const limiter = new RateLimiter(scope, config, this.clock, this.onLimited);
    this.byScope.set(scope, limiter);
    return limiter;
  }

  /** Forgets the limiters of scopes the live table no longer has. */
  retain(live: Iterable<RateLimiter | null>): void {
    const keep = new Set<RateLimiter>();
    for (const limiter of live) if (limiter !== null) keep.add(limiter);
    for (const [scope, limiter] of this.byScope) if (!keep.has(limiter)) this.byScope.delete(scope);
  }
}

export function routeScope(label: string): string {
  return `route "${label}"`;
}

export function poolScope(name: string): string {
  return `pool "${name}"`;
}
