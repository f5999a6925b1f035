// Header rewriting between client and backend: hop-by-hop stripping and the X-Forwarded-* family.

import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';

/** RFC 9110 section 7.6.1 hop-by-hop headers, plus the de-facto ones proxies also strip. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  const tokens: string[] = [];
  for (const raw of joined.split(',')) {
    const token = raw.trim().toLowerCase();
    if (token !== '') tokens.push(token);
  }
  return tokens;
}

/** `names` by their length: a raw field name is compared only with the names of its own length. */
function namesByLength(names: Iterable<string>): ReadonlyArray<readonly string[] | undefined> {
  const table: Array<string[] | undefined> = [];
  for (const name of names) (table[name.length] ??= []).push(name);
  return table;
}

/**
 * The name in `table` that `raw` is, ignoring ASCII case, or null. Every name in the tables is lower-case letters
 * and '-': comparing a raw name char by char with its letters' case bit set spares the new string toLowerCase makes
 * for a capitalised name (Connection, Keep-Alive), and the name returned is the table's own constant, which
 * property lookups and Set lookups find without hashing a fresh string.
 */
function knownName(raw: string, table: ReadonlyArray<readonly string[] | undefined>): string | null {
  const candidates = raw.length < table.length ? table[raw.length] : undefined;
  if (candidates === undefined) return null;
  for (let c = 0; c < candidates.length; c++) {
    const name = candidates[c]!;
    let i = 0;
    for (; i < name.length; i++) {
      const want = name.charCodeAt(i);
      const got = raw.charCodeAt(i);
      // '-' (45) must match exactly; a letter matches in either case.
      if (got !== want && (want === 45 || (got | 0x20) !== want)) break;
    }
    if (i === name.length) return name;
  }
  return null;
}

const REQUEST_HOP_BY_HOP_NAMES = namesByLength(HOP_BY_HOP);

/**
 * Takes a field off the request headers. undici skips a field whose value is undefined, so for it the key stays with
 * that value: deleting a key turns the headers object into a slow dictionary (the first delete alone cost about 2,500
 * instructions a request, and every later access is slower). http-proxy (upgrades) writes every key it finds: there
 * the key goes.
 */
function dropField(headers: IncomingHttpHeaders, name: string, deleteKey: boolean): void {
  if (deleteKey) delete headers[name];
  else headers[name] = undefined;
}

/**
 * Removes hop-by-hop request headers and any header the Connection header names, in place, except those in
 * `keep`: framing (transfer-encoding) always, and the upgrade handshake for upgrades. `rawHeaders`: the request's
 * raw [name, value, ...] list when `headers` was parsed from it (HTTP/1.x), so only the few names a request carries
 * are looked at instead of every hop-by-hop name being looked up in `headers`; null (HTTP/2) looks them all up.
 */
function stripHopByHop(headers: IncomingHttpHeaders, keep: ReadonlySet<string>, rawHeaders: readonly string[] | null, deleteKeys: boolean): void {
  const connection = headers['connection'];
  if (connection !== undefined) {
    // The common values name nothing beyond the hop-by-hop fields removed below: no token list for them (and for
    // the commonest, as clients write it, no lower-cased copy either).
    const plain = connection === 'keep-alive' ? connection : typeof connection === 'string' ? connection.toLowerCase() : null;
    if (plain === 'close') {
      if (headers['close'] !== undefined && !keep.has('close')) dropField(headers, 'close', deleteKeys);
    } else if (plain !== 'keep-alive') {
      for (const token of connectionTokens(connection)) {
        if (!keep.has(token) && headers[token] !== undefined) dropField(headers, token, deleteKeys);
      }
    }
  }
  if (rawHeaders === null) {
    for (const name of HOP_BY_HOP) {
      // Deleting an absent key still costs; most requests carry none of these.
      if (headers[name] !== undefined && !keep.has(name)) dropField(headers, name, deleteKeys);
    }
    return;
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = knownName(rawHeaders[i]!, REQUEST_HOP_BY_HOP_NAMES);
    if (name !== null && !keep.has(name) && headers[name] !== undefined) dropField(headers, name, deleteKeys);
  }
}

