// Writes a relayed response head into an HTTP/1 ServerResponse without Node checking again the fields undici's parser already accepted.
//
// res.writeHead(status, list) runs two regular expressions over every field (the name a token, the value free of
// control characters) and lower-cases each name to look for the framing fields: about 7,700 instructions for a head
// of four fields, 4,600 more than the same head written here. The fields a backend sent have passed undici's HTTP/1.1
// parser, which refuses exactly the names and values Node's writer refuses (test/proxy/response-head.test.ts sweeps
// every byte through a real backend); the fields the proxy adds are checked here with Node's own validators.
//
// This writes what Node's writeHead and its internal _storeHeader would have written and sets the same response
// state (framing, keep-alive), through ServerResponse's internal fields. Node's internals are not an interface: the
// fast writer is used only when both functions are, text for text, the ones it was written against (Node 20.20) and
// a probe at load writes a set of heads both ways with identical results; otherwise every head goes through
// res.writeHead, as before.

import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { isFieldNamed } from './header-rules.js';

/** SHA-256 of the source text of ServerResponse.prototype.writeHead and OutgoingMessage.prototype._storeHeader. */
const KNOWN_WRITE_HEAD = new Set(['18ff17257fea6ba282bdb41a718d65d12e57e9190648b4a77699523e0348b055']);
const KNOWN_STORE_HEADER = new Set(['87f357f1def4079fb21b4eba3cd077d1daacab3dc144213d632f477e506d2aad']);

/** Node's checks of the Connection and Transfer-Encoding values it writes (_http_outgoing, _http_common). */
const CONNECTION_CLOSE = /(?:^|\W)close(?:$|\W)/i;
const TRANSFER_CHUNKED = /(?:^|\W)chunked(?:$|\W)/i;
/** What Node refuses in a status message (checkInvalidHeaderChar). */
const INVALID_FIELD_CHARACTER = /[^\t\x20-\x7e\x80-\xff]/;

/** The fields of a ServerResponse this writer reads and sets: Node's own, internal. */
interface ResponseState {
  statusCode: number;
  statusMessage: string;
  sendDate: boolean;
  shouldKeepAlive: boolean;
  useChunkedEncodingByDefault: boolean;
  chunkedEncoding: boolean;
  maxRequestsOnConnectionReached: boolean;
  agent: unknown;
  _header: string | null;
  _headerSent: boolean;
  _hasBody: boolean;
  _last: boolean;
  _contentLength: number | null;
  _removedConnection: boolean;
  _removedContLen: boolean;
  _removedTE: boolean;
  _defaultKeepAlive: boolean;
  _keepAliveTimeout: number;
  _maxRequestsPerSocket: number;
  _expect_continue: boolean;
  _sent100: boolean;
}

/** The error Node throws for a character it does not write (ERR_INVALID_CHAR). */
function invalidCharacter(what: string): Error {
  return Object.assign(new TypeError(`Invalid character in ${what}`), { code: 'ERR_INVALID_CHAR' });
}

let dateText: string | undefined;

function clearDate(): void {
  dateText = undefined;
}

/** The Date field's value, made at most once a second, as Node makes its own. */
function httpDate(): string {
  if (dateText === undefined) {
    const now = new Date();
    dateText = now.toUTCString();
    setTimeout(clearDate, 1000 - now.getMilliseconds()).unref();
  }
  return dateText;
}

/**
 * Node's writeHead(statusCode, statusMessage, list) and _storeHeader for a flat list of string fields, without the
 * per-field validation; the same bytes and the same state. `statusMessage` is checked (a backend's reason phrase is
 * not a field: undici's parser lets more through there).
 */
