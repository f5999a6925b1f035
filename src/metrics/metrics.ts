// Every Prometheus metric family balancer exports, in one prom-client Registry, behind the narrow interfaces of types.ts.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type {
  BackendMetrics,
  HealthCheckResult,
  Metrics,
  PoolMetrics,
  ProposalResult,
  RaftMetrics,
  StatusClass,
  UpstreamErrorReason,
} from './types.js';

/**
 * Requests answered without reaching any backend (no backend available, circuit open, no route to a
 * backend) are counted with this backend label. An empty label value is what Prometheus treats as
 * "label absent", so `sum by (pool)` still includes them and no real backend id can collide with it.
 */
export const NO_BACKEND_LABEL = '';

/**
 * 1 ms to 10 s, roughly three buckets per decade, so p50/p99 of both fast in-memory backends and
 * slow ones resolve without the series explosion of finer buckets.
 */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * prom-client default gauges whose `_total` suffix `promtool check metrics` rejects (only counters may
 * end in _total). Each is the sum of a same-named gauge without the suffix, labelled by type, which stays.
 */
export const DROPPED_DEFAULT_METRICS: readonly string[] = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx'];
/** Classes zero-initialised per backend, so `rate()` sees the first error instead of a series appearing at 1. */
const ZERO_INIT_CLASSES: readonly StatusClass[] = ['2xx', '3xx', '4xx', '5xx'];

export interface CreateMetricsOptions {
  /** Register prom-client's default process/Node.js metrics (default true). */
  collectDefault?: boolean;
  prefix?: 'balancer_';
  /** A registry to register into, e.g. one merged later by an AggregatorRegistry; default a fresh one. */
  registry?: Registry;
}

export type PrometheusMetrics = Metrics & {
  readonly registry: Registry;
  /** The text exposition of every family, for GET /metrics. */
  render(): Promise<string>;
  readonly contentType: string;
};

interface CounterChild {
  inc(value?: number): void;
}
interface GaugeChild {
  inc(value?: number): void;
  dec(value?: number): void;
  set(value: number): void;
}
interface HistogramChild {
  observe(value: number): void;
}

type LabelSet = Record<string, string>;

/** The families, grouped so retain() can drop every series of a backend or pool in one pass. */
interface Families {
  requests: Counter<'pool' | 'backend' | 'code'>;
  duration: Histogram<'pool' | 'backend'>;
  up: Gauge<'pool' | 'backend'>;
  draining: Gauge<'pool' | 'backend'>;
  active: Gauge<'pool' | 'backend'>;
  retries: Counter<'pool'>;
  upstreamErrors: Counter<'pool' | 'backend' | 'reason'>;
  healthChecks: Counter<'pool' | 'backend' | 'result'>;
  ejections: Counter<'pool' | 'backend'>;
}

/** The cached children of one pool+backend, plus every label set created for it (for removal). */
class BackendChildren implements BackendMetrics {
  private readonly byClass: Record<StatusClass, CounterChild>;
  private readonly duration: HistogramChild;
  private readonly active: GaugeChild;
  private readonly up: GaugeChild;
  private readonly draining: GaugeChild;
  private readonly ejections: CounterChild;
  private readonly errorChildren = new Map<UpstreamErrorReason, CounterChild>();
  private readonly healthChildren = new Map<HealthCheckResult, CounterChild>();

  constructor(
    private readonly families: Families,
    private readonly pool: string,
    private readonly backendId: string,
  ) {
    const base = { pool, backend: backendId };
    const byClass = {} as Record<StatusClass, CounterChild>;
    for (const code of STATUS_CLASSES) byClass[code] = families.requests.labels({ ...base, code });
    for (const code of ZERO_INIT_CLASSES) byClass[code].inc(0);
    this.byClass = byClass;
    families.duration.zero(base);
    this.duration = families.duration.labels(base);
    this.active = families.active.labels(base);
    this.active.set(0);
    this.up = families.up.labels(base);
    this.draining = families.draining.labels(base);
    this.draining.set(0);
    this.ejections = families.ejections.labels(base);
    this.ejections.inc(0);
  }

  requestStarted(): void {
    this.active.inc();
  }

  requestFinished(statusClass: StatusClass, durationSeconds: number): void {
    this.active.dec();
    this.byClass[statusClass].inc();
    this.duration.observe(durationSeconds);
  }

