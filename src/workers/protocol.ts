// The IPC messages between the primary (control plane, health, metrics) and its data-plane worker processes.

import type { AddressInfo } from 'node:net';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { LimitsConfig, ListenerConfig, ReplicatedConfig } from '../config/schema.js';
import type { LogLevelName } from '../config/schema.js';
import type { RequestOutcome } from '../proxy/forward-types.js';

/** The listener settings an edit of the config file changes in a running node, in every process that serves. */
export interface LiveListenerSettings {
  /** Added, removed and changed by name (see ListenerSet.apply). */
  readonly listeners: readonly ListenerConfig[];
  /** How long the connections of a removed or replaced listener may finish their requests. */
  readonly drainMs: number;
  readonly limits: LimitsConfig;
  readonly trustedProxies: readonly string[];
  readonly logLevel: LogLevelName;
}

/** The node-local settings a worker needs to serve; it never reads the config file itself. */
export interface WorkerSettings extends LiveListenerSettings {
  readonly accessLog: boolean;
  /** Absolute; null writes the access log to standard output. */
  readonly accessFile: string | null;
}

export interface BackendHealthView {
  readonly available: boolean;
  readonly effectiveWeight: number;
}

export interface PoolHealthView {
  readonly retryAfterSeconds: number;
  readonly backends: Readonly<Record<string, BackendHealthView>>;
}

/**
 * Consecutive outcomes of one kind: [outcome, count], or for successes with a measured duration
 * [outcome, count, sum of their durations in ms, the longest in ms] (what the primary's latency estimate needs).
 */
export type OutcomeRun = [RequestOutcome, number] | [RequestOutcome, number, number, number];

/** Outcomes in the order they happened, run-length encoded. */
export type OutcomeRuns = OutcomeRun[];

export type ToWorker =
  | { readonly type: 'init'; readonly settings: WorkerSettings }
  /** The file's live settings were edited: applied for new connections and requests. */
  | { readonly type: 'settings'; readonly settings: LiveListenerSettings }
  /** Carries the health of the pools it builds, so a worker never serves a config without knowing who is up. */
  | {
      readonly type: 'config';
      readonly version: number;
      readonly config: ReplicatedConfig;
      readonly health: Readonly<Record<string, PoolHealthView>>;
      /** Pools the primary rebuilt because their TLS files changed (the config may be the same): rebuilt here too. */
      readonly tlsReloaded: readonly string[];
    }
  | { readonly type: 'health'; readonly pools: Readonly<Record<string, PoolHealthView>> }
  | { readonly type: 'metrics-request'; readonly id: number }
  /** The access log file was moved away (logrotate): append to a new one at its path. */
  | { readonly type: 'reopen-access-log' }
  | { readonly type: 'shutdown'; readonly drainMs: number };

export type FromWorker =
  /** The worker's message handler is in place: anything sent before this would have been lost. */
  | { readonly type: 'ready' }
  /** Every listener is bound (at start, and again after each listeners edit): name -> address, in config order. */
  | { readonly type: 'listening'; readonly addresses: ReadonlyArray<readonly [string, AddressInfo]> }
  | {
      readonly type: 'report';
      /** pool -> backend -> outcomes since the last report. */
      readonly outcomes: Readonly<Record<string, Readonly<Record<string, OutcomeRuns>>>>;
      /** pool -> backend -> requests in flight now. */
      readonly inflight: Readonly<Record<string, Readonly<Record<string, number>>>>;
    }
  | { readonly type: 'metrics'; readonly id: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { readonly type: 'fatal'; readonly message: string };
