// HTTP/2 beside HTTP/1.1 on one listener: connections ALPN gave h2 or that open with the h2c preface become HTTP/2 sessions, with flood limits and a rapid-reset guard.
//
// The listener's own http/https server keeps every HTTP/1.1 connection (its timeouts, parser limits and upgrade
// handling stay as they are); only the sockets that speak HTTP/2 are handed to a node:http2 server that never
// listens itself. Its requests arrive through the compatibility API, so the data plane serves them like any other.

import http2, { constants, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';

/** The connection preface every prior-knowledge HTTP/2 client sends first (RFC 9113 section 3.4). */
const H2C_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** HAProxy's and nginx's default: streams one connection may have open at once. */
export const MAX_CONCURRENT_STREAMS = 100;

/**
 * CVE-2023-44487 (rapid reset): a client opens streams and resets each at once, so the server starts work it never
 * answers while the concurrency limit never bites. A stream the client resets before any response header went out
 * is a premature reset; a connection with at least this many, making up more than half of its streams, is closed
 * (Envoy's rule). Browsers cancel a few streams when a page is left, never hundreds.
 */
export const PREMATURE_RESET_LIMIT = 100;

export interface Http2FrontOptions {
  /** Largest header list a client may send (the listener's maxHeaderSize). */
  readonly maxHeaderListSize: number;
  /** An HTTP/2 connection without any frame for this long is closed gracefully. */
  readonly idleTimeoutMs: number;
  readonly onRequest: (req: Http2ServerRequest, res: Http2ServerResponse) => void;
  readonly logger: Logger;
}

interface SessionCounts {
  streams: number;
  prematureResets: number;
}

export class Http2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private idleTimeoutMs: number;
  private closing = false;

  constructor(private readonly options: Http2FrontOptions) {
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: options.maxHeaderListSize },
      maxSessionRejectedStreams: MAX_CONCURRENT_STREAMS,
    });
    this.server.on('session', (session: ServerHttp2Session) => this.onSession(session));
    this.server.on('request', options.onRequest);
  }

  /** A connection that speaks HTTP/2: TLS with ALPN h2, or plain with the preface already (partly) read back into it. */
  take(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  updateLimits(limits: { maxHeaderListSize: number; idleTimeoutMs: number }): void {
    this.idleTimeoutMs = limits.idleTimeoutMs;
    this.server.updateSettings({ maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: limits.maxHeaderListSize });
  }

  private onSession(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', (error: Error) => {
      if (this.options.logger.enabled('debug')) this.options.logger.debug('HTTP/2 session error', { err: error });
    });
    session.setTimeout(this.idleTimeoutMs, () => session.close());
    if (this.closing) {
      session.close();
      return;
    }
    const counts: SessionCounts = { streams: 0, prematureResets: 0 };
    session.on('stream', (stream: ServerHttp2Stream) => {
      counts.streams += 1;
      stream.once('aborted', () => {
        if (stream.headersSent) return;
        counts.prematureResets += 1;
        if (counts.prematureResets >= PREMATURE_RESET_LIMIT && counts.prematureResets * 2 > counts.streams) this.closeFlood(session, counts);
      });
    });
  }

  private closeFlood(session: ServerHttp2Session, counts: SessionCounts): void {
    if (session.destroyed) return;
    this.options.logger.warn('HTTP/2 connection closed: streams reset right after opening (rapid reset)', {
      client: session.socket?.remoteAddress ?? null,
      streams: counts.streams,
      resets: counts.prematureResets,
    });
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
  }

  /** Draining: every session gets GOAWAY and finishes the streams it has; new sessions are closed the same way. */
  close(): void {
    this.closing = true;
    for (const session of this.sessions) session.close();
  }

  /** The drain deadline passed: what is left is cut. */
  destroy(): void {
    for (const session of this.sessions) session.destroy();
  }
}

/**
 * Reads the first bytes of a plain connection: the h2c preface goes to `http2`, anything else to `http1`, with the
 * bytes read so far put back in front of the socket for whichever parser takes it.
 */
export function sniffH2cPreface(socket: Socket, timeoutMs: number, http2Handler: (socket: Socket) => void, http1Handler: (socket: Socket) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  // Until a parser has it, no parser's head timeout applies: a client that sends nothing is cut at the same time.
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const compared = Math.min(seen.length, H2C_PREFACE.length);
    const isPreface = seen.subarray(0, compared).equals(H2C_PREFACE.subarray(0, compared));
    if (isPreface && seen.length < H2C_PREFACE.length) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('error', onError);
    if (isPreface) {
      // Paused first: the HTTP/2 session reads what was put back from the socket's buffer itself.
      socket.pause();
      socket.unshift(seen);
      http2Handler(socket);
    } else {
      // Still flowing: the chunk put back is the next one the HTTP/1 parser's 'data' listener receives.
      socket.unshift(seen);
      http1Handler(socket);
    }
  };
  // A client that connects and hangs up before a byte is nobody's to answer.
  const onEnd = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const onError = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('error', onError);
}