  upstreamError(reason: UpstreamErrorReason): void {
    let child = this.errorChildren.get(reason);
    if (child === undefined) {
      child = this.families.upstreamErrors.labels({ pool: this.pool, backend: this.backendId, reason });
      this.errorChildren.set(reason, child);
    }
    child.inc();
  }

  healthCheck(result: HealthCheckResult): void {
    let child = this.healthChildren.get(result);
    if (child === undefined) {
      child = this.families.healthChecks.labels({ pool: this.pool, backend: this.backendId, result });
      this.healthChildren.set(result, child);
    }
    child.inc();
  }

  setUp(isUp: boolean): void {
    this.up.set(isUp ? 1 : 0);
  }

  ejected(): void {
    this.ejections.inc();
  }

  setDraining(draining: boolean): void {
    this.draining.set(draining ? 1 : 0);
  }

  /** Removes every series this backend exported. */
  remove(): void {
    const base: LabelSet = { pool: this.pool, backend: this.backendId };
    const f = this.families;
    for (const code of STATUS_CLASSES) f.requests.remove({ ...base, code });
    f.duration.remove(base);
    f.active.remove(base);
    f.up.remove(base);
    f.draining.remove(base);
    f.ejections.remove(base);
    for (const reason of this.errorChildren.keys()) f.upstreamErrors.remove({ ...base, reason });
    for (const result of this.healthChildren.keys()) f.healthChecks.remove({ ...base, result });
  }
}

class PoolChildren implements PoolMetrics {
  private readonly retries: CounterChild;
  private readonly withoutBackend: Record<StatusClass, CounterChild>;

  constructor(
    private readonly families: Families,
    private readonly pool: string,
  ) {
    this.retries = families.retries.labels({ pool });
    this.retries.inc(0);
    const children = {} as Record<StatusClass, CounterChild>;
    for (const code of STATUS_CLASSES) {
      children[code] = families.requests.labels({ pool, backend: NO_BACKEND_LABEL, code });
    }
    this.withoutBackend = children;
  }

  retry(): void {
    this.retries.inc();
  }

  requestWithoutBackend(statusClass: StatusClass): void {
    this.withoutBackend[statusClass].inc();
  }

  remove(): void {
    this.families.retries.remove({ pool: this.pool });
    for (const code of STATUS_CLASSES) {
      this.families.requests.remove({ pool: this.pool, backend: NO_BACKEND_LABEL, code });
    }
  }
}