/**
 * Ordinary requests keep nothing: undici frames the body it forwards itself, chunked when the client's was and with
 * the client's Content-Length otherwise, so the backend reads exactly the body Node parsed. Upgrades go through
 * http-proxy, which writes the head as given: their framing and handshake stay.
 */
const KEEP_FOR_REQUEST: ReadonlySet<string> = new Set();
const KEEP_FOR_UPGRADE = new Set(['transfer-encoding', 'connection', 'upgrade']);

/** Matches client addresses against the configured trustedProxies CIDRs. */
export class TrustedProxies {
  private readonly list = new net.BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [address, prefix] = cidr.split('/');
      if (address === undefined) continue;
      const type = net.isIPv6(address) ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(prefix), type);
    }
    this.empty = cidrs.length === 0;
  }

  has(address: string): boolean {
    if (this.empty || address === '') return false;
    const mapped = address.startsWith('::ffff:') ? address.slice(7) : address;
    return this.list.check(mapped, net.isIPv6(mapped) ? 'ipv6' : 'ipv4');
  }
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one client (a dual-stack listener reports IPv4 peers mapped). */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * The client's address as far as it can be trusted (what hashOn: sourceIp and rate limits by sourceIp key on): the
 * peer's, unless the peer is a trusted proxy, in which case X-Forwarded-For is read from the right, past every
 * trusted proxy, to the first address none of them vouches for (the leftmost when all are trusted). Anything further
 * left could be written by the client itself; an entry that is not an address ends the walk at the last hop trusted.
 */
export function clientAddress(remoteAddress: string, forwardedFor: string | string[] | undefined, trusted: TrustedProxies): string {
  let client = plainAddress(remoteAddress);
  if (forwardedFor === undefined || !trusted.has(client)) return client;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  for (let index = hops.length - 1; index >= 0; index--) {
    const hop = plainAddress(hops[index]!.trim());
    if (hop === '') continue;
    if (net.isIP(hop) === 0) return client;
    client = hop;
    if (!trusted.has(hop)) break;
  }
  return client;
}

/** The fields prepareRequestHeaders sets on every request (names as written there). */
export const FORWARDED_FIELDS = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'] as const;

