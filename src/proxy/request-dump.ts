// Spares a forwarded HTTP/1 request without a body the read to its end that Node's server gives it after the response.
//
// When a response finishes, Node's server "dumps" the request if nobody read it (IncomingMessage.prototype._dump):
// it resumes the stream so that a body still coming is drained. A request without a body (no Content-Length, no
// Transfer-Encoding: the parser ends it with its head) has nothing to drain: resuming it only runs the stream
// machinery to emit 'end' and then 'close', to no listener, through three process.nextTick callbacks (about 5,000
// instructions per request, as much as a third of balancer's own work on a GET). The proxy reads such a request's
// head only, and nothing listens for its 'end' or 'close'; _dump does nothing for a request already marked dumped, so
// the proxy marks it so. It also marks its end as emitted (readableEnded, which such a request has reached in all but
// the event): Node lets go of a request from the connection's parser once it has ended and, for one not yet ended,
// waits for its 'end'; an idle keep-alive connection would otherwise hold its last request until the next one. The
// request is not destroyed; a client that goes away mid-response still destroys it and its response as before.
//
// _dump and the stream's end flag are Node's internals: the marks are set only when _dump's source text is the one
// this was written against (Node 20.20) and a probe at load finds that a request so marked reads as ended and, dumped,
// neither flows nor schedules a read; otherwise every request is dumped by Node as before.

import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';

/** SHA-256 of the source text of IncomingMessage.prototype._dump. */
const KNOWN_DUMP = new Set(['cc9e0dfc34ee1b1a45289c9f6093511a7b187f89fb5592a4db23b33b3195400c']);

/** The fields of an IncomingMessage this reads and sets: Node's own, internal. */
interface DumpState {
  _dumped: boolean;
  _readableState: { resumeScheduled?: boolean; endEmitted?: boolean };
}

/** Marks a request dumped and its end emitted. */
function markRead(req: DumpState): void {
  req._dumped = true;
  req._readableState.endEmitted = true;
}

/** Whether `dump` (as IncomingMessage.prototype._dump) is the known one and leaves a request marked dumped alone. */
export function detectDumpSkip(
  dump: unknown = (http.IncomingMessage.prototype as unknown as { _dump?: unknown })._dump,
  known: ReadonlySet<string> = KNOWN_DUMP,
): { ok: true } | { ok: false; why: string } {
  if (typeof dump !== 'function') return { ok: false, why: 'no _dump' };
  if (!known.has(createHash('sha256').update(String(dump)).digest('hex'))) return { ok: false, why: '_dump is not the known one' };
  // A socket that is not readable: were the mark ignored, the scheduled read would not touch it.
  const probe = new http.IncomingMessage({ readable: false } as unknown as IncomingMessage['socket']);
  const state = probe as unknown as DumpState;
  if (state._readableState === undefined) return { ok: false, why: 'no _readableState' };
  markRead(state);
  if (!probe.readableEnded) return { ok: false, why: 'a request marked ended does not read as ended' };
  (dump as (this: IncomingMessage) => void).call(probe);
  if (probe.readableFlowing !== null || state._readableState.resumeScheduled !== false) return { ok: false, why: 'a request marked dumped was read' };
  return { ok: true };
}

let skipping = detectDumpSkip().ok;

/** Whether bodiless requests skip Node's dump in this process. */
export function dumpSkipInUse(): boolean {
  return skipping;
}

/** For tests: run with the skip off (false) or as detected (true). */
export function useDumpSkip(enabled: boolean): void {
  skipping = enabled && detectDumpSkip().ok;
}

/**
 * Marks an HTTP/1 request without a body (its whole message parsed with its head) as read to its end, so that Node
 * does not read it again after the response. Only for requests nothing listens to for 'data', 'end' or 'close'.
 */
export function skipDumpOfBodiless(req: IncomingMessage): void {
  if (skipping) markRead(req as unknown as DumpState);
}
