// The one error type balancer throws across module boundaries, with a stable string code.

export type ErrorCode =
  // data plane
  | 'NO_ROUTE'
  | 'NO_AVAILABLE_BACKEND'
  | 'NOT_SERVING'
  | 'UPSTREAM_CONNECT_FAILED'
  | 'UPSTREAM_CONNECT_TIMEOUT'
  | 'UPSTREAM_RESET'
  | 'UPSTREAM_RESPONSE_TIMEOUT'
  | 'UPSTREAM_IDLE_TIMEOUT'
  | 'UPSTREAM_TLS_FAILED'
  | 'UPSTREAM_PROTOCOL_ERROR'
  | 'ROUTE_TIMEOUT'
  | 'CIRCUIT_OPEN'
  | 'RATE_LIMITED'
  | 'BAD_REQUEST'
  | 'REQUEST_TIMEOUT'
  | 'REQUEST_TOO_LARGE'
  | 'HEADERS_TOO_LARGE'
  | 'FORWARD_PROXY_REFUSED'
  // config and admin
  | 'CONFIG_INVALID'
  | 'CONFIG_IO'
  | 'VERSION_MISMATCH'
  | 'UNSAFE_CHANGE'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'WRITES_DISABLED'
  | 'ADMIN_TOKEN_NOT_SET'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'INTERNAL'
  // cluster
  | 'NOT_LEADER'
  | 'NO_LEADER'
  | 'PROPOSAL_DROPPED'
  | 'PROPOSAL_TIMEOUT'
  | 'MEMBERSHIP_CHANGE_PENDING'
  | 'STORAGE_CORRUPT'
  | 'STORAGE_LOCKED'
  | 'STORAGE_NODE_MISMATCH'
  /** This node stopped taking part in Raft (fail-stop); another node can take the request. */
  | 'RAFT_FAILED';

export interface ProblemDetail {
  readonly path: string;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

/** The JSON body of every error answer, the proxy's and the admin API's: a stable code, a sentence, and for a rejected config each problem. */
export interface ErrorBody {
  readonly error: {
    readonly code: ErrorCode;
    readonly message: string;
    /** The request's X-Request-Id, so a user's report can be found in the logs. */
    readonly requestId?: string;
    readonly details?: readonly ProblemDetail[];
  };
}

export class BalancerError extends Error {
  readonly code: ErrorCode;
  readonly details: readonly ProblemDetail[];

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: readonly ProblemDetail[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BalancerError';
    this.code = code;
    this.details = options.details ?? [];
  }
}

export function isBalancerError(value: unknown, code?: ErrorCode): value is BalancerError {
  return value instanceof BalancerError && (code === undefined || value.code === code);
}

/** The message of anything thrown, without trusting it to be an Error (or to turn into a string). */
export function errorMessage(error: unknown): string {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return 'unknown error';
  }
}

/** A file-system error in words an operator acts on ("no such file", "permission denied"), else its message. */
export function describeIoError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return errorMessage(error);
}