export interface ClientFacts {
  readonly remoteAddress: string;
  readonly encrypted: boolean;
  readonly trusted: boolean;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Rewrites request headers for the backend, in place. Incoming X-Forwarded-* are extended only when the
 * immediate client is a trusted proxy; from anyone else they are replaced, so clients cannot forge them.
 * `rawHeaders`: the raw list `headers` was parsed from (HTTP/1.x), null for HTTP/2 (see stripHopByHop).
 */
export function prepareRequestHeaders(headers: IncomingHttpHeaders, client: ClientFacts, upgrade: boolean, rawHeaders: readonly string[] | null = null): void {
  stripHopByHop(headers, upgrade ? KEEP_FOR_UPGRADE : KEEP_FOR_REQUEST, rawHeaders, upgrade);
  if (upgrade) {
    // Only the upgrade token may survive in Connection; anything else it names was already removed.
    headers['connection'] = 'upgrade';
  }
  const host = headers.host ?? '';
  const proto = client.encrypted ? 'https' : 'http';
  const priorFor = single(headers['x-forwarded-for']);
  if (client.trusted) {
    headers['x-forwarded-for'] = priorFor === undefined || priorFor === '' ? client.remoteAddress : `${priorFor}, ${client.remoteAddress}`;
    if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = proto;
    if (headers['x-forwarded-host'] === undefined) headers['x-forwarded-host'] = host;
  } else {
    headers['x-forwarded-for'] = client.remoteAddress;
    headers['x-forwarded-proto'] = proto;
    headers['x-forwarded-host'] = host;
    // RFC 7239 carries the same claims; from an untrusted client it can only be a forgery.
    if (headers['forwarded'] !== undefined) dropField(headers, 'forwarded', upgrade);
  }
}

/**
 * Hop-by-hop fields of a response. Trailer is not one (RFC 9110 section 6.6.2): it announces the trailer fields
 * that are passed on after the body.
 */
const RESPONSE_HOP_BY_HOP = new Set([...HOP_BY_HOP].filter((name) => name !== 'trailer'));

/** Those names by length (see knownName). */
const RESPONSE_HOP_BY_HOP_NAMES = namesByLength(RESPONSE_HOP_BY_HOP);

/** A Buffer with Node's own latin1 conversion, the one toString('latin1') dispatches to after parsing its arguments. */
type Latin1Sliceable = Buffer & { latin1Slice(start: number, end: number): string };

/**
 * Whether `proto` has latin1Slice and it converts as toString('latin1') does: it is not documented, so it is used
 * only after this check (at load), and toString otherwise.
 */
export function detectLatin1Slice(proto: object = Buffer.prototype): boolean {
  if (typeof (proto as Partial<Latin1Sliceable>).latin1Slice !== 'function') return false;
  const probe = Buffer.from([0x00, 0x09, 0x41, 0x7f, 0x80, 0xc3, 0xa9, 0xe9, 0xff]);
  return (proto as Latin1Sliceable).latin1Slice.call(probe, 0, probe.length) === probe.toString('latin1');
}

const LATIN1_SLICE = detectLatin1Slice();

/**
 * `bytes` as a string of the same bytes (latin1), as bytes.toString('latin1') makes it: without toString's argument
 * and encoding-name handling where this Node has latin1Slice (about 450 instructions less per call).
 */
export function latin1Text(bytes: Buffer): string {
  return LATIN1_SLICE ? (bytes as Latin1Sliceable).latin1Slice(0, bytes.length) : bytes.toString('latin1');
}

/** Raw fields up to this many bytes go through FIELD_TEXTS; longer ones are converted each time. */
const MAX_REMEMBERED_FIELD = 64;
const FIELD_SLOTS = 256;
/**
 * The strings last made for raw fields, by a hash of their length and end bytes, two to a slot: the latest at
 * `slot`, the one before at `slot + FIELD_SLOTS`. Header names repeat from one response to the next, and so do many
 * values (Content-Type, Content-Length, Keep-Alive): while the bytes match, a short byte comparison hands back the
 * same string instead of a native call making a new one for every field. Two to a slot, so that two fields of every
 * response that share one (Content-Length and a length of "6" do) do not push each other out each time.
 * FIELD_BYTES holds a copy of each remembered string's bytes: comparing bytes with bytes costs about a third less
 * than comparing a string's characters with bytes (about 1,000 instructions per response of five fields).
 */
const FIELD_TEXTS: Array<string | undefined> = new Array<string | undefined>(2 * FIELD_SLOTS).fill(undefined);
const FIELD_BYTES: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(2 * FIELD_SLOTS).fill(undefined);
/**
 * What each remembered string is as a response field name: the hop-by-hop name it is (knownName), null for any other
 * name, undefined until first asked. A name seen before is then classified without its characters being compared
 * again (about 1,500 instructions per response of five fields, two of them hop-by-hop).
 */
const FIELD_HOP_BY_HOP: Array<string | null | undefined> = new Array<string | null | undefined>(2 * FIELD_SLOTS).fill(undefined);

function sameBytes(remembered: Uint8Array | undefined, field: Buffer, length: number): boolean {
  if (remembered === undefined || remembered.length !== length) return false;
  for (let i = 0; i < length; i++) if (remembered[i] !== field[i]) return false;
  return true;
}

/** The FIELD_TEXTS slot that now holds `field`'s string (made and remembered if needed); -1 for a field not remembered. */
function fieldSlot(field: Buffer): number {
  const length = field.length;
  if (length === 0 || length > MAX_REMEMBERED_FIELD) return -1;
  const slot = (length * 31 + field[0]! * 7 + field[length - 1]!) & (FIELD_SLOTS - 1);
  if (sameBytes(FIELD_BYTES[slot], field, length)) return slot;
  const before = slot + FIELD_SLOTS;
  if (sameBytes(FIELD_BYTES[before], field, length)) return before;
  FIELD_TEXTS[before] = FIELD_TEXTS[slot];
  FIELD_BYTES[before] = FIELD_BYTES[slot];
  FIELD_HOP_BY_HOP[before] = FIELD_HOP_BY_HOP[slot];
  FIELD_TEXTS[slot] = latin1Text(field);
  // A copy: `field` is a view into the socket's read buffer, which is reused.
  FIELD_BYTES[slot] = new Uint8Array(field);
  FIELD_HOP_BY_HOP[slot] = undefined;
  return slot;
}

/** A raw header field as undici hands it over (bytes) or as Node parsed it (string), as a string. */
function text(field: Buffer | string): string {
  if (typeof field === 'string') return field;
  const slot = fieldSlot(field);
  return slot < 0 ? latin1Text(field) : FIELD_TEXTS[slot]!;
}

/**
 * The backend's response headers as the client gets them: a flat [name, value, ...] list in the backend's order
 * and case (repeated fields such as Set-Cookie stay separate), without hop-by-hop fields. Written with one
 * `writeHead`, it spares Node a `setHeader` call per field. The client connection is ours, not the backend's:
 * `close` adds `Connection: close`; otherwise Node writes Connection (and Keep-Alive) from the client's request
 * and the response's framing, e.g. close for an HTTP/1.0 client when the body has no length.
 */
export function responseHeaderList(rawHeaders: readonly (Buffer | string)[], close: boolean): string[] {
  const list: string[] = [];
  let named: string[] | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i]!;
    let name: string;
    let hopByHop: string | null | undefined;
    const slot = typeof raw === 'string' ? -1 : fieldSlot(raw);
    if (slot < 0) {
      name = typeof raw === 'string' ? raw : latin1Text(raw);
      hopByHop = knownName(name, RESPONSE_HOP_BY_HOP_NAMES);
    } else {
      name = FIELD_TEXTS[slot]!;
      hopByHop = FIELD_HOP_BY_HOP[slot];
      if (hopByHop === undefined) hopByHop = FIELD_HOP_BY_HOP[slot] = knownName(name, RESPONSE_HOP_BY_HOP_NAMES);
    }
    // Hop-by-hop fields are left out as they come (every keep-alive backend sends Connection and Keep-Alive).
    if (hopByHop !== null) {
      if (hopByHop === 'connection') named = fieldsNamedBy(text(rawHeaders[i + 1]!), named);
      continue;
    }
    list.push(name, text(rawHeaders[i + 1]!));
  }
  // A Connection header that names other fields (rare): they go too, wherever they stood.
  if (named !== null) {
    let kept = 0;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      if (named.includes(name.toLowerCase())) continue;
      list[kept++] = name;
      list[kept++] = list[i + 1]!;
    }
    list.length = kept;
  }
  if (close) list.push('connection', 'close');
  return list;
}