function createRaftMetrics(registry: Registry, p: string): RaftMetrics {
  const registers = [registry];
  const term = new Gauge({ name: `${p}raft_term`, help: 'Current Raft term of this node.', registers });
  const commitIndex = new Gauge({
    name: `${p}raft_commit_index`,
    help: 'Highest Raft log index known to be committed.',
    registers,
  });
  const appliedIndex = new Gauge({
    name: `${p}raft_applied_index`,
    help: 'Highest Raft log index applied to the config state machine on this node.',
    registers,
  });
  const isLeader = new Gauge({
    name: `${p}raft_is_leader`,
    help: '1 when this node is the Raft leader, else 0.',
    registers,
  });
  const leaderChanges = new Counter({
    name: `${p}raft_leader_changes_total`,
    help: 'Times this node observed the Raft leader change.',
    registers,
  });
  const proposals = new Counter({
    name: `${p}raft_proposals_total`,
    help: 'Config change proposals by outcome.',
    labelNames: ['result'] as const,
    registers,
  });
  const peerReachable = new Gauge({
    name: `${p}raft_peer_reachable`,
    help: '1 when the peer answered recently, else 0 (peers come from the cluster config).',
    labelNames: ['peer'] as const,
    registers,
  });
  const rejected = new Counter({
    name: `${p}raft_peer_messages_rejected_total`,
    help: 'Peer messages dropped before reaching Raft, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });

  const proposalResults: readonly ProposalResult[] = ['committed', 'rejected', 'dropped', 'timeout'];
  const proposalChildren = new Map<ProposalResult, CounterChild>();
  for (const result of proposalResults) {
    const child = proposals.labels({ result });
    child.inc(0);
    proposalChildren.set(result, child);
  }
  const peerChildren = new Map<string, GaugeChild>();

  return {
    setTerm: (value) => term.set(value),
    setCommitIndex: (value) => commitIndex.set(value),
    setAppliedIndex: (value) => appliedIndex.set(value),
    setIsLeader: (value) => isLeader.set(value ? 1 : 0),
    leaderChanged: () => leaderChanges.inc(),
    proposal: (result) => proposalChildren.get(result)?.inc(),
    setPeerReachable: (peer, reachable) => {
      let child = peerChildren.get(peer);
      if (child === undefined) {
        child = peerReachable.labels({ peer });
        peerChildren.set(peer, child);
      }
      child.set(reachable ? 1 : 0);
    },
    peerMessageRejected: (reason) => rejected.inc({ reason }),
  };
}

export function createMetrics(options: CreateMetricsOptions = {}): PrometheusMetrics {
  const registry = options.registry ?? new Registry();
  const p = options.prefix ?? 'balancer_';
  const registers = [registry];

  const families: Families = {
    requests: new Counter({
      name: `${p}requests_total`,
      help: `Requests answered, by pool, backend and status class; backend="${NO_BACKEND_LABEL}" when no backend was reached.`,
      labelNames: ['pool', 'backend', 'code'] as const,
      registers,
    }),
    duration: new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Time from receiving a request to the end of the response, by pool and backend.',
      labelNames: ['pool', 'backend'] as const,
      buckets: [...REQUEST_DURATION_BUCKETS],
      registers,
    }),
    up: new Gauge({
      name: `${p}backend_up`,
      help: '1 when the backend is eligible for traffic (healthy, not ejected), else 0.',
      labelNames: ['pool', 'backend'] as const,
      registers,
    }),
    draining: new Gauge({
      name: `${p}backend_draining`,
      help: '1 while an operator drains the backend (it gets no new requests), else 0.',
      labelNames: ['pool', 'backend'] as const,
      registers,
    }),
    active: new Gauge({
      name: `${p}backend_active_requests`,
      help: 'Requests in flight to the backend.',
      labelNames: ['pool', 'backend'] as const,
      registers,
    }),
    retries: new Counter({
      name: `${p}retries_total`,
      help: 'Requests retried on another backend.',
      labelNames: ['pool'] as const,
      registers,
    }),
    upstreamErrors: new Counter({
      name: `${p}upstream_errors_total`,
      help: 'Failures talking to a backend, by reason.',
      labelNames: ['pool', 'backend', 'reason'] as const,
      registers,
    }),
    healthChecks: new Counter({
      name: `${p}health_checks_total`,
      help: 'Active health checks run, by result.',
      labelNames: ['pool', 'backend', 'result'] as const,
      registers,
    }),
    ejections: new Counter({
      name: `${p}outlier_ejections_total`,
      help: 'Times the outlier detector ejected the backend.',
      labelNames: ['pool', 'backend'] as const,
      registers,
    }),
  };

  const configVersion = new Gauge({
    name: `${p}config_version`,
    help: 'Version of the pool config this node serves.',
    registers,
  });
  const configReloads = new Counter({
    name: `${p}config_reloads_total`,
    help: 'Config reloads (file, admin API or replicated), by result.',
    labelNames: ['result'] as const,
    registers,
  });
  configReloads.inc({ result: 'success' }, 0);
  configReloads.inc({ result: 'failure' }, 0);

  const raft = createRaftMetrics(registry, p);

  if (options.collectDefault !== false) {
    collectDefaultMetrics({ register: registry });
    for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }

  const backends = new Map<string, Map<string, BackendChildren>>();
  const pools = new Map<string, PoolChildren>();

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    backend(pool, backendId) {
      let byId = backends.get(pool);
      if (byId === undefined) {
        byId = new Map();
        backends.set(pool, byId);
      }
      let children = byId.get(backendId);
      if (children === undefined) {
        children = new BackendChildren(families, pool, backendId);
        byId.set(backendId, children);
      }
      return children;
    },
    pool(pool) {
      let children = pools.get(pool);
      if (children === undefined) {
        children = new PoolChildren(families, pool);
        pools.set(pool, children);
      }
      return children;
    },
    setConfigVersion: (version) => configVersion.set(version),
    configReload: (result) => configReloads.inc({ result }),
    raft,
    retain(live) {
      const wanted = new Map<string, Set<string>>();
      for (const { pool, backends: ids } of live) wanted.set(pool, new Set(ids));
      for (const [pool, byId] of backends) {
        const keep = wanted.get(pool);
        for (const [id, children] of byId) {
          if (keep?.has(id) === true) continue;
          children.remove();
          byId.delete(id);
        }
        if (byId.size === 0) backends.delete(pool);
      }
      for (const [pool, children] of pools) {
        if (wanted.has(pool)) continue;
        children.remove();
        pools.delete(pool);
      }
    },
  };
}
