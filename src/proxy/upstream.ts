// Per-backend connection pools (undici Pools for requests, targets for the WebSocket tunnel), shared across config versions.

import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { addWellKnownHeaderNames, buildConnector, Pool, requireUndici, type Connector, type ConnectorOptions } from './undici-parts.js';
import { Http2Sessions } from './http2-sessions.js';
import { FORWARDED_FIELDS } from './headers.js';
import { REQUEST_ID_FIELD } from './request-id.js';
import { DEFAULTS, type BackendConfig, type PoolConfig } from '../config/schema.js';
import type { UpstreamTlsMaterial } from '../balancer/upstream-tls.js';
import { discoveredServerName } from '../discovery/dns-discovery.js';
import { fixedLookup, parsedUrl } from '../net-address.js';
import { BACKEND_READS } from './backend-reads.js';

// The fields the proxy adds to every request it forwards: undici takes them without re-checking the names.
addWellKnownHeaderNames(requireUndici, [...FORWARDED_FIELDS, REQUEST_ID_FIELD]);

/** The shape http-proxy accepts as a pre-parsed target (WebSocket tunnels), so it never re-parses a URL per request. */
export interface ProxyTarget {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

export interface Upstream {
  readonly key: string;
  /** scheme://host:port of the backend, as undici wants it. */
  readonly origin: string;
  /** host[:port] of the backend as a Host header names it (the scheme's default port left out). */
  readonly authority: string;
  readonly target: ProxyTarget;
  /** Keep-alive connections to this backend, shared by every pool and config version that names the same origin and settings. */
  readonly dispatcher: UpstreamDispatcher;
  /** Connections the dispatcher holds open now, an HTTP/2 session counting as one (for /metrics). */
  openConnections(): number;
  /**
   * The name https backends are verified against (tls.serverName, else the URL's host), passed with every request:
   * undici otherwise derives SNI from the request's Host header, and reconnects whenever that changes.
   * Null for http backends.
   */
  readonly serverName: string | null;
  /**
   * Opens one connection to the backend (TCP, and TLS verified by the backend's own name) within the connect timeout,
   * for a WebSocket tunnel. It reads through Node's own buffers, not the shared read buffer (backend-reads.ts) the
   * pool's connections use. Through that buffer a tunnel of small messages cost about 10% more CPU per message
   * than the naive http-proxy script, and as much as it without (2026-12-02, three runs each).
   */
  readonly connectTunnel: Connector;
  /**
   * undici speaks only HTTP/1.1 to this backend (the pool's protocol is http1): every response head comes through
   * undici's HTTP/1.1 parser, which refuses the field names and values Node's writer would refuse.
   */
  readonly http1Only: boolean;
  /**
   * Most connections this process opens to the backend (connections.max); 0: no limit. With as many requests in
   * flight, the next one's wait is bounded by the connect timeout; over HTTP/2 it usually gets a stream on an open
   * session at once, which ends that wait as it starts.
   */
  readonly maxConnections: number;
  /** Requests this process has handed to the dispatcher and not yet seen end: above maxConnections they wait locally. */
  inflight: number;
}

function targetOf(url: Readonly<URL>): ProxyTarget {
  const protocol = url.protocol === 'https:' ? 'https:' : 'http:';
  const port = url.port === '' ? (protocol === 'https:' ? 443 : 80) : Number(url.port);
  // URL keeps brackets on IPv6 hostnames; sockets want the bare address.
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { protocol, hostname, host: hostname, port, path: '' };
}

/**
 * Connects to one backend: TCP (and TLS, verified) within the pool's connect timeout, to the addresses DNS discovery
 * resolved its name to when it has them. SNI and the certificate name are the backend's own (`sni`: see verifiedName),
 * never the client's Host; an IP literal gets no SNI (RFC 6066) and its certificate is checked against the IP.
 * `sharedReads`: plain HTTP/1.1 connections read through backend-reads.ts's shared buffer (the pool's, not a tunnel's).
 */
function connectorFor(target: ProxyTarget, pool: PoolConfig, tls: UpstreamTlsMaterial, addresses: readonly string[] | null, sni: string, sharedReads: boolean, http2: boolean): Connector {
  const connect = buildConnector({
    ...tlsOptions(tls),
    ...(addresses === null ? {} : { lookup: fixedLookup(addresses) }),
    timeout: pool.timeouts.connectMs,
    keepAlive: true,
    keepAliveInitialDelay: 60_000,
    // h2: ALPN offers h2 (and http/1.1, which a backend without HTTP/2 picks); h2c: HTTP/2 from the first byte.
    allowH2: http2,
    ...(http2 && pool.protocol === 'h2c' ? { useH2c: true } : {}),
    ...(sharedReads && target.protocol === 'http:' && !http2 ? { onread: BACKEND_READS } : {}),
  } as ConnectorOptions);
  if (target.protocol !== 'https:') return connect;
  return (options, callback) => connect({ ...options, servername: sni } as typeof options, callback);
}

/** Backends are always verified; the client certificate goes to whichever backend asks for one. */
function tlsOptions(tls: UpstreamTlsMaterial): ConnectionOptions {
  return {
    rejectUnauthorized: true,
    ...(tls.ca === null ? {} : { ca: tls.ca }),
    ...(tls.cert === null || tls.key === null ? {} : { cert: tls.cert, key: tls.key }),
  };
}

/**
 * The name an https backend is verified against: tls.serverName, else the DNS name an A/AAAA discovery found it by,
 * else its URL's host.
 */
function verifiedName(target: ProxyTarget, pool: PoolConfig, backend: BackendConfig): string {
  return namedServer(pool, backend) ?? target.hostname;
}

/** The SNI an https backend gets: its verified name; '' (none) for an IP literal. */
function sniFor(name: string): string {
  return isIP(name) === 0 ? name : '';
}


/** An undici Pool that speaks HTTP/1.1 to the backend, one request per connection at a time. */
function poolFor(url: Readonly<URL>, connect: Connector, pool: PoolConfig): Pool {
  return new Pool(url.origin, {
    connect,
    connections: pool.connections.max === 0 ? null : pool.connections.max,
    // Closes pooled connections idle longer than this, before a backend's own keep-alive timeout races us; a shorter
    // Keep-Alive: timeout= hint from the backend wins.
    keepAliveTimeout: DEFAULTS.upstream.freeSocketTimeoutMs,
    keepAliveMaxTimeout: DEFAULTS.upstream.freeSocketTimeoutMs,
    // Every request passes its own response (headers) and idle (body) timeouts from its pool's config.
  });
}

/** What the data plane asks of a backend's connections: take a request, and close when retired or at shutdown. */
export type UpstreamDispatcher = Pick<Pool, 'dispatch' | 'close' | 'destroy'>;

/**
 * An http1 pool's backend gets an undici Pool; an h2/h2c pool's gets HTTP/2 sessions that carry many requests each
 * (http2-sessions.ts), and an HTTP/1.1 Pool only if its TLS handshake picks http/1.1.
 */
function dispatcherFor(url: Readonly<URL>, target: ProxyTarget, pool: PoolConfig, connect: (http2: boolean) => Connector): UpstreamDispatcher {
  if (pool.protocol === 'http1') return poolFor(url, connect(false), pool);
  return new Http2Sessions(target, connect(true), {
    maxSessions: pool.connections.max,
    idleMs: DEFAULTS.upstream.freeSocketTimeoutMs,
    http1Pool: () => poolFor(url, connect(false), pool),
  });
}

/** Connections the dispatcher holds open now: HTTP/2 sessions, or the undici Pool's connections. */
function openConnections(dispatcher: UpstreamDispatcher): number {
  return dispatcher instanceof Http2Sessions ? dispatcher.openConnections : (dispatcher as Pool).stats.connected;
}

/** What a pool's upstreams were built from: the pool config, its TLS files' contents, and the upstreams by backend id. */
export interface BuiltUpstreams {
  readonly config: PoolConfig;
  readonly tls: UpstreamTlsMaterial;
  readonly upstreams: ReadonlyMap<string, Upstream>;
}

/** The pool-wide part of an upstream's key: settings of the connections that are not the backend's own. */
function poolSettingsKey(pool: PoolConfig, tls: UpstreamTlsMaterial): string {
  return `${pool.protocol}|${tls.digest}|${pool.timeouts.connectMs}|${pool.connections.max}`;
}

/** The name a backend is verified against when it is not its URL's host (which the URL itself gives); null otherwise. */
function namedServer(pool: PoolConfig, backend: BackendConfig): string | null {
  return pool.tls.serverName ?? discoveredServerName(pool, backend);
}

function sameAddresses(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((address, index) => address === b[index]);
}

/**
 * Pools are shared across config versions for the same origin and connection settings, so a config swap keeps warm
 * connections; a pool no longer used by any config closes once its in-flight requests are done.
 */
export class UpstreamRegistry {
  private readonly byKey = new Map<string, Upstream>();

