// The connections to one HTTP/2 backend (pool protocol h2 or h2c): sessions that each carry many requests at once, with a body or without.
//
// undici 7 sends a request with a streamed body (every gRPC call) only on a session with nothing else in flight, and
// holds every connection to its HTTP/1.1 `pipelining` count of requests on HTTP/2 too (undici issue 4143, fixed in
// undici 8, which needs Node 22). Through it, N gRPC calls in flight held N connections to the backend. Here streams
// share sessions up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS (at most STREAMS_PER_SESSION), as Envoy and
// HAProxy do. The exchange (upstream-exchange.ts) is called through the same handler protocol undici's clients speak
// (onConnect, onHeaders, onData, onComplete, onError), so it does not know which one carries its request.
//
// An h2 backend whose TLS handshake picks http/1.1 by ALPN gets its requests through an undici HTTP/1.1 pool instead.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { Http2StreamReset, UpstreamTimeout } from './error-status.js';
import type { Connector, Pool } from './undici-parts.js';

const { HTTP2_HEADER_STATUS, NGHTTP2_CANCEL } = http2.constants;

/**
 * Streams one session carries at once when the backend allows as many: what undici and Node's server default to.
 * More would only queue inside the session, where a stream waits behind others that may last minutes.
 */
export const STREAMS_PER_SESSION = 100;

/**
 * Flow-control windows we offer the backend for its responses: undici's defaults for HTTP/2 (256 KB a stream,
 * 512 KB a session). Node's own 64 KB would make a large download wait for a window update every 64 KB.
 */
const STREAM_WINDOW_BYTES = 256 * 1024;
const SESSION_WINDOW_BYTES = 512 * 1024;

/**
 * The handler protocol the exchange implements, as undici's clients call it: response fields as a flat list (strings
 * here, which the exchange takes as it takes undici's Buffers), trailers as Node's object (as undici's HTTP/2 client
 * gives them; the exchange leaves out pseudo-fields), or null when there were none.
 */
interface ExchangeHandler {
  onConnect(abort: (error?: Error) => void): void;
  onHeaders(statusCode: number, fields: string[], resume: () => void, statusMessage: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: IncomingHttpHeaders | null): void;
  onError(error: Error): void;
}

/** The part of a request body the sessions use: a classic stream piped into the HTTP/2 stream (request-body.ts). */
interface PipedBody {
  pipe<T extends NodeJS.WritableStream>(destination: T): T;
  on(event: 'error', listener: (error: Error) => void): unknown;
  destroy(): unknown;
}

/** Where the backend is, as the connector takes it. */
export interface Http2Target {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number;
}

interface WaitingRequest {
  readonly options: Dispatcher.DispatchOptions;
  readonly handler: Dispatcher.DispatchHandler;
}

/** One session to the backend and the streams it carries. */
class Session {
  readonly h2: ClientHttp2Session;
  streams = 0;
  /** Streams the backend allows at once (its SETTINGS), at most STREAMS_PER_SESSION. */
  limit = STREAMS_PER_SESSION;
  /** False once the backend sent GOAWAY or the session closed or failed: no new stream goes on it. */
  open = true;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(h2: ClientHttp2Session) {
    this.h2 = h2;
  }

  get hasRoom(): boolean {
    return this.open && this.streams < this.limit;
  }

  streamStarted(): void {
    if (this.streams++ === 0) {
      if (this.idleTimer !== null) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      this.h2.ref();
    }
  }

  /** The last stream ended: the session lets the process exit and closes if it stays unused for `idleMs`. */
  streamEnded(idleMs: number): void {
    if (--this.streams > 0) return;
    this.h2.unref();
    if (this.open) this.idleTimer = setTimeout(() => this.closeUnused(), idleMs).unref();
  }

  /** Closed for being unused: out of use at once, so no request is put on a session that is going. */
  private closeUnused(): void {
    this.retire();
    this.h2.close();
  }

