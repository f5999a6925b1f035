// One active health probe: an HTTP(S) GET, a gRPC health check over HTTP/2, or a TCP connect to a backend, bounded by a timeout.

import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Clock } from '../clock.js';
import type { HealthCheckResult } from '../metrics/types.js';
import type { UpstreamTlsMaterial } from '../balancer/upstream-tls.js';
import { errorMessage } from '../errors.js';
import { GRPC_HEALTH_CHECK_PATH, SERVING, healthCheckRequest, servingStatusName, servingStatusOf } from './grpc-health.js';
import { fixedLookup } from '../net-address.js';
import { CheckConnection, KeptConnection, MAX_BODY_BYTES, USER_AGENT, checkRequest } from './http-check.js';
import type { LookupFunction } from 'node:net';

export interface ProbeTarget {
  readonly url: URL;
  /** HTTP GET path; null for a TCP connect or gRPC check. */
  readonly path: string | null;
  /** The service a gRPC health check asks about ('' the whole server); null when the check is not gRPC. */
  readonly grpcService: string | null;
  /** Host header (:authority for gRPC); null sends the backend's host:port. */
  readonly host: string | null;
  readonly timeoutMs: number;
  readonly expectedStatuses: readonly (readonly [number, number])[];
  /** For https backends: the CAs to verify against (null: Node's default store) and the client certificate, if any. */
  readonly tls: UpstreamTlsMaterial;
  /** SNI and certificate name for https backends; null uses the URL's host name. */
  readonly serverName: string | null;
  /** The addresses to connect to instead of resolving the URL's host (DNS discovery's answer); absent or null: resolve it. */
  readonly addresses?: readonly string[] | null;
  /** The connection an HTTP check keeps for the next one (healthCheck.reuseConnection); absent or null: a fresh connection per check. */
  readonly keptConnection?: KeptConnection | null;
}

export interface ProbeResult {
  readonly result: HealthCheckResult;
  /** Human-readable cause, used in state-change log lines (e.g. "HTTP 500", "connect ECONNREFUSED"). */
  readonly detail: string;
}

export type Probe = (target: ProbeTarget) => Promise<ProbeResult>;

/** TCP keep-alive probes on a kept check connection start after this much silence; the checks themselves come far more often. */
const KEPT_CONNECTION_TCP_KEEPALIVE_MS = 60_000;

export function createProbe(clock: Clock): Probe {
  return (target) => {
    if (target.grpcService !== null) return grpcProbe(target, target.grpcService, clock);
    return target.path === null ? tcpProbe(target, clock) : httpProbe(target, target.path, clock);
  };
}

export function statusExpected(status: number, ranges: readonly (readonly [number, number])[]): boolean {
  for (const [low, high] of ranges) if (status >= low && status <= high) return true;
  return false;
}

function describeError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const syscall = (error as { syscall?: unknown }).syscall;
  if (typeof code === 'string' && typeof syscall === 'string') return `${syscall} ${code}`;
  if (typeof code === 'string') return `${code}: ${errorMessage(error)}`;
  return errorMessage(error);
}

function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** URL.hostname keeps IPv6 brackets; sockets want them off. */
function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/**
 * Runs `start` with a settle-once callback and a clock-driven timeout; `cleanup` always runs once, told the
 * result, so no socket outlives its probe (or, for a kept connection, outlives a check that did not pass).
 */
function bounded(
  clock: Clock,
  timeoutMs: number,
  start: (settle: (result: ProbeResult) => void) => (result: ProbeResult) => void,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled: ProbeResult | undefined;
    let cleanup: ((result: ProbeResult) => void) | undefined;
    const settle = (result: ProbeResult): void => {
      if (settled !== undefined) return;
      settled = result;
      clock.clearTimeout(timer);
      cleanup?.(result);
      resolve(result);
    };
    const timer = clock.setTimeout(() => settle({ result: 'timeout', detail: `no answer within ${timeoutMs}ms` }), timeoutMs);
    cleanup = start(settle);
    if (settled !== undefined) cleanup(settled);
  });
}

/** Connect options that send the probe where DNS discovery resolved the backend's name, as the data plane's connections go. */
function resolvedLookup(target: ProbeTarget): { lookup?: LookupFunction } {
  const addresses = target.addresses ?? null;
  return addresses === null || addresses.length === 0 ? {} : { lookup: fixedLookup(addresses) };
}

function tcpProbe(target: ProbeTarget, clock: Clock): Promise<ProbeResult> {
  return bounded(clock, target.timeoutMs, (settle) => {
    const socket = net.connect({ host: hostOf(target.url), port: portOf(target.url), ...resolvedLookup(target) });
    socket.once('connect', () => settle({ result: 'pass', detail: 'TCP connect ok' }));
    socket.on('error', (error) => settle({ result: 'error', detail: describeError(error) }));
    // The error listener stays attached (settle is idempotent), so nothing emitted after destroy goes unhandled.
    return () => socket.destroy();
  });
}

/** SNI for an https backend: tls.serverName, else the URL's host name; none for an IP literal (RFC 6066). */
function serverNameOf(target: ProbeTarget): string | undefined {
  return target.serverName ?? (net.isIP(hostOf(target.url)) === 0 ? hostOf(target.url) : undefined);
}

/** Verification is never turned off: a backend with a bad certificate fails its checks. */
function tlsOptions(target: ProbeTarget): { rejectUnauthorized: true; ca?: string; cert?: string; key?: string; servername?: string } {
  const { ca, cert, key } = target.tls;
  const serverName = serverNameOf(target);
  return {
    rejectUnauthorized: true,
    ...(ca === null ? {} : { ca }),
    ...(cert === null || key === null ? {} : { cert, key }),
    ...(serverName === undefined ? {} : { servername: serverName }),
  };
}