function storeHead(res: ResponseState, statusCode: number, statusMessage: string | undefined, list: readonly string[]): void {
  if (statusMessage !== undefined && statusMessage !== '') res.statusMessage = statusMessage;
  else if (!res.statusMessage) res.statusMessage = http.STATUS_CODES[statusCode] ?? 'unknown';
  res.statusCode = statusCode;
  const message = res.statusMessage;
  if (message !== http.STATUS_CODES[statusCode] && INVALID_FIELD_CHARACTER.test(message)) throw invalidCharacter('statusMessage');
  let header = `HTTP/1.1 ${statusCode} ${message}\r\n`;
  if (statusCode === 204 || statusCode === 304 || (statusCode >= 100 && statusCode <= 199)) res._hasBody = false;
  if (res._expect_continue && !res._sent100) res.shouldKeepAlive = false;
  let connection = false;
  let contentLength = false;
  let transferEncoding = false;
  let date = false;
  let expect = false;
  let trailer = false;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    let value: string = list[i + 1]!;
    // Node looks only at names of 4 to 17 characters (matchHeader) and at Content-Disposition (19).
    switch (name.length) {
      case 4:
        if (isFieldNamed(name, 'date')) date = true;
        break;
      case 6:
        if (isFieldNamed(name, 'expect')) expect = true;
        break;
      case 7:
        if (isFieldNamed(name, 'trailer')) trailer = true;
        break;
      case 10:
        if (isFieldNamed(name, 'connection')) {
          connection = true;
          res._removedConnection = false;
          if (CONNECTION_CLOSE.test(value)) res._last = true;
          else res.shouldKeepAlive = true;
        } else if (isFieldNamed(name, 'keep-alive')) {
          res._defaultKeepAlive = false;
        }
        break;
      case 14:
        if (isFieldNamed(name, 'content-length')) {
          contentLength = true;
          res._contentLength = +value;
          res._removedContLen = false;
        }
        break;
      case 17:
        if (isFieldNamed(name, 'transfer-encoding')) {
          transferEncoding = true;
          res._removedTE = false;
          if (TRANSFER_CHUNKED.test(value)) res.chunkedEncoding = true;
        }
        break;
      case 19:
        // Once a length is known, Node turns this value into bytes (latin1) and checks and writes it read back as
        // UTF-8: a byte sequence that is not UTF-8 is refused, one that is becomes its characters. The same here.
        if (res._contentLength && isFieldNamed(name, 'content-disposition')) {
          value = Buffer.from(value, 'latin1').toString();
          if (INVALID_FIELD_CHARACTER.test(value)) throw invalidCharacter('header content');
        }
        break;
    }
    header += name + ': ' + value + '\r\n';
  }
  if (res.sendDate && !date) header += 'Date: ' + httpDate() + '\r\n';
  if (res.chunkedEncoding && (statusCode === 204 || statusCode === 304)) {
    res.chunkedEncoding = false;
    res.shouldKeepAlive = false;
  }
  if (res._removedConnection) {
    res._last = !res.shouldKeepAlive;
  } else if (!connection) {
    const sendKeepAlive = res.shouldKeepAlive && (contentLength || res.useChunkedEncodingByDefault || res.agent);
    if (sendKeepAlive && res.maxRequestsOnConnectionReached) {
      header += 'Connection: close\r\n';
    } else if (sendKeepAlive) {
      header += 'Connection: keep-alive\r\n';
      if (res._keepAliveTimeout && res._defaultKeepAlive) {
        const max = ~~res._maxRequestsPerSocket > 0 ? `, max=${res._maxRequestsPerSocket}` : '';
        header += `Keep-Alive: timeout=${Math.floor(res._keepAliveTimeout / 1000)}${max}\r\n`;
      }
    } else {
      res._last = true;
      header += 'Connection: close\r\n';
    }
  }
  if (!contentLength && !transferEncoding) {
    if (!res._hasBody) {
      res.chunkedEncoding = false;
    } else if (!res.useChunkedEncodingByDefault) {
      res._last = true;
    } else if (!trailer && !res._removedContLen && typeof res._contentLength === 'number') {
      header += 'Content-Length: ' + res._contentLength + '\r\n';
    } else if (!res._removedTE) {
      header += 'Transfer-Encoding: chunked\r\n';
      res.chunkedEncoding = true;
    } else {
      res._last = true;
    }
  }
  if (res.chunkedEncoding !== true && trailer) {
    throw Object.assign(new Error('Trailers are invalid with this transfer encoding'), { code: 'ERR_HTTP_TRAILER_INVALID' });
  }
  res._header = header + '\r\n';
  res._headerSent = false;
  // Node sends a head with Expect at once.
  if (expect) (res as unknown as ServerResponse).flushHeaders();
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The symbol under which Node keeps headers set one by one (setHeader); null when a response has none. */
function outHeadersSymbol(res: object): symbol | undefined {
  return Object.getOwnPropertySymbols(res).find((symbol) => symbol.description === 'kOutHeaders');
}

