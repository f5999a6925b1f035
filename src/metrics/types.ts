// The narrow metric interfaces the rest of balancer records through; metrics.ts implements them with prom-client.

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx';

export type UpstreamErrorReason =
  | 'connect_refused'
  | 'connect_timeout'
  | 'reset'
  | 'response_timeout'
  | 'idle_timeout'
  | 'tls'
  | 'protocol'
  | 'circuit_open'
  | 'other';

export type HealthCheckResult = 'pass' | 'fail' | 'timeout' | 'error';

/** How a client asked: HTTP/1.x, HTTP/2 (over TLS or h2c), or gRPC (HTTP/2 with an application/grpc content type). */
export type ClientProtocol = 'http1' | 'h2' | 'grpc';
export const CLIENT_PROTOCOLS: readonly ClientProtocol[] = ['http1', 'h2', 'grpc'];

/** Counts bound to one listener, looked up once per listener so the hot path does no label lookups. */
export interface ListenerMetrics {
  /** A request (or WebSocket upgrade) arrived on this listener, whatever its answer. */
  request(protocol: ClientProtocol): void;
}

/** Children bound to one pool+backend, created once per config change, so the hot path does no label lookups. */
export interface BackendMetrics {
  requestStarted(): void;
  /**
   * Called once per request that reached this backend, with the status class sent to the client and the label of
   * the route that sent it ('' when the lone pool takes every request: no route label).
   */
  requestFinished(statusClass: StatusClass, durationSeconds: number, route?: string): void;
  upstreamError(reason: UpstreamErrorReason): void;
  healthCheck(result: HealthCheckResult): void;
  setUp(up: boolean): void;
  ejected(): void;
  /** Drained by an operator: exported so alerts can tell an intentional drain from a failure. */
  setDraining?(draining: boolean): void;
  /**
   * Where to read the backend's peak-EWMA latency in seconds when /metrics is scraped (it decays with time, so it
   * is read then, not pushed); given by whoever owns the estimate (the pool, not a worker's forwarder).
   */
  latencyEstimate?(read: () => number): void;
}

export interface PoolMetrics {
  retry(): void;
  /** A retry the budget refused: the failure went to the client although another backend might have answered. */
  retryRefused(): void;
  /** Requests answered without any backend (no backend available, circuit open, ...). */
  requestWithoutBackend(statusClass: StatusClass, route?: string): void;
}

export type ProposalResult = 'committed' | 'rejected' | 'dropped' | 'timeout';

export interface RaftMetrics {
  setTerm(term: number): void;
  setCommitIndex(index: number): void;
  setAppliedIndex(index: number): void;
  setIsLeader(isLeader: boolean): void;
  leaderChanged(): void;
  /** The node started this many more elections (pre-vote, vote or transfer rounds). */
  electionsStarted(count: number): void;
  /** The Raft clock ticked once (every cluster.heartbeatInterval while the event loop keeps up). */
  ticked(): void;
  proposal(result: ProposalResult): void;
  setPeerReachable(peer: string, reachable: boolean): void;
  /** This node no longer links to the peer (removed, or a learner peer of a learner): its series goes. */
  forgetPeer(peer: string): void;
  peerMessageRejected(reason: 'bad_mac' | 'wrong_cluster' | 'malformed' | 'unknown_peer' | 'unknown_incarnation'): void;
  /** The node stopped taking part in Raft (fail-stop after a storage failure or a broken invariant). */
  setFailed(failed: boolean): void;
}

/** Connections one process holds open to a backend for a pool's requests, as read when /metrics is scraped. */
export interface BackendConnections {
  readonly pool: string;
  readonly backend: string;
  readonly connections: number;
}

export interface Metrics {
  backend(pool: string, backend: string): BackendMetrics;
  /** Where to read the open backend connections when /metrics is scraped (the data plane's pools own them). */
  backendConnections?(read: () => Iterable<BackendConnections>): void;
  pool(pool: string): PoolMetrics;
  listener(listener: string): ListenerMetrics;
  setConfigVersion(version: number): void;
  configReload(result: 'success' | 'failure'): void;
  /** 1 while the file holds local settings that only a restart applies. */
  setRestartRequired(required: boolean): void;
  /** A request a rate limit answered 429, by the label of the route it came by ('' for the lone pool). */
  rateLimited(route: string): void;
  raft: RaftMetrics;
  /**
   * Drops the children of pools/backends no longer in the config, and (when `routes` is given) the series of route
   * labels no longer in it, so removed labels stop being exported.
   */
  retain(live: ReadonlyArray<{ pool: string; backends: readonly string[] }>, routes?: readonly string[]): void;
}

const noopBackend: BackendMetrics = {
  requestStarted() {},
  requestFinished() {},
  upstreamError() {},
  healthCheck() {},
  setUp() {},
  ejected() {},
};

const noopPool: PoolMetrics = { retry() {}, retryRefused() {}, requestWithoutBackend() {} };
const noopListener: ListenerMetrics = { request() {} };

export const noopMetrics: Metrics = {
  backend: () => noopBackend,
  pool: () => noopPool,
  listener: () => noopListener,
  setConfigVersion() {},
  configReload() {},
  setRestartRequired() {},
  rateLimited() {},
  raft: {
    setTerm() {},
    setCommitIndex() {},
    setAppliedIndex() {},
    setIsLeader() {},
    leaderChanged() {},
    electionsStarted() {},
    ticked() {},
    proposal() {},
    setPeerReachable() {},
    forgetPeer() {},
    peerMessageRejected() {},
    setFailed() {},
  },
  retain() {},
};

export function statusClass(status: number): StatusClass {
  if (status < 200) return '1xx';
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}