/**
 * Adds the field names a response's Connection header lists to `named`. The common values (keep-alive, close)
 * name no field beyond the hop-by-hop ones already removed, and cost no token list.
 */
function fieldsNamedBy(connection: string, named: string[] | null): string[] | null {
  // As backends write it (Node does), before a lower-cased copy is made.
  if (connection === 'keep-alive') return named;
  const lower = connection.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close') return named;
  for (const token of connectionTokens(lower)) {
    if (token !== 'close' && !RESPONSE_HOP_BY_HOP.has(token)) (named ??= []).push(token);
  }
  return named;
}

/**
 * Trailer fields as [name, value] pairs for `res.addTrailers`, in the backend's order and case: a flat raw list over
 * HTTP/1.1, the trailers object of an HTTP/2 stream otherwise (undici hands that over as it is).
 */
export function trailerList(rawTrailers: readonly (Buffer | string)[] | Readonly<Record<string, string | string[] | undefined>>): Array<[string, string]> {
  const list: Array<[string, string]> = [];
  if (!Array.isArray(rawTrailers)) {
    for (const [name, value] of Object.entries(rawTrailers)) {
      if (value === undefined || name.startsWith(':')) continue;
      for (const one of Array.isArray(value) ? value : [value]) list.push([name, one]);
    }
    return list;
  }
  for (let i = 0; i + 1 < rawTrailers.length; i += 2) list.push([text(rawTrailers[i]!), text(rawTrailers[i + 1]!)]);
  return list;
}

/** Trailer pairs as one object, a repeated field's values joined with ", " (RFC 9110 section 5.3). */
export function trailerObject(list: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of list) out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  return out;
}
