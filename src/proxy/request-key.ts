// Reads what a pool's affinity needs off a client request: the hashOn value (header, cookie, query parameter or client address) and the sticky cookie.

import type { IncomingMessage } from 'node:http';
import type { PickRequest } from '../balancer/affinity.js';
import { hashString } from '../balancer/hash.js';
import type { HashOn, PoolConfig } from '../config/schema.js';
import { splitTarget } from './normalize-path.js';

/** The value of cookie `name` in a Cookie header (the first when repeated); undefined when absent. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const equals = pair.indexOf('=');
    if (equals === -1 || pair.slice(0, equals).trim() !== name) continue;
    let value = pair.slice(equals + 1).trim();
    // RFC 6265 allows a value in double quotes; the quotes are not part of it.
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
  }
  return undefined;
}

/** The request value `hashOn` names, or undefined when the request does not carry it (then any backend will do). */
export function hashOnValue(hashOn: HashOn, req: IncomingMessage, clientAddress: string): string | undefined {
  let value: string | undefined;
  if (hashOn === 'sourceIp') value = clientAddress;
  else if ('header' in hashOn) {
    const header = req.headers[hashOn.header];
    value = Array.isArray(header) ? header.join(', ') : header;
  } else if ('cookie' in hashOn) value = cookieValue(req.headers.cookie, hashOn.cookie);
  else {
    const { query } = splitTarget(req.url ?? '/');
    value = query === '' ? undefined : new URLSearchParams(query.slice(1)).get(hashOn.query) ?? undefined;
  }
  return value === undefined || value === '' ? undefined : value;
}

/**
 * What the request brings to the pool's pick; null when the pool uses neither hashing nor sticky cookies (the common
 * case costs nothing). Read from the request as the client sent it, before any route rewrite.
 */
export function pickRequestFor(pool: PoolConfig, req: IncomingMessage, clientAddress: string): PickRequest | null {
  if (pool.hashOn === null && pool.sticky === null) return null;
  const value = pool.hashOn === null ? undefined : hashOnValue(pool.hashOn, req, clientAddress);
  return {
    hashKey: value === undefined ? undefined : hashString(value),
    sticky: pool.sticky === null ? undefined : cookieValue(req.headers.cookie, pool.sticky.cookie),
  };
}
