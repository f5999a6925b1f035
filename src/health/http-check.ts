// HTTP/1.1 for health checks: one GET on a connection, its answer read with just enough of HTTP/1.1 to know the
// status and where the answer ends, and the connection kept for the next check when the answer allows it.
//
// Node's http client would do the same, but a check comes every few seconds, so its agent, request and response
// objects run cold every time: on a kept connection a check cost ~1.35 ms of CPU through it and ~0.6 ms through this
// (docs/benchmarks.md, Fleet). undici (the data plane's client) cost more still at that rate: its timer wheel ticks
// twice a second while a kept connection waits.

import type net from 'node:net';

/** As Node's HTTP parser: an answer whose status line and headers do not fit is refused. */
const MAX_HEAD_BYTES = 16 * 1024;
/** Enough of a health page to see it is a real answer; anything longer is cut off rather than read forever. */
export const MAX_BODY_BYTES = 64 * 1024;
/** A chunk-size line (with its extensions) longer than this is not HTTP/1.1 but a stream to stop reading. */
const MAX_CHUNK_LINE_BYTES = 1024;

export const USER_AGENT = 'balancer-health-check';

/**
 * The bytes of a check's GET. A path character outside visible ASCII goes out percent-encoded (as UTF-8), as a
 * browser or curl sends it; `keepAlive` says whether the connection is meant for the next check too.
 */
