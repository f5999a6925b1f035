// The access log: one JSON line per client request on its own stream (standard output or log.accessFile), whatever log.level says.
//
// The listener writes every line, because it sees every request: forwarded, answered by balancer itself
// (400/404/405/408/413/431/503), refused before parsing completed, or upgraded. What only the forwarder or the
// WebSocket tunnel knows (pool, backend, attempts, time on the backend) is left on the request with noteUpstream()
// (by the tunnel, or by the listener from what forward() returned); what a bare-socket answer said is left on the
// socket by noteRawAnswer().

import { createWriteStream, type WriteStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { traceIdOf } from './request-id.js';

/** One line of the access log. Absent facts are null, so every line has the same fields. */
export interface AccessRecord {
  /** When the request arrived (its head was parsed), ISO 8601 UTC. */
  readonly time: string;
  readonly client: string | null;
  readonly method: string | null;
  readonly host: string | null;
  readonly path: string | null;
  /** 499 when the client went away before an answer; 101 for an upgrade the backend accepted. */
  readonly status: number;
  /** Bytes read from / written to the client connection for this request, heads included. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** From the request head parsed to the answer written (the tunnel closed, for an upgrade). */
  readonly durationMs: number;
  /** Time on the last backend tried: from its attempt start to the end of its answer; null when none was tried. */
  readonly upstreamMs: number | null;
  readonly pool: string | null;
  readonly backend: string | null;
  /** Backends tried (1 + retries); 0 when no backend was asked. */
  readonly attempts: number;
  /** The error code of an answer balancer wrote itself (NO_ROUTE, UPSTREAM_CONNECT_FAILED, ...). */
  readonly code: string | null;
  readonly requestId: string | null;
  /** The trace id of a W3C traceparent header the request carried (passed to the backend untouched). */
  readonly traceId: string | null;
  readonly upgrade: boolean;
  /** HTTP/1.0, HTTP/1.1 or HTTP/2.0; null when the request could not be parsed. With HTTP/2, bytesIn/bytesOut count the whole connection since its previous line. */
  readonly protocol: string | null;
}

/** What the forwarder or the tunnel learned about a request's upstream side. */
export interface UpstreamFacts {
  readonly pool: string;
  readonly backend: string | null;
  readonly attempts: number;
  readonly upstreamMs: number | null;
  readonly code: string | null;
  /** Set when the status the client got is not the response's own: the backend's answer to an upgrade. */
  readonly status?: number;
}

const UPSTREAM = Symbol('balancer.accessLog.upstream');
const CLIENT_TARGET = Symbol('balancer.accessLog.clientTarget');
const RAW_ANSWER = Symbol('balancer.accessLog.rawAnswer');

type WithUpstream = IncomingMessage & { [UPSTREAM]?: UpstreamFacts; [CLIENT_TARGET]?: string };

/** Keeps the target the client asked for (normalised) before a route rewrites req.url for the backend: the line shows the client's. */
export function keepClientTarget(req: IncomingMessage): void {
  (req as WithUpstream)[CLIENT_TARGET] = req.url ?? '/';
}
type WithRawAnswer = Duplex & { [RAW_ANSWER]?: { status: number; code: string } };

/** Leaves what the upstream side knows on the request, for the listener's access line. Cheap when nothing logs. */
export function noteUpstream(req: IncomingMessage, facts: UpstreamFacts): void {
  (req as WithUpstream)[UPSTREAM] = facts;
}

/** Leaves the status and code of an answer written on a bare socket (no ServerResponse to read them from). */
export function noteRawAnswer(socket: Duplex, status: number, code: string): void {
  (socket as WithRawAnswer)[RAW_ANSWER] = { status, code };
}

/**
 * What of a client connection earlier lines already told (keep-alive: one connection, many requests): its byte
 * counts then, and since when (performance.now()) it has been waiting for its next request.
 */
const COUNTED = Symbol('balancer.accessLog.counted');
interface Counted {
  /** Read while the connection is up: a closed socket no longer knows its peer. */
  readonly client: string | null;
  read: number;
  written: number;
  since: number;
}
type CountedSocket = Duplex & { [COUNTED]?: Counted; bytesRead?: number; bytesWritten?: number; remoteAddress?: string };

/** Marks a new client connection: its address, and when a request it fails to send began. */
export function connectionAccepted(socket: Duplex): void {
  (socket as CountedSocket)[COUNTED] = { client: (socket as CountedSocket).remoteAddress ?? null, read: 0, written: 0, since: performance.now() };
}

function counted(socket: Duplex): Counted {
  const marked = socket as CountedSocket;
  return (marked[COUNTED] ??= { client: marked.remoteAddress ?? null, read: 0, written: 0, since: performance.now() });
}

function bytesSinceLastLine(socket: Duplex): { bytesIn: number; bytesOut: number } {
  const marked = socket as CountedSocket;
  const mark = counted(socket);
  const read = marked.bytesRead ?? 0;
  const written = marked.bytesWritten ?? 0;
  const line = { bytesIn: read - mark.read, bytesOut: written - mark.written };
  mark.read = read;
  mark.written = written;
  mark.since = performance.now();
  return line;
}

/** The status and code of a bare-socket answer written on this connection, if any. */
export function rawAnswerOf(socket: Duplex): { status: number; code: string } | undefined {
  return (socket as WithRawAnswer)[RAW_ANSWER];
}

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function header(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === 'string' ? value : null;
}

/** The line of a request whose head was parsed; `socket` is the one its bytes went over. */
function parsedRequestLine(req: IncomingMessage, socket: Duplex, time: string, startedAt: number, status: number, code: string | null, upgrade: boolean): AccessRecord {
  const upstream = (req as WithUpstream)[UPSTREAM];
  return {
    time,
    client: counted(req.socket).client,
    method: req.method ?? null,
    host: header(req, 'host'),
    path: (req as WithUpstream)[CLIENT_TARGET] ?? req.url ?? null,
    status,
    ...bytesSinceLastLine(socket),
    durationMs: roundMs(performance.now() - startedAt),
    upstreamMs: upstream?.upstreamMs == null ? null : roundMs(upstream.upstreamMs),
    pool: upstream?.pool ?? null,
    backend: upstream?.backend ?? null,
    attempts: upstream?.attempts ?? 0,
    code,
    requestId: header(req, 'x-request-id'),
    traceId: traceIdOf(req.headers['traceparent']),
    upgrade,
    protocol: `HTTP/${req.httpVersion}`,
  };
}

/** Where access lines go: a file opened for appending (reopened on SIGUSR1 for logrotate), or standard output. */
export class AccessLog {
  private stream: WriteStream | null;

  private constructor(private readonly file: string | null) {
    this.stream = file === null ? null : AccessLog.openFile(file);
  }

  /** `file`: absolute path, or null for standard output. */
  static open(file: string | null): AccessLog {
    return new AccessLog(file);
  }

  private static openFile(file: string): WriteStream {
    const stream = createWriteStream(file, { flags: 'a', mode: 0o640 });
    // A disk that fills up or a file removed under us must not take the proxy down: lines are lost, requests are not.
    stream.on('error', (error) => process.stderr.write(`${JSON.stringify({ level: 'error', time: new Date().toISOString(), msg: 'access log write failed', file, err: error.message })}\n`));
    return stream;
  }

  get destination(): string {
    return this.file ?? 'stdout';
  }

  write(record: AccessRecord): void {
    const line = JSON.stringify(record) + '\n';
    if (this.stream === null) process.stdout.write(line);
    else this.stream.write(line);
  }

  /** After logrotate moved the file: lines written from now on go to a new file at the same path. */
  reopen(): void {
    if (this.file === null) return;
    const old = this.stream;
    this.stream = AccessLog.openFile(this.file);
    old?.end();
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = null;
    if (stream === null) return Promise.resolve();
    return new Promise((resolve) => stream.end(() => resolve()));
  }

  // ------------------------------------------------------------ the three kinds of line

  /**
   * A request that got (or was meant to get) a ServerResponse; called when that response closes. `startedAt` is
   * performance.now() when the head was parsed; `code` is the listener's own answer's code, when it answered.
   */
  requestDone(req: IncomingMessage, status: number, time: string, startedAt: number, code: string | null): void {
    const upstream = (req as WithUpstream)[UPSTREAM];
    this.write(parsedRequestLine(req, req.socket, time, startedAt, status, code ?? upstream?.code ?? null, false));
  }

  /** An Upgrade (or CONNECT) request, whose socket left the HTTP server; called when that socket closes. */
  socketRequestDone(req: IncomingMessage, socket: Duplex, time: string, startedAt: number): void {
    const upstream = (req as WithUpstream)[UPSTREAM];
    const raw = (socket as WithRawAnswer)[RAW_ANSWER];
    const status = raw?.status ?? upstream?.status ?? 499;
    this.write(parsedRequestLine(req, socket, time, startedAt, status, raw?.code ?? upstream?.code ?? null, req.method !== 'CONNECT'));
  }

  /** A request Node's parser refused or timed out (400/408/431): no method, host or path to tell; timed from when the connection began waiting for it. */
  unparsedDone(socket: Duplex): void {
    const raw = (socket as WithRawAnswer)[RAW_ANSWER];
    const { client, since: startedAt } = counted(socket);
    const durationMs = performance.now() - startedAt;
    this.write({
      time: new Date(Date.now() - durationMs).toISOString(),
      client,
      method: null,
      host: null,
      path: null,
      status: raw?.status ?? 400,
      ...bytesSinceLastLine(socket),
      durationMs: roundMs(durationMs),
      upstreamMs: null,
      pool: null,
      backend: null,
      attempts: 0,
      code: raw?.code ?? null,
      requestId: null,
      traceId: null,
      upgrade: false,
      protocol: null,
    });
  }
}
