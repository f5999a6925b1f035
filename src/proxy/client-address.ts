// The client's address as balancer judges it: the peer, or (behind trusted proxies) the nearest untrusted X-Forwarded-For hop.

import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

/** `::ffff:10.0.0.1` and `10.0.0.1` are one client. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The address of whoever sent the request. A peer that is a trusted proxy speaks for the client: its X-Forwarded-For
 * is read from the right, skipping trusted proxies, and the first address that is not one is the client (entries
 * further left were written by the client itself and could be forged). An entry that is not an address ends the walk
 * at the last hop that could be trusted.
 */
export function clientAddress(req: IncomingMessage, trusts: (address: string) => boolean): string {
  let client = plainAddress(req.socket.remoteAddress ?? '');
  if (client === '' || !trusts(client)) return client;
  const header = req.headers['x-forwarded-for'];
  if (header === undefined) return client;
  const hops = (Array.isArray(header) ? header.join(',') : header).split(',');
  for (let index = hops.length - 1; index >= 0; index--) {
    const hop = plainAddress(hops[index]!.trim());
    if (isIP(hop) === 0) return client;
    client = hop;
    if (!trusts(hop)) return hop;
  }
  return client;
}