/** One head of the load-time probe: a request, how the server set up its response, and the fields. */
export interface HeadProbe {
  readonly method: string;
  readonly httpVersion: '1.0' | '1.1';
  readonly te?: string | undefined;
  readonly keepAlive: boolean;
  readonly keepAliveTimeout: number;
  readonly maxRequestsPerSocket: number;
  readonly lastRequest: boolean;
  readonly status: number;
  readonly statusMessage?: string | undefined;
  readonly list: readonly string[];
}

/** A ServerResponse set up as Node's server sets one up for such a request (parserOnIncoming). */
export function probeResponse(probe: HeadProbe): ServerResponse {
  const [major, minor] = probe.httpVersion === '1.0' ? [1, 0] : [1, 1];
  const headers = probe.te === undefined ? {} : { te: probe.te };
  const req = { method: probe.method, httpVersionMajor: major, httpVersionMinor: minor, headers, url: '/' } as unknown as IncomingMessage;
  const res = new http.ServerResponse(req);
  const state = res as unknown as ResponseState;
  if (probe.httpVersion === '1.1') state.shouldKeepAlive = probe.keepAlive;
  state._keepAliveTimeout = probe.keepAliveTimeout;
  state._maxRequestsPerSocket = probe.maxRequestsPerSocket;
  state.maxRequestsOnConnectionReached = probe.lastRequest;
  // Fixed, so both writers' Date fields agree.
  res.sendDate = false;
  return res;
}

/** What a head left in its response: the bytes and the state that decides the framing and the connection. */
export function headOutcome(res: ServerResponse): string {
  const s = res as unknown as ResponseState;
  return JSON.stringify([s._header, s._headerSent, s.statusCode, s.statusMessage, s._hasBody, s._last, s.chunkedEncoding, s.shouldKeepAlive,
    s._contentLength, s._removedConnection, s._removedContLen, s._removedTE, s._defaultKeepAlive]);
}

/** Both writers on one probe: the outcome of Node's writeHead and of storeHead (or the errors they threw). */
export function writeBothWays(probe: HeadProbe): { node: string; relayed: string } {
  const outcome = (write: (res: ServerResponse) => void): string => {
    const res = probeResponse(probe);
    try {
      write(res);
      return headOutcome(res);
    } catch (error) {
      return `throws ${(error as { code?: string }).code ?? String(error)}`;
    }
  };
  return {
    node: outcome((res) => (probe.statusMessage === undefined ? res.writeHead(probe.status, probe.list as string[]) : res.writeHead(probe.status, probe.statusMessage, probe.list as string[]))),
    relayed: outcome((res) => storeHead(res as unknown as ResponseState, probe.status, probe.statusMessage, probe.list)),
  };
}

const BASE: HeadProbe = { method: 'GET', httpVersion: '1.1', keepAlive: true, keepAliveTimeout: 5_000, maxRequestsPerSocket: 0, lastRequest: false, status: 200, list: [] };

