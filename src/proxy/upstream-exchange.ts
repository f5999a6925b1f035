// One attempt's exchange with one backend over undici: the request sent, the response head flushed at once, the body streamed with backpressure both ways, trailers passed on.
//
// The attempt is itself the undici dispatch handler, so an ordinary request costs no closures. It speaks the handler
// protocol undici's clients call (onConnect, onHeaders, onData, onComplete, onError): undici 7 wraps a handler of its
// newer interface (onRequestStart ... onResponseEnd) in an adapter that builds a controller and parses every response
// head into an object per request, which the proxy never reads (it relays the raw fields). Timeouts are undici's where it has them: connect (the pool's connector),
// response (headersTimeout: from the request fully sent to the response head) and idle (bodyTimeout: no body byte
// from the backend). Two waits are ours, both started only when they happen: a local wait for a connection under
// connections.max, and a client that stops reading.

import type { IncomingMessage, ServerResponse } from 'node:http';
// The module's binding: the global `performance` is a getter, a call on every read.
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { TimeoutsConfig } from '../config/schema.js';
import { ClientStalled, ConnectionWaitExpired } from './error-status.js';
import { latin1Text, responseHeaderList, trailerList, trailerObject } from './headers.js';
import { RequestBody, type BodyEvents } from './request-body.js';
import { writeRelayedHead } from './response-head.js';
import { isHttp2 } from './http2-requests.js';
import type { Upstream } from './upstream.js';

/** The client side of an exchange, as an attempt sees it; the retry loop's per-request state provides it. */
export interface AttemptOwner {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Request body to forward (Content-Length > 0 or chunked). */
  readonly hasBody: boolean;
  /** Limit for a body without Content-Length, counted as it streams; 0: none. */
  readonly maxBodySize: number;
  /** Connection: close on the response (the client asked, or the listener is draining). */
  readonly closeAfterResponse: boolean;
  /** The route sends each backend its own host:port as Host. */
  readonly hostFromBackend: boolean;
  /**
   * The response head's fields before they go to the client, in place: the request id, the route's rules. The first
   * `parsedFields` entries of `list` came through undici's HTTP/1.1 parser; returns how many leading entries are
   * still known to be valid (those, and a field whose value undici already checked in this request's head): the rest
   * is checked when the head is written.
   */
  editResponseHeaders(list: string[], parsedFields: number): number;
  /**
   * A 5xx answer's head arrived: true when the route retries on it (the attempt is then abandoned, nothing relayed).
   */
  retryAnswer(attempt: UpstreamAttempt, status: number): boolean;
  /** The first body byte was taken from the client: this body cannot be sent again. */
  bodyStarted(): void;
  bodyOverLimit(attempt: UpstreamAttempt, limit: number): void;
  /**
   * The response is ended but the client's socket has not taken all of it: a client that takes none of the rest for
   * `idleMs` is cut, as one that stops reading mid-body is (onData). A route timeout no longer applies to it.
   */
  tailUnwritten(idleMs: number): void;
  /** Exactly once per started attempt: `error` undefined when the response was relayed to its end. */
  attemptEnded(attempt: UpstreamAttempt, error: Error | undefined): void;
}

/**
 * A first body chunk up to this size that arrives in the same loop turn as the head goes to the client as text,
 * joined to the head (see onData). Larger chunks are handed over as they are: copying them would cost more than it
 * saves.
 */
const JOINED_CHUNK_MAX = 4096;

/** Why an attempt was stopped from our side (client gone, body over limit, client not reading). */
const ABORTED = new Error('attempt abandoned');

/**
 * Attempts whose response head arrived in this turn of the event loop, written to their clients together by one
 * setImmediate once the poll phase has handed over every read of the turn, rather than one by one as each read is
 * parsed. Clustered writes wake the clients' readers once per batch instead of once per response: 0.88x the CPU per
 * GET and 1.12x the req/s in the bench's GET load (docs/design.md says why; docs/benchmarks.md has the runs).
 * Two arrays used in turn; responses whose end follows their first write wait in a third for a V8 promise job (see
 * flushHeads).
 */
let headsToFlush: UpstreamAttempt[] = [];
let headsFlushing: UpstreamAttempt[] = [];
const endsToWrite: UpstreamAttempt[] = [];
const settled = Promise.resolve();

function flushHeads(): void {
  const batch = headsToFlush;
  headsToFlush = headsFlushing;
  headsFlushing = batch;
  eachThenEmpty(batch, flushHead);
}

