// The control-plane interface the admin API and dashboard talk to; single-node and Raft-backed stores both implement it.

import type { PlainReplicated } from '../config/plain.js';
import type { NotReady, Readiness } from './readiness.js';
import type { HistoryEntry } from './history.js';
import type { PoolStatusView } from '../balancer/pool-status.js';

// A pool's status view is the balancer's (it builds it); the admin API and the CLI show it.
export type { BackendStateName, BackendStatus, PoolStatusView } from '../balancer/pool-status.js';
// Produced by DNS discovery, which owns its definition.
export type { DiscoveryStatusView } from '../discovery/dns-discovery.js';

export type ClusterRole = 'leader' | 'follower' | 'candidate' | 'pre-candidate' | 'learner' | 'standalone';

/**
 * Where this node stands: a member (voter or learner), removed from the cluster (it serves its last config but
 * takes no part: no votes, no campaigns), waiting to be added (started with cluster.join), or no cluster at all.
 */
export type Membership = 'member' | 'removed' | 'waiting-to-join' | 'standalone';

export interface ClusterMember {
  readonly id: string;
  readonly address: string;
  readonly voter: boolean;
  /** Known only on the leader; null elsewhere. */
  readonly matchIndex: number | null;
  readonly reachable: boolean | null;
  /** The data dir incarnation the cluster recorded for the member (null until recorded); a node presenting another is refused. */
  readonly incarnation?: string | null;
}

export interface ClusterStatus {
  readonly nodeId: string;
  readonly role: ClusterRole;
  readonly membership: Membership;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly members: readonly ClusterMember[];
  /** The cluster's recorded id (null until the first leader records it). */
  readonly clusterId?: string | null;
  /** Set when this node stopped taking part in Raft (fail-stop): what happened and what to do. */
  readonly failure?: { readonly kind: string; readonly message: string; readonly advice: string };
}

export interface NodeStatus {
  readonly node: string;
  readonly version: number;
  /** What /readyz answers: true when `notReady` is empty. */
  readonly ready: boolean;
  /** Why the node should not get traffic now (empty when ready). */
  readonly notReady: readonly NotReady[];
  readonly pools: readonly PoolStatusView[];
  readonly cluster: ClusterStatus;
}

export interface BackendInput {
  readonly url: string;
  readonly weight?: number;
  readonly id?: string;
  /** A backup backend: it serves only while no primary of the pool is up. */
  readonly backup?: boolean;
}

/** Who asked for a change, as the admin API knows it; the store adds its node, the time and the request id. */
export interface ChangeOrigin {
  readonly via: 'api' | 'cli';
  /** The caller's own X-Request-Id, kept in the history beside ours. */
  readonly clientRequestId?: string;
}

/** `force` makes a change the safety check would refuse (a routed pool left empty, every route or pool removed). */
export interface WriteOptions {
  readonly force?: boolean;
  readonly origin?: ChangeOrigin;
  /**
   * The client's id for this write (the Idempotency-Key header) instead of a fresh one: in a cluster, a write
   * sent again with the same id takes effect at most once, so a write that timed out can be retried safely.
   */
  readonly requestId?: string;
}

/** A committed change: the version it made and the request id it carried (in logs, history and X-Request-Id). */
export interface WriteResult {
  readonly version: number;
  readonly requestId: string;
}

export interface BackendPatch {
  readonly weight?: number;
  readonly drain?: boolean;
}

/**
 * Every write resolves once committed (cluster) or applied and written to the file (single node),
 * or rejects with a BalancerError: CONFIG_INVALID (details = every problem), VERSION_MISMATCH, NOT_FOUND,
 * CONFLICT, UNSAFE_CHANGE (details = every reason; pass force to make it anyway), NO_LEADER, PROPOSAL_TIMEOUT,
 * MEMBERSHIP_CHANGE_PENDING.
 */
export interface ControlPlane {
  status(): NodeStatus;
  /** Whether the node should get traffic (a config is applied and it is neither draining nor out of the cluster), and why not. */
  readonly readiness: Readiness;
  /** Linearizable in a cluster (ReadIndex). */
  getConfig(): Promise<{ version: number; config: PlainReplicated }>;
  /** `body` is the parsed JSON/YAML value; `sourceText` the raw text when positions are wanted in problems. */
  putConfig(body: unknown, options: { ifMatch?: number; sourceText?: string } & WriteOptions): Promise<WriteResult>;
  addBackend(pool: string, input: BackendInput, options?: WriteOptions): Promise<WriteResult & { backend: { id: string; url: string; weight: number } }>;
  updateBackend(pool: string, id: string, patch: BackendPatch, options?: WriteOptions): Promise<WriteResult>;
  removeBackend(pool: string, id: string, options?: WriteOptions): Promise<WriteResult>;
  /** The last versions this node keeps, newest first. */
  history(): readonly HistoryEntry[];
  /**
   * Makes the config of `version` (from the history) current again, as a compare-and-set on the current version
   * (`ifMatch`, or the version read linearizably just before): NOT_FOUND when the history no longer holds it.
   */
  rollback(version: number, options: { ifMatch?: number } & WriteOptions): Promise<WriteResult>;
  cluster(): ClusterStatus;
  addMember(id: string, address: string, learner: boolean): Promise<ClusterStatus>;
  removeMember(id: string): Promise<ClusterStatus>;
  transferLeader(id: string): Promise<ClusterStatus>;
}