  /**
   * Returns one upstream per backend id of the pool; `tls` is the pool's CA and client certificate, read once per config
   * by the caller. New file contents (a renewed client certificate) make new upstreams; the old ones drain.
   */
  forPool(pool: PoolConfig, tls: UpstreamTlsMaterial, previous?: BuiltUpstreams): Map<string, Upstream> {
    const result = new Map<string, Upstream>();
    const settings = poolSettingsKey(pool, tls);
    // A change to one backend of a large pool looks up the others' upstreams by what their keys are made of, without
    // building the keys: a backend whose URL, addresses and verified name are as before, in a pool whose connection
    // settings are as before, has the upstream it had.
    const before = previous !== undefined && poolSettingsKey(previous.config, previous.tls) === settings ? previous : undefined;
    for (const [index, backend] of pool.backends.entries()) {
      const was = before?.config.backends[index];
      if (was !== undefined && was.id === backend.id && was.url === backend.url && sameAddresses(was.addresses, backend.addresses) && namedServer(before!.config, was) === namedServer(pool, backend)) {
        const kept = before!.upstreams.get(backend.id);
        if (kept !== undefined) {
          result.set(backend.id, kept);
          continue;
        }
      }
      const url = parsedUrl(backend.url);
      const addresses = backend.addresses ?? null;
      const target = targetOf(url);
      const serverName = verifiedName(target, pool, backend);
      // A new address is a new pool of connections: requests on the old one finish there (retain closes it after).
      const key = `${url.origin}|${addresses?.join(',') ?? ''}|${serverName}|${settings}`;
      let upstream = this.byKey.get(key);
      if (upstream === undefined) {
        const sni = sniFor(serverName);
        const dispatcher = dispatcherFor(url, target, pool, (http2) => connectorFor(target, pool, tls, addresses, sni, true, http2));
        upstream = {
          key,
          origin: url.origin,
          authority: url.host,
          target,
          dispatcher,
          openConnections: () => openConnections(dispatcher),
          connectTunnel: connectorFor(target, pool, tls, addresses, sni, false, false),
          serverName: target.protocol === 'https:' ? serverName : null,
          http1Only: pool.protocol === 'http1',
          maxConnections: pool.connections.max,
          inflight: 0,
        };
        this.byKey.set(key, upstream);
      }
      result.set(backend.id, upstream);
    }
    return result;
  }

  /** Retires every pool not in `live`: requests already on it finish, then its connections close. */
  retain(live: Iterable<ReadonlyMap<string, Upstream>>): void {
    const keep = new Set<string>();
    for (const map of live) for (const upstream of map.values()) keep.add(upstream.key);
    for (const [key, upstream] of this.byKey) {
      if (keep.has(key)) continue;
      this.byKey.delete(key);
      upstream.dispatcher.close().catch(() => undefined);
    }
  }

  closeAll(): void {
    for (const upstream of this.byKey.values()) upstream.dispatcher.destroy().catch(() => undefined);
    this.byKey.clear();
  }
}