function flushHead(attempt: UpstreamAttempt): void {
  if (attempt.flushHeadIfWaiting() && endsToWrite.push(attempt) === 1) void settled.then(writeEnds);
}

/**
 * Ends the responses whose head and first chunk flushHeads wrote. A promise job runs after the ticks those writes
 * queued, so each write has left the socket: res.end() then adds nothing, where called beside the write it would
 * queue an empty second chunk and turn the one write into a writev.
 */
function writeEnds(): void {
  eachThenEmpty(endsToWrite, endResponse);
}

function endResponse(attempt: UpstreamAttempt): void {
  attempt.endIfOpen();
}

/** Runs `step` on every attempt of `list`, then empties it; a step that throws cuts that attempt's client only. */
function eachThenEmpty(list: UpstreamAttempt[], step: (attempt: UpstreamAttempt) => void): void {
  try {
    for (let i = 0; i < list.length; i++) {
      const attempt = list[i]!;
      // One response's failure must not leave the others of this turn unwritten: one whose end waits here would hang.
      try {
        step(attempt);
      } catch (error) {
        attempt.flushFailed(error as Error);
      }
    }
  } finally {
    // pop() stays in compiled code; assigning `length` is a call into the runtime (about 450 instructions).
    while (list.length > 0) list.pop();
  }
}

export class UpstreamAttempt implements BodyEvents {
  readonly upstream: Upstream;
  readonly startedAt: number;
  /** Status the backend answered; 0 until its head arrived. */
  status = 0;
  /** The request head is being written to a backend connection: from here the backend may have seen it. */
  requestSent = false;
  private readonly owner: AttemptOwner;
  private readonly timeouts: TimeoutsConfig;
  /** undici's abort for this request once it has a connection (onConnect); null while it waits for one. */
  private abortRequest: ((error: Error) => void) | null = null;
  /** Resumes reading the response after onData returned false (the client was not taking more). */
  private resumeResponse: (() => void) | null = null;
  private ended = false;
  private abortReason: Error | null = null;
  /** Set once a body chunk went to the client: the head needs no separate flush. */
  private bodyWritten = false;
  /** The head was stored in this turn and waits in headsToFlush: the client socket has not been written yet. */
  private headPending = false;
  /** The first body chunk, as latin1 text, held with the pending head to go out joined to it. */
  private heldText: string | null = null;
  /** The response ended in the turn that brought its head: res.end() waits for flushHeads (see onComplete). */
  private endPending = false;
  /** flushHeads wrote the head and first chunk; res.end() waits for writeEnds. */
  private endWaiting = false;
  private waitTimer: NodeJS.Timeout | null = null;
  private onDrain: (() => void) | null = null;

  constructor(owner: AttemptOwner, upstream: Upstream, timeouts: TimeoutsConfig) {
    this.owner = owner;
    this.upstream = upstream;
    this.timeouts = timeouts;
    this.startedAt = performance.now();
  }

  /** Hands the request to the backend's pool; everything after arrives through the handler methods. */
  start(): void {
    const { req } = this.owner;
    const upstream = this.upstream;
    if (upstream.maxConnections > 0 && upstream.inflight >= upstream.maxConnections) {
      // Every connection is busy: the request queues in the pool. That wait is ours, so it is bounded here and,
      // when it runs out, answered as a local limit rather than held against the backend.
      const waitMs = this.timeouts.connectMs;
      this.waitTimer = setTimeout(() => this.end(new ConnectionWaitExpired(waitMs)), waitMs);
    }
    upstream.inflight++;
    if (this.owner.hostFromBackend) req.headers.host = upstream.authority;
    const options = {
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers: req.headers as Record<string, string | string[]>,
      body: this.owner.hasBody ? new RequestBody(req, req.headers['content-length'] === undefined ? this.owner.maxBodySize : 0, this) : null,
      headersTimeout: this.timeouts.responseMs,
      bodyTimeout: this.timeouts.idleMs,
      // The backend connection is ours and independent of the client's: keep it after HEAD too (undici closes it).
      reset: false,
      // Blocking holds further requests off this connection until the response head arrives, and costs a pass of
      // undici's dispatch loop per response (onHeadersComplete resumes the client). The pools send one request per
      // connection at a time (no pipelining), so the next request waits for the whole response anyway.
      blocking: false,
      // undici reads this only to hold a request back until its HTTP/2 session has nothing else in flight, as if undici
      // might retry it; balancer does its own retrying (forward.ts), and a bodiless request of any method shares a
      // session (upstream.ts, Http2Dispatcher).
      idempotent: true,
      // A constant per upstream: undici would otherwise take SNI from the Host header and reconnect when it changes.
      // undici reads it only for https; for http the backend's host name, given, spares undici deriving a name from
      // each request's Host header (a host split and two IP regular expressions) only to leave it unused.
      servername: upstream.serverName ?? upstream.target.hostname,
    } as Dispatcher.DispatchOptions;
    upstream.dispatcher.dispatch(options, this as Dispatcher.DispatchHandler);
  }