function httpProbe(target: ProbeTarget, path: string, clock: Clock): Promise<ProbeResult> {
  const kept = target.keptConnection ?? null;
  return bounded(clock, target.timeoutMs, (settle) => {
    let ended = false;
    const request = kept === null ? checkRequest(path, target.host ?? target.url.host, false) : kept.request(path, target.host ?? target.url.host);
    let connection = kept?.current() ?? null;
    const get = (): void => {
      if (connection === null) {
        connection = new CheckConnection(dial(target, kept !== null));
        kept?.use(connection);
      }
      connection.get(request, {
        answered: (status) =>
          settle(statusExpected(status, target.expectedStatuses) ? { result: 'pass', detail: `HTTP ${status}` } : { result: 'fail', detail: `HTTP ${status}` }),
        failed: (error, stale) => {
          // A kept connection the backend closed just as this check went out: one more try on a fresh connection before
          // the check counts as failed (a backend may close an idle connection whenever it likes). Not once the check
          // has ended.
          if (!stale || ended) {
            settle({ result: 'error', detail: describeError(error) });
            return;
          }
          kept?.close();
          connection = null;
          get();
        },
      });
    };
    get();
    return (result) => {
      ended = true;
      // Only a passing check leaves its connection open (for the next check, when the answer allows it).
      if (!connection!.release(kept !== null && result.result === 'pass')) kept?.close();
    };
  });
}

/**
 * A check's connection: TCP, or TLS for an https backend. Without a kept connection every check dials its own and
 * asks the backend to close it: a check must see whether a new connection works, and must not share (or be queued
 * behind) the data plane's keep-alive sockets.
 */
function dial(target: ProbeTarget, keep: boolean): net.Socket {
  const options = { host: hostOf(target.url), port: portOf(target.url), ...resolvedLookup(target) };
  const socket = target.url.protocol === 'https:' ? tls.connect({ ...options, ...tlsOptions(target) }) : net.connect(options);
  if (keep) socket.setKeepAlive(true, KEPT_CONNECTION_TCP_KEEPALIVE_MS);
  return socket;
}

/**
 * grpc.health.v1.Health/Check on a fresh HTTP/2 connection (h2 by ALPN for https backends, h2c for http ones).
 * Passes only on grpc-status 0 with SERVING; NOT_SERVING, an unknown service (grpc-status 5), a server without the
 * health service (12) or anything that is not a gRPC answer fails, with what was seen as the detail.
 */
function grpcProbe(target: ProbeTarget, service: string, clock: Clock): Promise<ProbeResult> {
  const url = target.url;
  const secure = url.protocol === 'https:';
  return bounded(clock, target.timeoutMs, (settle) => {
    const options: http2.SecureClientSessionOptions = {};
    if (secure) Object.assign(options, tlsOptions(target));
    const session = http2.connect(url.origin, options);
    session.on('error', (error) => settle({ result: 'error', detail: describeError(error) }));
    const stream = session.request({
      ':method': 'POST',
      ':path': GRPC_HEALTH_CHECK_PATH,
      ':authority': target.host ?? url.host,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': USER_AGENT,
      // The backend may give up when we do.
      'grpc-timeout': `${target.timeoutMs}m`,
    });
    let status = 0;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const fields = (headers: http2.IncomingHttpHeaders): void => {
      const code = headers['grpc-status'];
      if (typeof code === 'string') grpcStatus = code;
      const message = headers['grpc-message'];
      if (typeof message === 'string') grpcMessage = message;
    };
    const chunks: Buffer[] = [];
    let received = 0;
    stream.on('response', (headers) => {
      status = Number(headers[':status'] ?? 0);
      fields(headers);
    });
    stream.on('trailers', fields);
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > MAX_BODY_BYTES) settle({ result: 'fail', detail: `gRPC answer over ${MAX_BODY_BYTES} bytes` });
      else chunks.push(chunk);
    });
    stream.on('end', () => settle(grpcVerdict(status, grpcStatus, grpcMessage, Buffer.concat(chunks))));
    stream.on('error', (error) => settle({ result: 'error', detail: describeError(error) }));
    stream.on('close', () => settle({ result: 'error', detail: `stream closed before the answer ended (HTTP/2 code ${stream.rstCode ?? 0})` }));
    stream.end(healthCheckRequest(service));
    return () => session.destroy();
  });
}

function grpcVerdict(status: number, grpcStatus: string | undefined, grpcMessage: string | undefined, body: Buffer): ProbeResult {
  if (status !== 200) return { result: 'fail', detail: `HTTP ${status}, not a gRPC answer` };
  if (grpcStatus === undefined) return { result: 'fail', detail: 'gRPC answer without grpc-status' };
  if (grpcStatus !== '0') {
    let message = '';
    if (grpcMessage !== undefined) {
      try {
        message = `: ${decodeURIComponent(grpcMessage)}`;
      } catch {
        message = `: ${grpcMessage}`;
      }
    }
    return { result: 'fail', detail: `grpc-status ${grpcStatus}${message}` };
  }
  const read = servingStatusOf(body);
  if ('error' in read) return { result: 'fail', detail: `gRPC health answer: ${read.error}` };
  return { result: read.status === SERVING ? 'pass' : 'fail', detail: servingStatusName(read.status) };
}
