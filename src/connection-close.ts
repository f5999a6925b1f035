// Ends a client connection after an error answer: the answer is flushed, then the socket is destroyed within a bounded time whatever the client does.
//
// `socket.end()` alone only half-closes: Node's HTTP sockets allow half-open connections, so the socket then waits
// for the client's FIN. A client that never reads and never closes (slowloris) would keep an fd and a
// `maxConnections` slot for as long as it likes. Destroying at once instead could turn the close into a reset
// that discards the answer before the client read it (the client may still be sending), so the socket lingers
// briefly, the way nginx's lingering close does, and is destroyed when the client hangs up or the linger ends.

import type { Duplex } from 'node:stream';

/** How long an answered connection may wait for the client to read the answer and hang up. */
export const CLOSE_LINGER_MS = 1_000;

/** Sockets whose connection is ending: nothing more is served on them. */
const closing = new WeakSet<Duplex>();

/** True once endConnection or destroyAfterLinger was called for this socket: a request parsed from it now must not be served. */
export function isClosing(socket: Duplex): boolean {
  return closing.has(socket) || socket.destroyed;
}

/** Writes `answer` (a complete raw HTTP response), half-closes, and destroys the socket within CLOSE_LINGER_MS. */
export function endConnection(socket: Duplex, answer: string): void {
  if (isClosing(socket)) {
    // A second error on a connection already ending (the parser keeps reading during the linger): the timer decides.
    return;
  }
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(answer);
  destroyAfterLinger(socket);
}

/** Bounds the life of a connection whose last answer is written or being written: destroyed within CLOSE_LINGER_MS. */
export function destroyAfterLinger(socket: Duplex, lingerMs: number = CLOSE_LINGER_MS): void {
  if (closing.has(socket)) return;
  closing.add(socket);
  if (socket.destroyed) return;
  // Errors while lingering (the client resets) end the socket too; without a listener they would be thrown.
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

type HttpSocket = Duplex & { _httpMessage?: { headersSent?: boolean } | null; bytesWritten?: number };

/**
 * Whether a `clientError` may still be answered: the client is there and no response of ours has started on the
 * socket. Bytes after a request that said `Connection: close` (HPE_CLOSED_CONNECTION) follow a request that gets,
 * or already got, its own answer: a second one would reach a client that was told the connection ends.
 */
export function canAnswerClientError(errorCode: string | undefined, socket: Duplex): boolean {
  if (errorCode === 'ECONNRESET' || !socket.writable) return false;
  const http = socket as HttpSocket;
  if (errorCode === 'HPE_CLOSED_CONNECTION' && (http._httpMessage != null || (http.bytesWritten ?? 0) > 0)) return false;
  return http._httpMessage?.headersSent !== true;
}

/** Ends a connection whose `clientError` is not answered: at once, unless the answer to its last request may still be flushing. */
export function dropAfterClientError(errorCode: string | undefined, socket: Duplex): void {
  if (errorCode === 'HPE_CLOSED_CONNECTION' && socket.writable) destroyAfterLinger(socket);
  else socket.destroy();
}