/** Heads that take every branch of the framing and keep-alive logic. */
export const LOAD_PROBES: readonly HeadProbe[] = [
  { ...BASE, statusMessage: 'OK', list: ['Content-Type', 'text/plain', 'Content-Length', '5', 'Date', 'Mon, 30 Nov 2026 00:00:00 GMT'] },
  { ...BASE, list: ['transfer-encoding', 'chunked', 'Trailer', 'x-sum'] },
  { ...BASE, list: ['content-type', 'text/event-stream'] },
  { ...BASE, method: 'HEAD', list: ['content-length', '10'] },
  { ...BASE, status: 204, list: ['Transfer-Encoding', 'chunked'] },
  { ...BASE, status: 304, statusMessage: 'Not Modified', list: ['ETag', '"x"'] },
  { ...BASE, httpVersion: '1.0', list: ['content-length', '3'] },
  { ...BASE, httpVersion: '1.0', te: 'chunked', list: [] },
  { ...BASE, keepAlive: false, list: ['Content-Length', '2'] },
  { ...BASE, lastRequest: true, maxRequestsPerSocket: 3, list: ['Content-Length', '2'] },
  { ...BASE, maxRequestsPerSocket: 7, list: ['Content-Length', '2', 'Keep-Alive', 'timeout=1'] },
  { ...BASE, list: ['Connection', 'close', 'content-length', '1'] },
  { ...BASE, list: ['connection', 'keep-alive'] },
  { ...BASE, list: ['Content-Length', '4', 'Content-Disposition', 'attachment; filename="\u00e9.txt"'] },
  { ...BASE, list: ['Content-Length', '4', 'Content-Disposition', 'attachment; filename="\u00c3\u00a9.txt"'] },
  { ...BASE, list: ['Content-Disposition', 'attachment; filename="\u00e9.txt"', 'Content-Length', '4'] },
  { ...BASE, list: ['trailer', 'x-sum', 'content-length', '4'] },
  { ...BASE, status: 599, statusMessage: 'Custom Reason', list: ['Set-Cookie', 'a=1', 'set-cookie', 'b=2'] },
  { ...BASE, statusMessage: 'bad\u0001reason', list: [] },
];

/**
 * Whether the fast writer may be used in this process: Node's two functions are the ones it copies, headers set one by
 * one live where it expects them, and every probe head comes out the same both ways.
 */
export function detectFastHeadWriter(
  writeHead: unknown = http.ServerResponse.prototype.writeHead,
  storeHeader: unknown = (http.OutgoingMessage.prototype as unknown as { _storeHeader?: unknown })._storeHeader,
  probes: readonly HeadProbe[] = LOAD_PROBES,
): { ok: true; outHeaders: symbol } | { ok: false; why: string } {
  if (typeof writeHead !== 'function' || !KNOWN_WRITE_HEAD.has(sha256(String(writeHead)))) return { ok: false, why: 'writeHead is not the known one' };
  if (typeof storeHeader !== 'function' || !KNOWN_STORE_HEADER.has(sha256(String(storeHeader)))) return { ok: false, why: '_storeHeader is not the known one' };
  const outHeaders = outHeadersSymbol(probeResponse(BASE));
  if (outHeaders === undefined) return { ok: false, why: 'no kOutHeaders' };
  for (const probe of probes) {
    const { node, relayed } = writeBothWays(probe);
    if (node !== relayed) return { ok: false, why: `probe differs: ${node} / ${relayed}` };
  }
  return { ok: true, outHeaders };
}

const detected = detectFastHeadWriter();
let outHeaders: symbol | null = detected.ok ? detected.outHeaders : null;

/** Whether relayed heads skip Node's second check in this process (false: every head goes through writeHead). */
export function fastHeadWriterInUse(): boolean {
  return outHeaders !== null;
}

/** For tests: run with the fast writer off (false) or as detected (true). */
export function useFastHeadWriter(enabled: boolean): void {
  const found = detectFastHeadWriter();
  outHeaders = enabled && found.ok ? found.outHeaders : null;
}

/**
 * Writes a relayed head: `list` is flat [name, value, ...]; its first `checkedFields` entries (names and values) came
 * from undici's HTTP/1.1 parser and are not checked again; the rest are checked with Node's validators (they throw as
 * writeHead would). An HTTP/2 response, or one with headers already set one by one, goes through writeHead.
 */
export function writeRelayedHead(res: ServerResponse, statusCode: number, statusMessage: string | undefined, list: string[], checkedFields: number): void {
  const symbol = outHeaders;
  if (symbol === null || (res as unknown as Record<symbol, unknown>)[symbol] !== null || (res as { stream?: unknown }).stream !== undefined) {
    if (statusMessage) res.writeHead(statusCode, statusMessage, list);
    else res.writeHead(statusCode, list);
    return;
  }
  if ((res as unknown as ResponseState)._header) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
  for (let i = checkedFields; i < list.length; i += 2) {
    http.validateHeaderName(list[i]!);
    http.validateHeaderValue(list[i]!, list[i + 1]!);
  }
  storeHead(res as unknown as ResponseState, statusCode, statusMessage, list);
}
