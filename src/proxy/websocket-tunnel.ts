// WebSocket and other Upgrade requests: the handshake through http-proxy, then a byte tunnel whose two sockets live and die together.
//
// http-proxy is unmaintained and has traps, each guarded here:
// - an unhandled `error` event kills the process: every call passes a callback, a catch-all listener logs,
//   and the streams it never guards (a refused upgrade's response, the client socket before it adopts it) get
//   their own error handlers;
// - its `XHeaders` pass duplicates what headers.ts does (trust-aware): removed, with a start-up check that the
//   passes are the ones this code was written against;
// - its web passes (among them `deleteLength`, which rewrites DELETE/OPTIONS framing: a CL.TE smuggling path)
//   are never run: ordinary requests do not go through http-proxy at all.

import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Logger } from '../log.js';
import { classifyUpstreamError, neverReachedBackend, noAvailableBackend, noBackendReachable, UpstreamTimeout, writeRawError, type FailureKind } from './error-status.js';
import type { ForwardBackend, PoolEntry, RequestOutcome } from './forward-types.js';
import type { PickRequest } from '../balancer/affinity.js';
import type { ProxyTarget } from './upstream.js';
import { destroyAfterLinger } from '../connection-close.js';
import { noteUpstream } from './access-log.js';

/** How long a tunnel may stay half-closed after one side finished (HAProxy's `timeout client-fin`). */
const TUNNEL_FIN_TIMEOUT_MS = 1_000;

/** An http-proxy server with the passes we do not want removed; throws on a version whose passes differ. */
export function createGuardedProxy(logger: Logger, options: httpProxy.ServerOptions): httpProxy {
  const proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, prependPath: false, ...options });
  const internals = proxy as unknown as { webPasses: Array<{ name: string }>; wsPasses: Array<{ name: string }> };
  const removed = new Set(['deleteLength', 'timeout', 'XHeaders']);
  internals.webPasses = internals.webPasses.filter((pass) => !removed.has(pass.name));
  internals.wsPasses = internals.wsPasses.filter((pass) => pass.name !== 'XHeaders');
  if (internals.webPasses.length !== 1 || internals.wsPasses.length !== 2) {
    // A different http-proxy version would silently bring the smuggling pass back: refuse to run.
    throw new Error('unexpected http-proxy internals: pin http-proxy to 1.18.x');
  }
  // Every call passes its own callback; this only catches what escapes one, so it can never crash us.
  proxy.on('error', (error: Error) => {
    logger.warn('http-proxy error outside a request', { err: error });
  });
  return proxy;
}

/**
 * Hands http-proxy the connection the tunnel opened itself: connect failures are then ours to retry before
 * http-proxy is involved (its error path ends the client socket after the callback, so a retry from there is lost).
 */
function connectedAgent(protocol: 'http:' | 'https:', socket: Duplex): http.Agent {
  const agent = protocol === 'https:' ? new https.Agent({ keepAlive: false }) : new http.Agent({ keepAlive: false });
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => socket;
  return agent;
}

export class WebSocketTunnel {
  private readonly proxy: httpProxy;

  constructor(logger: Logger) {
    this.proxy = createGuardedProxy(logger, {});
  }

  /**
   * Proxies an upgrade whose headers are already prepared; a connection that cannot be opened is retried on another
   * backend like any bodiless request.
   */
  open(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry, affinity: PickRequest | null = null): void {
    // Until http-proxy adopts the socket it has no error listener: a client reset here must not crash us.
    socket.on('error', () => socket.destroy());
    this.attempt(req, socket, head, entry, new Set(), null, affinity);
  }

  /** `lastFailure`: the failed connection being retried (only those are, so no earlier attempt reached a backend). */
  private attempt(req: IncomingMessage, socket: Duplex, head: Buffer, entry: PoolEntry, excluded: Set<string>, lastFailure: FailureKind | null, affinity: PickRequest | null): void {
    if (socket.destroyed) return;
    const pool = entry.pool;
    // Hash keys and sticky cookies choose the backend as for any request (the 101 answer sets no cookie).
    const backend = pool.pick(excluded, affinity ?? undefined);
    const upstream = backend === undefined ? undefined : entry.upstreams.get(backend.id);
    if (backend === undefined || upstream === undefined) {
      noteUpstream(req, { pool: pool.name, backend: null, attempts: excluded.size, upstreamMs: null, code: null });
      writeRawError(socket, lastFailure === null ? noAvailableBackend(pool.name, pool.retryAfterSeconds()) : noBackendReachable(pool.name, pool.retryAfterSeconds(), lastFailure));
      return;
    }
    if (lastFailure !== null) entry.metrics.retry();
    backend.requestStarted();
    const startedAt = performance.now();
    /** What the access line tells of this attempt: `status` when the client got the backend's answer to the upgrade. */
    const facts = (status: number | undefined, code: string | null): void =>
      noteUpstream(req, { pool: pool.name, backend: backend.id, attempts: excluded.size + 1, upstreamMs: performance.now() - startedAt, code, ...(status === undefined ? {} : { status }) });
    const target = upstream.target;
    upstream.connectTunnel({ hostname: target.hostname, host: `${target.hostname}:${target.port}`, protocol: target.protocol, port: String(target.port) }, (error, connection) => {
      if (error !== null) {
        const kind = classifyUpstreamError(error, false);
        backend.requestFinished('gateway-failure');
        backend.metrics.upstreamError(kind.reason);
        if (neverReachedBackend(kind) && excluded.size < pool.config.retries && !socket.destroyed) {
          excluded.add(backend.id);
          this.attempt(req, socket, head, entry, excluded, kind, affinity);
          return;
        }
        const reply = neverReachedBackend(kind) ? noBackendReachable(pool.name, pool.retryAfterSeconds(), kind) : kind;
        facts(undefined, reply.code);
        writeRawError(socket, reply);
        return;
      }
      if (socket.destroyed) {
        connection.destroy();
        backend.requestFinished('aborted');
        return;
      }
      // A sticky pool points the client at this backend in the answer, as for any request.
      const cookie = pool.sticky?.setCookieFor(backend.id, affinity?.sticky);
      this.handshake(req, socket, head, entry, backend, upstream.target, connection, facts, cookie);
    });
  }