  retire(): void {
    this.open = false;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

/** The error a request gets when the dispatcher was closed or destroyed before its stream started. */
class SessionsClosed extends Error {
  readonly code = 'UND_ERR_DESTROYED';
  constructor() {
    super('the backend\'s connections were closed');
  }
}

export class Http2Sessions {
  private readonly target: Http2Target;
  private readonly authority: string;
  private readonly connect: Connector;
  /** Most sessions open or opening at once; 0: no limit (connections.max). */
  private readonly maxSessions: number;
  private readonly idleMs: number;
  private readonly makeHttp1Pool: () => Pool;
  private readonly sessions: Session[] = [];
  private readonly waiting: WaitingRequest[] = [];
  private connecting = 0;
  /** Streams started and not yet closed, over every session: close() waits for them. */
  private inFlight = 0;
  /** Set once the backend picked http/1.1 by ALPN: every request goes there from then on. */
  private http1Pool: Pool | null = null;
  private closed = false;
  private onIdle: (() => void) | null = null;
  private closing: Promise<void> | null = null;

  constructor(target: Http2Target, connect: Connector, options: { maxSessions: number; idleMs: number; http1Pool: () => Pool }) {
    this.target = target;
    const host = target.hostname.includes(':') ? `[${target.hostname}]` : target.hostname;
    this.authority = `${target.protocol}//${host}:${target.port}`;
    this.connect = connect;
    this.maxSessions = options.maxSessions;
    this.idleMs = options.idleMs;
    this.makeHttp1Pool = options.http1Pool;
  }

  /** Sessions open (and HTTP/1.1 connections, for a backend that picked http/1.1). */
  get openConnections(): number {
    return this.sessions.length + (this.http1Pool?.stats.connected ?? 0);
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.closed) {
      queueMicrotask(() => handler.onError?.(new SessionsClosed()));
      return true;
    }
    if (this.http1Pool !== null) return this.http1Pool.dispatch(options, handler);
    const session = this.sessionWithRoom();
    if (session === undefined) {
      this.waiting.push({ options, handler });
      this.openSessionIfNeeded();
    } else this.startStream(session, options, handler);
    return true;
  }

  /** Lets the requests in flight finish, then closes every session; requests dispatched after this fail. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    const idle = new Promise<void>((resolve) => {
      this.onIdle = resolve;
    });
    this.closeIfIdle();
    this.closing = Promise.all([idle, this.http1Pool?.close()]).then(() => undefined);
    return this.closing;
  }

  /** Fails what waits, cuts every session with its streams. */
  destroy(): Promise<void> {
    this.closed = true;
    this.failWaiting(new SessionsClosed());
    for (const session of this.sessions.splice(0)) {
      session.retire();
      session.h2.destroy();
    }
    this.onIdle?.();
    return Promise.resolve(this.http1Pool?.destroy()).then(() => undefined);
  }

  private sessionWithRoom(): Session | undefined {
    for (const session of this.sessions) if (session.hasRoom) return session;
    return undefined;
  }

  /** A new session when what waits is more than the sessions being opened will take, within maxSessions. */
  private openSessionIfNeeded(): void {
    if (this.waiting.length <= this.connecting * STREAMS_PER_SESSION) return;
    if (this.maxSessions > 0 && this.sessions.length + this.connecting >= this.maxSessions) return;
    this.connecting++;
    const { protocol, hostname, port } = this.target;
    const host = `${hostname}:${port}`;
    this.connect({ protocol, hostname, host, port: String(port), servername: null, localAddress: null } as unknown as Parameters<Connector>[0], (error, socket) => {
      this.connecting--;
      if (this.closed) {
        socket?.destroy();
        this.closeIfIdle();
        return;
      }
      if (error !== null || socket === null) {
        // As undici's pools do: what waited for this connection fails, and the exchange retries it elsewhere (no byte
        // reached the backend).
        this.failWaiting(error ?? new Error('connection to the backend failed'));
        return;
      }
      // h2c sockets come marked 'h2' by the connector; an h2 backend that picked http/1.1 gets HTTP/1.1 from now on.
      if ((socket as { alpnProtocol?: string | false }).alpnProtocol !== 'h2') {
        socket.destroy();
        this.speakHttp1();
        return;
      }
      this.addSession(socket as Socket);
    });
  }

  private addSession(socket: Socket): void {
    const h2 = http2.connect(this.authority, {
      createConnection: () => socket,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW_BYTES },
    });
    const session = new Session(h2);
    this.sessions.push(session);
    h2.on('connect', () => {
      try {
        h2.setLocalWindowSize(SESSION_WINDOW_BYTES);
      } catch {
        // A window the session cannot take leaves Node's default: slower, never wrong.
      }
    });
    h2.on('remoteSettings', (settings) => {
      session.limit = Math.min(settings.maxConcurrentStreams ?? STREAMS_PER_SESSION, STREAMS_PER_SESSION);
      this.startWaiting();
    });
    // The backend is going away: streams it already took finish, new ones go to another session.
    h2.on('goaway', () => {
      session.retire();
      this.startWaiting();
    });
    // Each stream hears its own failure ('error' or 'close'); without this listener a session error kills the process.
    h2.on('error', () => session.retire());
    h2.on('close', () => {
      session.retire();
      const index = this.sessions.indexOf(session);
      if (index >= 0) this.sessions.splice(index, 1);
      this.startWaiting();
      this.closeIfIdle();
    });
    h2.unref();
    this.startWaiting();
  }

