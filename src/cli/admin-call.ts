// One admin API call from the CLI: the URL, token and timeout, and for every failure the sentence to print and the exit code.
//
// Exit codes, for scripts:
//   0  done
//   1  the admin API refused the request (validation failed, not found, conflict, stale version)
//   2  usage error (bad or missing arguments, bad --admin URL)
//   3  the admin API could not be reached or did not answer in time (or is not a balancer admin API)
//   4  authentication failed: token missing (401), rejected (403) or none configured on the server
//   5  the server or the cluster is unavailable (5xx; 503 when there is no Raft leader)

import type { Writable } from 'node:stream';
import { CLI_USER_AGENT } from '../version.js';
import { errorMessage, type ErrorBody, type ProblemDetail } from '../errors.js';

export const EXIT_CODES = {
  ok: 0,
  refused: 1,
  usage: 2,
  unreachable: 3,
  auth: 4,
  unavailable: 5,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];
/** Long enough for a cluster write to fail over to 503 on its own (the API answers within a few seconds). */
const DEFAULT_CLIENT_TIMEOUT_MS = 15_000;
export interface ClientOptions {
  /** Admin API base: a URL (`http://127.0.0.1:9090`) or `host:port` as in the config's admin.listen. */
  admin: string;
  token?: string | null;
  /** Print the raw API JSON instead of tables and sentences. */
  json: boolean;
  out: Writable;
  err: Writable;
  timeoutMs?: number;
}

/**
 * `host:port` → `http://host:port`; wildcard listen addresses (0.0.0.0, ::) are dialled on loopback.
 * Returns null when the value is not usable.
 */
export function adminBaseUrl(admin: string): string | null {
  let text = admin.trim();
  if (text === '') return null;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `http://${text}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  if (url.hostname === '[::]') url.hostname = '[::1]';
  return url.toString().replace(/\/+$/, '');
}

function isApiError(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const error = (value as { error?: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}

/** `path:LINE:COL: message`, saying the path once when the validator's message already starts with it. */
function describeProblem(detail: ProblemDetail): string {
  const path = detail.path ?? '';
  const position = detail.line === undefined ? '' : `${detail.line}${detail.column === undefined ? '' : `:${detail.column}`}`;
  if (path !== '' && detail.message.startsWith(path)) {
    return position === '' ? detail.message : `${detail.message} (at ${position})`;
  }
  const where = [path, position].filter((part) => part !== '').join(':');
  return where === '' ? detail.message : `${where}: ${detail.message}`;
}

export type CallResult = { ok: true; status: number; body: unknown } | { ok: false; code: ExitCode };
function errorCause(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return errorMessage(error);
}

/** One admin API call; on failure it has already told the user why and returns the exit code. */
export async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<CallResult> {
  const base = adminBaseUrl(opts.admin);
  if (base === null) {
    opts.err.write(`invalid --admin ${JSON.stringify(opts.admin)}: expected a URL like http://127.0.0.1:9090 or host:port\n`);
    return { ok: false, code: EXIT_CODES.usage };
  }
  const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': CLI_USER_AGENT };
  if (opts.token !== undefined && opts.token !== null && opts.token !== '') headers['Authorization'] = `Bearer ${opts.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;

  let res: Response;
  let text: string;
  try {
    res = await fetch(base + path, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    text = await res.text();
  } catch (error) {
    if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
      opts.err.write(
        `admin API at ${base} did not answer within ${timeoutMs / 1000} s: is balancer running and healthy? use --admin URL\n`,
      );
    } else {
      opts.err.write(`cannot reach admin API at ${base} (${errorCause(error)}): is balancer running? use --admin URL\n`);
    }
    return { ok: false, code: EXIT_CODES.unreachable };
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    opts.err.write(
      `unexpected ${res.status} answer from ${base}${path} (${res.headers.get('content-type') ?? 'no content type'}): is this balancer's admin listener? use --admin URL\n`,
    );
    return { ok: false, code: EXIT_CODES.unreachable };
  }
  if (res.ok) return { ok: true, status: res.status, body: parsed };

  if (opts.json) opts.out.write(JSON.stringify(parsed, null, 2) + '\n');
  const apiError = isApiError(parsed) ? parsed.error : { code: 'UNKNOWN', message: text.trim(), details: [] };
  if (res.status === 401) {
    opts.err.write('token missing (401): set --token or BALANCER_ADMIN_TOKEN\n');
    return { ok: false, code: EXIT_CODES.auth };
  }
  if (res.status === 403) {
    if (apiError.code === 'ADMIN_TOKEN_NOT_SET') opts.err.write(`admin API refused (403): ${apiError.message}\n`);
    else opts.err.write('token rejected (403): set --token or BALANCER_ADMIN_TOKEN\n');
    return { ok: false, code: EXIT_CODES.auth };
  }
  const retry = res.headers.get('retry-after');
  const prefix = res.status >= 500 ? (res.status === 503 ? 'unavailable' : 'server error') : 'refused';
  opts.err.write(
    `${prefix} (${res.status} ${apiError.code}): ${apiError.message}${retry !== null ? `; retry in ${retry} s` : ''}\n`,
  );
  for (const detail of apiError.details ?? []) opts.err.write(`  - ${describeProblem(detail)}\n`);
  return { ok: false, code: res.status >= 500 ? EXIT_CODES.unavailable : EXIT_CODES.refused };
}

export function printJson(opts: ClientOptions, body: unknown): void {
  opts.out.write(JSON.stringify(body, null, 2) + '\n');
}