  /** The upgrade request and the backend's answer, through http-proxy, on a connection already open. */
  private handshake(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    entry: PoolEntry,
    backend: ForwardBackend,
    target: ProxyTarget,
    connection: Duplex,
    facts: (status: number | undefined, code: string | null) => void,
    setCookie: string | undefined,
  ): void {
    let settled = false;
    let upgraded = false;
    const timeouts = entry.pool.config.timeouts;
    const finish = (outcome: RequestOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // A tunnel's length says nothing about the backend's speed: no latency sample.
      backend.requestFinished(outcome);
    };
    const timer = setTimeout(() => connection.destroy(new UpstreamTimeout('response', timeouts.responseMs)), timeouts.responseMs);
    const onProxyReq = (created: ClientRequest, incoming: IncomingMessage): void => {
      if (incoming !== req) return;
      this.proxy.off('proxyReqWs', onProxyReq);
      // http-proxy joins the path with the target's and collapses '//'; the backend gets the target exactly as the
      // client sent it (checkTarget reduced it to origin-form). Node reads this when it writes the head, at end().
      created.path = req.url ?? '/';
      // These listeners run before http-proxy's own (it adds them after emitting proxyReqWs), so a header added
      // here is in the answer it writes to the client.
      const addCookie = (answer: IncomingMessage): void => {
        if (setCookie !== undefined) answer.headers['set-cookie'] = [...(answer.headers['set-cookie'] ?? []), setCookie];
      };
      created.once('response', (response: IncomingMessage) => {
        addCookie(response);
        // The backend refused the upgrade; http-proxy relays its answer but never guards the stream,
        // and its end only half-closes the client socket.
        response.on('error', () => socket.destroy());
        socket.once('finish', () => destroyAfterLinger(socket));
        facts(response.statusCode, null);
        finish(response.statusCode !== undefined && response.statusCode >= 500 ? 'http-5xx' : 'success');
      });
      created.once('upgrade', (answer: IncomingMessage, upstreamSocket: Socket) => {
        addCookie(answer);
        upgraded = true;
        finish('success');
        facts(101, null);
        tieTunnel(socket, upstreamSocket, timeouts.tunnelMs);
      });
    };
    this.proxy.on('proxyReqWs', onProxyReq);
    this.proxy.ws(req, socket, head, { target, agent: connectedAgent(target.protocol, connection) } as httpProxy.ServerOptions, (error: Error) => {
      this.proxy.off('proxyReqWs', onProxyReq);
      connection.destroy();
      if (upgraded) {
        socket.destroy();
        return;
      }
      const kind = classifyUpstreamError(error, true);
      finish('gateway-failure');
      backend.metrics.upstreamError(kind.reason);
      facts(undefined, kind.code);
      writeRawError(socket, kind);
    });
  }
}

/**
 * Both sockets of a tunnel live and die together. Node's HTTP sockets allow half-open connections, so without
 * this a side that finishes would leave the other open until its idle timeout. A tunnel with no byte either way for
 * `idleMs` is closed (HAProxy's `timeout tunnel`).
 */
function tieTunnel(client: Duplex, upstream: Socket, idleMs: number): void {
  let finTimer: NodeJS.Timeout | null = null;
  const destroyBoth = (): void => {
    if (finTimer !== null) clearTimeout(finTimer);
    clearInterval(idleCheck);
    client.destroy();
    upstream.destroy();
  };
  const idleCheck = watchIdle(upstream, idleMs, destroyBoth);
  const onEnd = (): void => {
    finTimer ??= setTimeout(destroyBoth, TUNNEL_FIN_TIMEOUT_MS).unref();
  };
  client.once('end', onEnd);
  upstream.once('end', onEnd);
  client.once('close', destroyBoth);
  upstream.once('close', destroyBoth);
}

/**
 * Calls `cut` once the backend's socket has moved no byte either way for `idleMs`, checked every half of it (so within
 * 1.5x `idleMs`) from the socket's byte counts. A socket timeout (setTimeout) would re-arm its timer on every read and
 * write of every message, and http-proxy sets it to 0 on both sockets as it pipes them.
 */
function watchIdle(upstream: Socket, idleMs: number, cut: () => void): NodeJS.Timeout {
  const periodMs = Math.max(1, Math.ceil(idleMs / 2));
  let bytesSeen = upstream.bytesRead + upstream.bytesWritten;
  let quietMs = 0;
  return setInterval(() => {
    const bytes = upstream.bytesRead + upstream.bytesWritten;
    if (bytes !== bytesSeen) {
      bytesSeen = bytes;
      quietMs = 0;
    } else if ((quietMs += periodMs) >= idleMs) cut();
  }, periodMs).unref();
}