  /** Stops the attempt from our side; it reports nothing to its owner afterwards. */
  abandon(): void {
    if (this.ended) return;
    this.ended = true;
    this.release();
    this.abortReason = ABORTED;
    this.abortRequest?.(ABORTED);
  }

  onConnect(abort: (error: Error) => void): void {
    if (this.abortReason !== null) {
      // Abandoned (or given up on) while queued for a connection: nothing has been written yet.
      abort(this.abortReason);
      return;
    }
    this.abortRequest = abort;
    this.requestSent = true;
    this.clearWait();
  }

  /** The response head, as a flat list of raw names and values; false pauses the response (never here). */
  onHeaders(statusCode: number, raw: Buffer[], resume: () => void, statusMessage?: string): boolean {
    // 1xx interim answers (103 Early Hints) are not relayed; the final answer follows on the same exchange.
    if (this.ended || statusCode < 200) return true;
    this.status = statusCode;
    if (statusCode >= 500 && this.owner.retryAnswer(this, statusCode)) return true;
    this.resumeResponse = resume;
    try {
      const headers = responseHeaderList(raw, this.owner.closeAfterResponse);
      // What undici's HTTP/1.1 parser accepted (and the Connection: close added for the client) is not checked again;
      // fields the owner adds are.
      const parsedFields = this.owner.editResponseHeaders(headers, this.upstream.http1Only ? headers.length : 0);
      // Without a reason phrase from the backend, Node writes the standard one; HTTP/2 has none.
      if (isHttp2(this.owner.req)) this.owner.res.writeHead(statusCode, headers);
      else writeRelayedHead(this.owner.res, statusCode, statusMessage || undefined, headers, parsedFields);
    } catch (error) {
      // Node's parser and writer accept the same bytes today; a field one day written back refused must be a 502 for
      // this request, not an exception thrown into undici.
      this.fail(error as Error);
      return true;
    }
    // Server-Sent Events and long polls: a head whose body does not follow goes out in this turn of the event loop,
    // after the poll phase (with the body chunks and the end that came with it).
    this.headPending = true;
    if (headsToFlush.push(this) === 1) setImmediate(flushHeads);
    return true;
  }

  /** One body chunk; false pauses reading the backend until resumeResponse is called. */
  onData(chunk: Buffer): boolean {
    if (this.ended) return true;
    const first = !this.bodyWritten;
    this.bodyWritten = true;
    const res = this.owner.res;
    // The head is still a string in the response, not yet on the socket. A small first chunk kept as latin1 text
    // (byte for byte the same; text, because the chunk is a view into a read buffer) is joined to it by Node into
    // one string and goes out with it in one plain write; a Buffer would go out beside the head through the socket's
    // writev, which costs about 8,000 instructions more per response (each chunk and its encoding read back from a
    // JS array, the encoding names parsed).
    if (first && this.headPending && chunk.length <= JOINED_CHUNK_MAX && !isHttp2(this.owner.req)) {
      this.heldText = latin1Text(chunk);
      return true;
    }
    // A second chunk in the same turn: the head and the held chunk go first, in order.
    if (this.heldText !== null) this.writeHeld();
    if (res.write(chunk)) return true;
    // The client reads slower than the backend sends: stop reading the backend until it drains.
    this.onDrain ??= () => {
      this.clearWait();
      this.resumeResponse?.();
    };
    res.once('drain', this.onDrain);
    // undici's idle timer does not run while paused; a client that never reads again must not hold both sides.
    const idleMs = this.timeouts.idleMs;
    this.waitTimer ??= setTimeout(() => this.fail(new ClientStalled(idleMs)), idleMs);
    return false;
  }