export function checkRequest(path: string, host: string, keepAlive: boolean): Buffer {
  const target = path.replace(/[^\x21-\x7e]/gu, (character) => [...Buffer.from(character, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
  return Buffer.from(
    `GET ${target} HTTP/1.1\r\nhost: ${host}\r\nuser-agent: ${USER_AGENT}\r\naccept: */*\r\nconnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`,
    'latin1',
  );
}

/** What one GET is told: its answer's status once the answer is complete (or its body cut off), or why there is none. */
export interface ExchangeListener {
  answered(status: number): void;
  /** `stale`: nothing came back on a connection an earlier check's answer used (the backend may have closed it just then). */
  failed(error: Error, stale: boolean): void;
}

type Framing = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'until-close' | 'done';

/** Reads one answer as its bytes come: status line and headers, 1xx answers skipped, then the body by its framing. */
class AnswerReader {
  status = 0;
  /** The connection may carry the next check once this answer is complete. */
  reusable = false;
  /** Bytes of the answer seen so far (0: nothing came back). */
  received = 0;
  private framing: Framing = 'head';
  private pendingHead: Buffer | null = null;
  private remaining = 0;
  private line = '';
  private bodyBytes = 0;

  get complete(): boolean {
    return this.framing === 'done';
  }

  /** Whether the answer ends where the connection does (neither a length nor chunks). */
  get endsAtClose(): boolean {
    return this.framing === 'until-close';
  }

  /** Takes the next bytes; an error says what is wrong with the answer. Bytes after a complete answer make the connection unusable. */
  read(chunk: Buffer): { error: string } | null {
    this.received += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      switch (this.framing) {
        case 'head': {
          const pending = this.pendingHead === null ? chunk.subarray(at) : Buffer.concat([this.pendingHead, chunk.subarray(at)]);
          const searchFrom = this.pendingHead === null ? 0 : Math.max(0, this.pendingHead.length - 3);
          const end = pending.indexOf('\r\n\r\n', searchFrom, 'latin1');
          if (end === -1) {
            if (pending.length > MAX_HEAD_BYTES) return { error: `answer headers over ${MAX_HEAD_BYTES} bytes` };
            this.pendingHead = pending;
            return null;
          }
          if (end > MAX_HEAD_BYTES) return { error: `answer headers over ${MAX_HEAD_BYTES} bytes` };
          const consumedOfChunk = end + 4 - (this.pendingHead?.length ?? 0);
          this.pendingHead = null;
          const problem = this.readHead(pending.toString('latin1', 0, end));
          if (problem !== null) return { error: problem };
          at += consumedOfChunk;
          break;
        }
        case 'length': {
          const taken = Math.min(this.remaining, chunk.length - at);
          at += taken;
          this.remaining -= taken;
          if (this.countBody(taken) || this.remaining === 0) this.framing = 'done';
          break;
        }
        case 'until-close': {
          const taken = chunk.length - at;
          at += taken;
          if (this.countBody(taken)) this.framing = 'done';
          break;
        }
        case 'chunk-data': {
          const taken = Math.min(this.remaining, chunk.length - at);
          at += taken;
          this.remaining -= taken;
          if (this.countBody(taken)) this.framing = 'done';
          else if (this.remaining === 0) this.framing = 'chunk-end';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const newline = chunk.indexOf(10, at);
          const taken = newline === -1 ? chunk.length : newline + 1;
          this.line += chunk.toString('latin1', at, newline === -1 ? chunk.length : newline);
          at = taken;
          if (this.line.length > (this.framing === 'trailers' ? MAX_HEAD_BYTES : MAX_CHUNK_LINE_BYTES)) return { error: 'chunked answer with an overlong line' };
          if (newline === -1) break;
          const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
          this.line = '';
          const problem = this.readLine(line);
          if (problem !== null) return { error: problem };
          break;
        }
        case 'done':
          // Bytes nobody asked for: the connection is out of step with its requests.
          this.reusable = false;
          return null;
      }
    }
    return null;
  }

  /** Counts body bytes; true once more than a check reads has come (the answer is cut off and its connection not reused). */
  private countBody(bytes: number): boolean {
    this.bodyBytes += bytes;
    if (this.bodyBytes <= MAX_BODY_BYTES) return false;
    this.reusable = false;
    return true;
  }

  private readLine(line: string): string | null {
    if (this.framing === 'chunk-end') {
      if (line !== '') return 'chunked answer: no line end after a chunk';
      this.framing = 'chunk-size';
      return null;
    }
    if (this.framing === 'trailers') {
      if (line === '') this.framing = 'done';
      return null;
    }
    const semicolon = line.indexOf(';');
    const size = (semicolon === -1 ? line : line.slice(0, semicolon)).trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(size)) return `chunked answer: bad chunk size ${JSON.stringify(line.slice(0, 40))}`;
    this.remaining = parseInt(size, 16);
    this.framing = this.remaining === 0 ? 'trailers' : 'chunk-data';
    return null;
  }

  /** The status line and headers of one answer; a 1xx (but 101) is skipped and the next head is read. */
  private readHead(head: string): string | null {
    const lines = head.split('\r\n');
    const statusLine = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: |$)/.exec(lines[0]!);
    if (statusLine === null) return `not an HTTP/1.x answer: ${JSON.stringify(lines[0]!.slice(0, 40))}`;
    const status = Number(statusLine[2]);
    if (status < 200 && status !== 101) return null;
    let contentLength: number | null = null;
    let transferCodings: string[] | null = null;
    let connection: string[] = [];
    for (let index = 1; index < lines.length; index++) {
      const line = lines[index]!;
      const colon = line.indexOf(':');
      if (colon <= 0) {
        if (line.startsWith(' ') || line.startsWith('\t')) continue; // obsolete folding of the previous value
        return `malformed header line ${JSON.stringify(line.slice(0, 40))}`;
      }
      const name = line.slice(0, colon).toLowerCase();
      if (name === 'content-length') {
        for (const part of line.slice(colon + 1).split(',')) {
          const value = part.trim();
          if (!/^\d{1,15}$/.test(value) || (contentLength !== null && contentLength !== Number(value))) return `invalid Content-Length ${JSON.stringify(line.slice(colon + 1).trim().slice(0, 40))}`;
          contentLength = Number(value);
        }
      } else if (name === 'transfer-encoding') {
        transferCodings = [...(transferCodings ?? []), ...tokens(line.slice(colon + 1))];
      } else if (name === 'connection') {
        connection = [...connection, ...tokens(line.slice(colon + 1))];
      }
    }
    this.status = status;
    this.reusable = statusLine[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
    if (status === 101 || status === 204 || status === 304) {
      // No body; a 101 switched the connection to something else.
      if (status === 101) this.reusable = false;
      this.framing = 'done';
    } else if (transferCodings !== null) {
      // A length beside a transfer coding is ignored, and such a connection not trusted with another request.
      if (contentLength !== null) this.reusable = false;
      if (transferCodings[transferCodings.length - 1] === 'chunked') this.framing = 'chunk-size';
      else this.framing = 'until-close';
    } else if (contentLength !== null) {
      this.remaining = contentLength;
      this.framing = contentLength === 0 ? 'done' : 'length';
    } else {
      this.framing = 'until-close';
    }
    if (this.framing === 'until-close') this.reusable = false;
    return null;
  }
}

function tokens(value: string): string[] {
  return value
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== '');
}

