// A pool's status as the balancer reports it: each backend's state, weights, load, latency estimate and last check.

import type { HashOn, StrategyName } from '../config/schema.js';
import type { DiscoveryStatusView } from '../discovery/dns-discovery.js';

export type BackendStateName = 'up' | 'down' | 'ejected' | 'draining';

export interface BackendStatus {
  readonly id: string;
  readonly url: string;
  readonly weight: number;
  /** Below weight while slow start ramps a returning backend up. */
  readonly effectiveWeight: number;
  /** A backup backend: it serves only while no primary of its pool is up. */
  readonly backup?: boolean;
  readonly state: BackendStateName;
  readonly inflight: number;
  /** The backend's peak-EWMA latency (the pool's ewma.initial until measured); peak-ewma pools pick by it. */
  readonly latencyEwmaMs: number;
  /** False while latencyEwmaMs is still the initial value. */
  readonly latencyMeasured: boolean;
  readonly consecutiveFailures: number;
  readonly ejections: number;
  /** Clock time (ms) at which the current ejection ends. */
  readonly ejectedUntil?: number;
  /** The last active check; `ageMs` is how long ago it ran. */
  readonly lastCheck?: { readonly ok: boolean; readonly at: number; readonly ageMs: number; readonly detail: string };
  /** Why the backend is in its current state. */
  readonly reason: string;
  /** Found in DNS by this node (discovery.dns), not listed in the config: only drain applies to it. */
  readonly discovered?: boolean;
  /** Where connections go when the URL names a host: the address this node resolved it to. */
  readonly address?: string;
}

export interface PoolStatusView {
  readonly name: string;
  readonly strategy: StrategyName;
  /** What ring-hash and maglev hash: the pool's hashOn, in its file form. */
  readonly hashOn?: HashOn;
  /** The sticky-session cookie's name, when the pool has sticky sessions. */
  readonly stickyCookie?: string;
  readonly panic: boolean;
  /** No primary backend is up, so the backups serve. */
  readonly backupsServing?: boolean;
  readonly backends: readonly BackendStatus[];
  /** Present when the pool finds backends in DNS. */
  readonly discovery?: DiscoveryStatusView;
}