  /** The end of the response: trailers as a flat list from an HTTP/1.1 backend, an object from an HTTP/2 one. */
  onComplete(trailers: Buffer[] | Record<string, string | string[]> | null | undefined): void {
    if (this.ended) return;
    const res = this.owner.res;
    // undici hands an HTTP/1.1 response without trailers an empty list: nothing to convert.
    if (trailers !== null && trailers !== undefined && !(Array.isArray(trailers) && trailers.length === 0)) {
      const list = trailerList(trailers);
      // HTTP/2's compatibility API takes trailers only as an object (a repeated field is joined, as its headers are).
      if (list.length > 0) res.addTrailers(isHttp2(this.owner.req) ? trailerObject(list) : list);
    }
    this.bodyWritten = true;
    // A response whose head came in this turn: ended from flushHeads with its head (see writeEnds).
    if (this.headPending) this.endPending = true;
    else this.endClientResponse();
    this.end(undefined);
  }

  onError(error: Error): void {
    if (this.abortReason === ABORTED) return;
    this.end(error);
  }

  /** Only for requests undici sends as upgrades, which the proxy never does (upgrades go through the tunnel). */
  onUpgrade(_statusCode: number, _headers: unknown, socket: { destroy(): void }): void {
    socket.destroy();
    this.fail(new Error('backend connection upgraded unasked'));
  }

  onBodyStarted(): void {
    this.owner.bodyStarted();
  }

  onBodyOverLimit(limit: number): void {
    this.owner.bodyOverLimit(this, limit);
  }

  /**
   * Writes the pending head (with the held first chunk, if any) or ends a response that had no body; true when the
   * response still needs its end (writeEnds), once this write has left the socket.
   */
  flushHeadIfWaiting(): boolean {
    this.headPending = false;
    const res = this.owner.res;
    // The client may have gone in between (its 'close' already settled the attempt), or the attempt was abandoned
    // and whoever abandoned it answers the client.
    if (res.destroyed || this.abortReason === ABORTED) {
      this.heldText = null;
      this.endPending = false;
      return false;
    }
    if (this.heldText !== null) {
      this.writeHeld();
      if (!this.endPending) return false;
      this.endPending = false;
      this.endWaiting = true;
      return true;
    }
    if (this.endPending) {
      this.endPending = false;
      if (!res.writableEnded) this.endClientResponse();
      return false;
    }
    if (!this.bodyWritten && !this.ended) res.flushHeaders();
    return false;
  }

  /**
   * The backend's whole response is in and waits for flushHeads or writeEnds to reach the client (later in this turn
   * of the event loop, or early in the next when it came in during the check phase): not a response to time out.
   */
  get endQueued(): boolean {
    return this.endPending || this.endWaiting;
  }

  /** The end of a response whose head and first chunk flushHeads wrote. */
  endIfOpen(): void {
    this.endWaiting = false;
    const res = this.owner.res;
    if (!res.destroyed && !res.writableEnded) this.endClientResponse();
  }

  /** Ends the client's response; what its socket could not take yet is bounded by the idle timeout (tailUnwritten). */
  private endClientResponse(): void {
    const res = this.owner.res;
    res.end();
    if (!res.writableFinished) this.owner.tailUnwritten(this.timeouts.idleMs);
  }

  private writeHeld(): void {
    const text = this.heldText!;
    this.heldText = null;
    this.owner.res.write(text, 'latin1');
  }

  /** Flushing this response's head or end threw: the client connection is cut, as for a backend failing mid-body. */
  flushFailed(error: Error): void {
    this.endPending = false;
    this.endWaiting = false;
    this.heldText = null;
    this.owner.res.destroy(error);
    this.fail(error);
  }

  private fail(error: Error): void {
    if (this.ended) return;
    this.abortRequest?.(error);
    this.end(error);
  }

  private end(error: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    if (error !== undefined) {
      // A wait that expired before undici handed us the request: undici still holds it, so it is aborted when it
      // gets its connection (before anything is written).
      if (this.abortRequest === null) this.abortReason = error;
    }
    this.release();
    this.owner.attemptEnded(this, error);
  }

  private release(): void {
    this.clearWait();
    if (this.onDrain !== null) this.owner.res.off('drain', this.onDrain);
    this.upstream.inflight--;
  }

  private clearWait(): void {
    if (this.waitTimer !== null) {
      clearTimeout(this.waitTimer);
      this.waitTimer = null;
    }
  }
}