/**
 * One connection checks' GETs go over, one at a time. Its listeners stay for its whole life and pass what the socket
 * says to the GET in progress, if any; bytes while no GET is in progress close it.
 */
export class CheckConnection {
  private readonly socket: net.Socket;
  private reader: AnswerReader | null = null;
  private listener: ExchangeListener | null = null;
  /** An earlier check's answer came over it. */
  private used = false;
  private closed = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => {
      this.closed = true;
      const reader = this.reader;
      if (reader !== null && reader.endsAtClose) this.answer(reader.status);
      else this.fail(new Error(reader === null || reader.received === 0 ? 'connection closed before any answer' : 'connection closed before the answer ended'));
    });
  }

  /** Neither end has closed it. */
  get open(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** Sends a GET; the listener hears exactly once, unless the connection is released or destroyed first. */
  get(request: Buffer, listener: ExchangeListener): void {
    this.reader = new AnswerReader();
    this.listener = listener;
    this.socket.write(request);
  }

  /**
   * Ends the GET in progress. Returns true when the connection stays open for the next check: its answer is complete
   * and allowed reuse, and `keep` asks for it. Otherwise the connection is closed.
   */
  release(keep: boolean): boolean {
    const reusable = keep && this.open && this.reader !== null && this.reader.complete && this.reader.reusable;
    this.reader = null;
    this.listener = null;
    if (reusable) this.used = true;
    else this.destroy();
    return reusable;
  }

  destroy(): void {
    this.reader = null;
    this.listener = null;
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const reader = this.reader;
    if (reader === null) {
      this.destroy();
      return;
    }
    const wasComplete = reader.complete;
    const problem = reader.read(chunk);
    if (problem !== null) this.fail(new Error(problem.error));
    else if (!wasComplete && reader.complete) this.answer(reader.status);
  }

  private answer(status: number): void {
    const listener = this.listener;
    this.listener = null;
    listener?.answered(status);
  }

  private fail(error: Error): void {
    const listener = this.listener;
    if (listener === null) return;
    this.listener = null;
    listener.failed(error, this.used && this.reader !== null && this.reader.received === 0);
  }
}

/**
 * One backend's HTTP check connection kept between checks (Envoy's reuse_connection): dialled by the first check and
 * reused while checks pass. Any other result (a failing status, an error, a timeout) closes it, so the next check
 * dials fresh and a backend that cannot take new connections is seen. A connection the backend closed while idle is
 * dropped and the next check dials a new one.
 */
export class KeptConnection {
  private connection: CheckConnection | null = null;
  private requestBytes: { readonly path: string; readonly host: string; readonly bytes: Buffer } | null = null;

  /** The connection the next check goes over, if one is open (idle, or in use by the check running now). */
  current(): CheckConnection | null {
    if (this.connection !== null && !this.connection.open) this.connection = null;
    return this.connection;
  }

  /** Makes a freshly dialled connection the kept one. */
  use(connection: CheckConnection): void {
    this.connection = connection;
  }

  /** The GET each check on this connection sends, encoded once. */
  request(path: string, host: string): Buffer {
    if (this.requestBytes === null || this.requestBytes.path !== path || this.requestBytes.host !== host) {
      this.requestBytes = { path, host, bytes: checkRequest(path, host, true) };
    }
    return this.requestBytes.bytes;
  }

  /** Closes the connection (idle or in use); the next check dials a new one. */
  close(): void {
    this.connection?.destroy();
    this.connection = null;
  }
}
