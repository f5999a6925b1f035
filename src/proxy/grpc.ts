// gRPC through the data plane: which requests are gRPC, their deadline (grpc-timeout), and errors a gRPC client can read (HTTP 200 with grpc-status, never an HTML or JSON body).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';

/** The gRPC status codes balancer itself answers with (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export function isGrpcRequest(req: IncomingMessage): boolean {
  const type = req.headers['content-type'];
  return typeof type === 'string' && type.startsWith('application/grpc');
}

const TIMEOUT_UNITS_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/** `grpc-timeout: 250m` as milliseconds (at least 1); null when absent or not the spec's 1-8 digits and a unit. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string') return null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value.trim());
  if (match === null) return null;
  return Math.max(1, Math.ceil(Number(match[1]) * TIMEOUT_UNITS_MS[match[2]!]!));
}

/**
 * The status for an answer balancer writes itself, as Envoy maps HTTP to gRPC: no backend, a connect failure or an
 * overloaded pool is UNAVAILABLE (the client may retry elsewhere), a timeout DEADLINE_EXCEEDED, no route UNIMPLEMENTED.
 */
export function grpcStatusForHttp(status: number): number {
  if (status === 504 || status === 408) return GrpcStatus.DEADLINE_EXCEEDED;
  if (status === 502 || status === 503 || status === 429) return GrpcStatus.UNAVAILABLE;
  if (status === 404) return GrpcStatus.UNIMPLEMENTED;
  if (status === 413 || status === 431) return GrpcStatus.RESOURCE_EXHAUSTED;
  if (status === 401) return GrpcStatus.UNAUTHENTICATED;
  if (status === 403) return GrpcStatus.PERMISSION_DENIED;
  if (status === 400) return GrpcStatus.INTERNAL;
  return GrpcStatus.UNKNOWN;
}

/** grpc-message is percent-encoded (the gRPC HTTP/2 protocol spec); clients decode it. */
function grpcMessage(message: string): string {
  return encodeURIComponent(message);
}

/**
 * A trailers-only answer: one HEADERS frame that ends the stream, with :status 200 and the gRPC status. Over
 * HTTP/1.1 (no gRPC client speaks it, but a probe may) the same fields as an empty 200 response.
 */
export function writeGrpcError(res: ServerResponse, status: number, message: string): void {
  const fields = { 'content-type': 'application/grpc', 'grpc-status': String(status), 'grpc-message': grpcMessage(message) };
  const stream = (res as ServerResponse & { stream?: ServerHttp2Stream }).stream;
  if (stream !== undefined) {
    if (stream.destroyed || stream.headersSent) return;
    stream.respond({ ':status': 200, ...fields }, { endStream: true });
    return;
  }
  res.writeHead(200, { ...fields, 'content-length': 0 });
  res.end();
}

/** A response already under way (a backend lost mid-stream, a deadline): ended with the status in its trailers. */
export function endGrpcWithStatus(res: ServerResponse, status: number, message: string): void {
  if (res.writableEnded) return;
  res.addTrailers({ 'grpc-status': String(status), 'grpc-message': grpcMessage(message) });
  res.end();
}