  /** Starts what waits on sessions with room, and asks for another session for the rest. */
  private startWaiting(): void {
    while (this.waiting.length > 0) {
      if (this.http1Pool !== null) {
        const next = this.waiting.shift()!;
        this.http1Pool.dispatch(next.options, next.handler);
        continue;
      }
      const session = this.sessionWithRoom();
      if (session === undefined) break;
      const next = this.waiting.shift()!;
      this.startStream(session, next.options, next.handler);
    }
    if (this.waiting.length > 0 && !this.closed) this.openSessionIfNeeded();
  }

  private speakHttp1(): void {
    this.http1Pool ??= this.makeHttp1Pool();
    this.startWaiting();
  }

  private failWaiting(error: Error): void {
    for (const { handler } of this.waiting.splice(0)) handler.onError?.(error);
  }

  private closeIfIdle(): void {
    if (!this.closed || this.inFlight > 0 || this.waiting.length > 0 || this.connecting > 0) return;
    for (const session of this.sessions.splice(0)) {
      session.retire();
      session.h2.close();
    }
    const resolve = this.onIdle;
    this.onIdle = null;
    resolve?.();
  }

  /** One request on `session`: its head and body sent, its response handed to the exchange as it comes. */
  private startStream(session: Session, options: Dispatcher.DispatchOptions, dispatchHandler: Dispatcher.DispatchHandler): void {
    const handler = dispatchHandler as unknown as ExchangeHandler;
    const body = (options.body ?? null) as PipedBody | null;
    let stream: ClientHttp2Stream | null = null;
    /** The exchange heard its end (complete or failed): nothing more goes to it. */
    let settled = false;
    let responded = false;
    let trailers: IncomingHttpHeaders | null = null;
    const idleMs = options.bodyTimeout ?? 0;
    const fail = (error: Error = new Error('request aborted')): void => {
      if (settled) return;
      settled = true;
      body?.destroy();
      if (stream !== null && !stream.closed) stream.close(NGHTTP2_CANCEL);
      handler.onError(error);
    };
    session.streamStarted();
    this.inFlight++;
    // Once per stream: from the stream's 'close', or where no stream was opened.
    const release = (): void => {
      this.inFlight--;
      session.streamEnded(this.idleMs);
      this.startWaiting();
      this.closeIfIdle();
    };
    handler.onConnect(fail);
    if (settled) {
      // Abandoned while it waited for a stream: nothing was sent.
      release();
      return;
    }
    try {
      stream = session.h2.request(requestHeaders(options), { endStream: body === null });
    } catch (error) {
      // Node refuses a field HTTP/2 forbids, or the session closed in between.
      fail(error as Error);
      release();
      return;
    }
    const started = stream;
    started.on('response', (headers) => {
      if (settled) return;
      responded = true;
      started.setTimeout(idleMs);
      const resume = (): void => {
        started.setTimeout(idleMs);
        started.resume();
      };
      if (!handler.onHeaders(Number(headers[HTTP2_HEADER_STATUS]), responseFields(headers), resume, '')) pause();
    });
    const pause = (): void => {
      // The client is not reading: the backend's idle timeout waits until it does (the exchange bounds that wait).
      started.setTimeout(0);
      started.pause();
    };
    started.on('data', (chunk: Buffer) => {
      if (!settled && !handler.onData(chunk)) pause();
    });
    started.on('trailers', (fields) => {
      trailers = fields;
    });
    started.on('end', () => {
      if (settled) return;
      if (!responded) {
        fail(new Http2StreamReset('the backend ended the stream without a response', started.rstCode));
        return;
      }
      settled = true;
      handler.onComplete(trailers);
    });
    const reset = (): Http2StreamReset =>
      new Http2StreamReset(responded ? 'the backend reset the stream mid-response' : 'the backend reset the stream before answering', started.rstCode);
    started.on('error', (error: NodeJS.ErrnoException) => {
      // The backend's RST_STREAM: its code says whether it processed the stream at all (REFUSED_STREAM: it did not).
      fail(error.code === 'ERR_HTTP2_STREAM_ERROR' ? reset() : error);
    });
    started.on('close', () => {
      // A stream can close with no 'error' (the backend's RST_STREAM, its session gone): the exchange must hear it.
      fail(reset());
      body?.destroy();
      release();
    });
    // The response timeout runs from the request fully sent to the response head, as over HTTP/1.1.
    const responseMs = options.headersTimeout ?? 0;
    const onTimeout = (): void => fail(new UpstreamTimeout(responded ? 'idle' : 'response', responded ? idleMs : responseMs));
    started.on('timeout', onTimeout);
    if (body === null) started.setTimeout(responseMs);
    else {
      started.once('finish', () => {
        if (!responded) started.setTimeout(responseMs);
      });
      body.on('error', fail);
      body.pipe(started);
    }
  }
}

/**
 * Fields HTTP/2 forbids in a request (RFC 9113 section 8.2.2), which Node's client refuses with an exception: the
 * client's, so they must not fail the request against the backend. TE is allowed with the value "trailers" only.
 */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

/** The request's fields for Node's HTTP/2 client: Host becomes :authority; pseudo-fields of a client's HTTP/2 request are not copied. */
function requestHeaders(options: Dispatcher.DispatchOptions): OutgoingHttpHeaders {
  const fields = (options.headers ?? {}) as Record<string, string | string[] | undefined>;
  const out: OutgoingHttpHeaders = { ':method': options.method, ':path': options.path };
  for (const name in fields) {
    const value = fields[name];
    if (value === undefined || name.charCodeAt(0) === 0x3a /* ':' */ || CONNECTION_SPECIFIC.has(name)) continue;
    if (name === 'host') out[':authority'] = value;
    else if (name !== 'te' || value === 'trailers') out[name] = value;
  }
  return out;
}

/** The response head as the flat list of names and values the exchange takes; a repeated field once per value. */
function responseFields(headers: IncomingHttpHeaders): string[] {
  const list: string[] = [];
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const one of value) list.push(name, one);
    else list.push(name, value);
  }
  return list;
}
