// HTTP plumbing of the admin API: the one error-code-to-status table, JSON replies and size-limited body reading.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { BalancerError, type ErrorBody, type ErrorCode } from '../errors.js';

/** Every BalancerError code the admin API answers with something other than 500 INTERNAL. */
const ERROR_STATUS: Readonly<Partial<Record<ErrorCode, number>>> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  ADMIN_TOKEN_NOT_SET: 403,
  WRITES_DISABLED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  MEMBERSHIP_CHANGE_PENDING: 409,
  UNSAFE_CHANGE: 409,
  VERSION_MISMATCH: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  CONFIG_INVALID: 422,
  CONFIG_IO: 500,
  NO_LEADER: 503,
  NOT_LEADER: 503,
  PROPOSAL_DROPPED: 503,
  PROPOSAL_TIMEOUT: 503,
  RAFT_FAILED: 503,
};

/** Seconds a client should wait before retrying a 503: about one election timeout. */
const RETRY_AFTER_SECONDS = 1;

export interface MappedError {
  readonly status: number;
  readonly body: ErrorBody;
  readonly headers: Readonly<Record<string, string>>;
  /** True when the caller should log the cause: the client only sees INTERNAL. */
  readonly internal: boolean;
}

export function mapError(error: unknown, allow?: readonly string[]): MappedError {
  if (error instanceof BalancerError) {
    const status = ERROR_STATUS[error.code];
    if (status !== undefined) {
      const headers: Record<string, string> = {};
      if (status === 503) headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
      if (status === 401) headers['WWW-Authenticate'] = 'Bearer realm="balancer"';
      if (status === 405 && allow !== undefined) headers['Allow'] = allow.join(', ');
      return {
        status,
        body: { error: { code: error.code, message: error.message, details: error.details } },
        headers,
        internal: false,
      };
    }
  }
  return {
    status: 500,
    body: { error: { code: 'INTERNAL', message: 'internal error; see the balancer log', details: [] } },
    headers: {},
    internal: true,
  };
}

/** Headers on every admin response: nothing here is meant to be sniffed, cached or framed. */
const COMMON_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, {
    ...COMMON_HEADERS,
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    ...headers,
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** The media type of a Content-Type header, lower-cased, without parameters; null when absent. */
export function mediaType(header: string | undefined): string | null {
  if (header === undefined || header.trim() === '') return null;
  return header.split(';')[0]!.trim().toLowerCase();
}

/** Only UTF-8 bodies are accepted; an explicit other charset is refused rather than mis-decoded. */
export function charsetIsUtf8(header: string | undefined): boolean {
  if (header === undefined) return true;
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(header);
  if (match === null) return true;
  const charset = match[1]!.toLowerCase();
  return charset === 'utf-8' || charset === 'utf8';
}

/**
 * Reads the body as UTF-8, failing with PAYLOAD_TOO_LARGE as soon as more than `limit` bytes are
 * declared or have arrived, so an oversized upload never sits in memory.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): BalancerError =>
      new BalancerError('PAYLOAD_TOO_LARGE', `request body is larger than the limit of ${limit} bytes`);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit) {
        settled = true;
        req.off('data', onData);
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', (error) => {
      if (settled) return;
      settled = true;
      reject(new BalancerError('BAD_REQUEST', 'request body could not be read', { cause: error }));
    });
  });
}
