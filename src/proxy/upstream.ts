// Per-backend connection pools (keep-alive agents) and the pre-parsed targets http-proxy forwards to.

import http from 'node:http';
import https from 'node:https';
import { DEFAULTS, type PoolConfig } from '../config/schema.js';

/** The shape http-proxy accepts as a pre-parsed target, so it never re-parses a URL per request. */
export interface ProxyTarget {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

export interface Upstream {
  readonly key: string;
  readonly target: ProxyTarget;
  readonly agent: http.Agent;
}

function targetOf(url: URL): ProxyTarget {
  const protocol = url.protocol === 'https:' ? 'https:' : 'http:';
  const port = url.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(url.port);
  // URL keeps brackets on IPv6 hostnames; sockets want the bare address.
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { protocol, hostname, host: hostname, port, path: '' };
}

function agentFor(url: URL, pool: PoolConfig, ca: string | null): http.Agent {
  const options = {
    keepAlive: true,
    maxSockets: DEFAULTS.upstream.maxSockets,
    maxFreeSockets: DEFAULTS.upstream.maxFreeSockets,
    // Closes pooled sockets idle longer than this, before a backend's own keep-alive timeout races us.
    timeout: DEFAULTS.upstream.freeSocketTimeoutMs,
    // LIFO keeps a few sockets hot and lets the rest idle out, instead of spreading load over all of them.
    scheduling: 'lifo' as const,
  };
  if (url.protocol !== 'https:') return new http.Agent(options);
  return new https.Agent({
    ...options,
    rejectUnauthorized: true,
    ...(ca === null ? {} : { ca }),
    ...(pool.tls.serverName === null ? {} : { servername: pool.tls.serverName }),
  });
}

/**
 * Agents are shared across config versions for the same origin and TLS settings, so a config swap keeps warm
 * connections; an agent no longer used by any pool has its idle sockets closed and its busy ones finish.
 */
export class UpstreamRegistry {
  private readonly byKey = new Map<string, Upstream>();

  /** Returns one upstream per backend id of the pool; `ca` is the pool's tls.ca PEM, read once per config by the caller. */
  forPool(pool: PoolConfig, ca: string | null): Map<string, Upstream> {
    const result = new Map<string, Upstream>();
    for (const backend of pool.backends) {
      const url = new URL(backend.url);
      const key = `${url.origin}|${pool.tls.ca ?? ''}|${pool.tls.serverName ?? ''}`;
      let upstream = this.byKey.get(key);
      if (upstream === undefined) {
        upstream = { key, target: targetOf(url), agent: agentFor(url, pool, ca) };
        this.byKey.set(key, upstream);
      }
      result.set(backend.id, upstream);
    }
    return result;
  }

  /** Retires every agent not in `live`. */
  retain(live: Iterable<ReadonlyMap<string, Upstream>>): void {
    const keep = new Set<string>();
    for (const map of live) for (const upstream of map.values()) keep.add(upstream.key);
    for (const [key, upstream] of this.byKey) {
      if (keep.has(key)) continue;
      this.byKey.delete(key);
      closeIdleSockets(upstream.agent);
    }
  }

  closeAll(): void {
    for (const upstream of this.byKey.values()) upstream.agent.destroy();
    this.byKey.clear();
  }
}

function closeIdleSockets(agent: http.Agent): void {
  for (const sockets of Object.values(agent.freeSockets)) {
    for (const socket of sockets ?? []) socket.destroy();
  }
  // Sockets still serving requests return to the free list afterwards and then idle out on the agent timeout.
}
