// Every Prometheus metric family balancer exports, in one prom-client Registry, behind the narrow interfaces of types.ts.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import {
  CLIENT_PROTOCOLS,
  type BackendConnections,
  type BackendMetrics,
  type ClientProtocol,
  type HealthCheckResult,
  type ListenerMetrics,
  type Metrics,
  type PoolMetrics,
  type ProposalResult,
  type RaftMetrics,
  type StatusClass,
  type UpstreamErrorReason,
} from './types.js';
import { CHANGE_KINDS, type HistoryEntry } from '../control/history.js';
import type { RequestCounters } from './request-counters.js';

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
export /**
 * How often the event-loop lag histogram samples. prom-client's default, 10 ms, wakes an idle process 100 times a
 * second: measured on this machine that was ~0.8% of a core per idle node, most of an idle node's CPU and
 * about 22% of a core across a 28-node fleet. At 100 ms every stall longer than that is still seen, shorter ones
 * in proportion to their length, and an idle node wakes ~20 times a second instead of ~190.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

const DROPPED_DEFAULT_METRICS: readonly string[] = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx'];

export interface CreateMetricsOptions {
  /** Register prom-client's default process/Node.js metrics (default true). */
  collectDefault?: boolean;
  prefix?: 'balancer_';
  /** A registry to register into, e.g. one merged later by an AggregatorRegistry; default a fresh one. */
  registry?: Registry;
}

export type PrometheusMetrics = Metrics & {
  readonly registry: Registry;
  /**
   * Where balancer_config_changes_total is counted from, at each scrape: the version served and the config history
   * (newest first). Versions served before this call are not counted.
   */
  countConfigChanges(source: () => { version: number; changes: readonly HistoryEntry[] }): void;
  /** The text exposition of every family, for GET /metrics. */
  render(): Promise<string>;
  /**
   * The text of balancer_requests_total and balancer_request_duration_seconds alone: what the dashboard's history reads
   * each second. render() would also collect every default process metric (a /proc read, fd count, heap spaces) each time.
   */
  renderRequestFamilies(): Promise<string>;
  /**
   * What parseRequestCounters finds in renderRequestFamilies' text, read from the counters themselves: the dashboard
   * history's read each second in a single process, which then renders and parses no text while requests flow.
   */
  requestCounters(): Map<string, RequestCounters>;
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
type LabelSet = Record<string, string>;

/** The prom-client families of the less frequent events, grouped so retain() can drop a backend's series in one pass. */
interface Families {
  up: Gauge<'pool' | 'backend'>;
  draining: Gauge<'pool' | 'backend'>;
  retries: Counter<'pool'>;
  retriesRefused: Counter<'pool'>;
  upstreamErrors: Counter<'pool' | 'backend' | 'reason'>;
  healthChecks: Counter<'pool' | 'backend' | 'result'>;
  ejections: Counter<'pool' | 'backend'>;
}

const CLASS_INDEX: Readonly<Record<StatusClass, number>> = { '1xx': 0, '2xx': 1, '3xx': 2, '4xx': 3, '5xx': 4 };

/** One exported sample, in the shape prom-client's Registry renders and AggregatorRegistry merges. */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
}

/**
 * A family whose values live in plain numbers on the per-backend objects and are read only at scrape
 * time. prom-client's own children hash and validate their labels on every inc()/observe() (about
 * 4.6 µs per request for the three per-request families); these cost a few array writes instead.
 */
class SnapshotFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly collect: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; values: Sample[]; aggregator: string }> {
    return { name: this.name, help: this.help, type: this.type, values: this.collect(), aggregator: this.aggregator };
  }

  /** Registry.resetMetrics() calls this; the counts belong to the backends, so there is nothing to reset here. */
  reset(): void {}
}

function registerSnapshot(registry: Registry, family: SnapshotFamily): void {
  // The Registry only needs name, get() and reset(); its declared parameter type is prom-client's Metric class.
  registry.registerMetric(family as unknown as Parameters<Registry['registerMetric']>[0]);
}

/** The request counts and durations of one pool+backend+route, as plain numbers. */
class RouteSeries {
  /** Requests by status class, indexed by CLASS_INDEX. */
  readonly byClass = [0, 0, 0, 0, 0];
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets: number[] = new Array<number>(REQUEST_DURATION_BUCKETS.length + 1).fill(0);
  durationSum = 0;
  durationCount = 0;
}

const PROTOCOL_INDEX: Readonly<Record<ClientProtocol, number>> = { http1: 0, h2: 1, grpc: 2 };

/** One listener's requests by client protocol, as plain numbers indexed by PROTOCOL_INDEX. */
class ListenerCounts implements ListenerMetrics {
  readonly byProtocol = [0, 0, 0];
  request(protocol: ClientProtocol): void {
    this.byProtocol[PROTOCOL_INDEX[protocol]]! += 1;
  }
}

/** The labels of a series: `route` only when a route sent the requests (with no routes there is none to name). */
function seriesLabels(pool: string, backend: string, route: string): Record<string, string> {
  return route === NO_ROUTE_LABEL ? { pool, backend } : { pool, backend, route };
}

/** The route label of requests the lone pool takes when there are no routes: absent from the series. */
export const NO_ROUTE_LABEL = '';

/** The per-request state of one pool+backend as plain numbers, plus cached prom-client children for the rest. */
class BackendChildren implements BackendMetrics {
  /**
   * Route label -> its series. The unrouted series exists from the start, so rate() sees a first error rather than
   * a series appearing at 1; routes' series appear with their first request. Bounded by the config's routes.
   */
  readonly series = new Map<string, RouteSeries>([[NO_ROUTE_LABEL, new RouteSeries()]]);
  active = 0;
  /** Reads the estimate in seconds; null until its owner says where (never in a worker process, whose primary exports it). */
  latencyEwma: (() => number) | null = null;
  private readonly up: GaugeChild;
  private readonly draining: GaugeChild;
  /**
   * What `up` and `draining` were last set to: every pool rebuild (a weight change) publishes every backend's state,
   * and prom-client hashes the labels on each set (~2 ms per change with 1,000 backends), so an unchanged value is not set again.
   */
  private upValue: number | undefined;
  private drainingValue = 0;
  private readonly ejections: CounterChild;
  private readonly errorChildren = new Map<UpstreamErrorReason, CounterChild>();
  private readonly healthChildren = new Map<HealthCheckResult, CounterChild>();

  constructor(
    private readonly families: Families,
    readonly pool: string,
    readonly backendId: string,
  ) {
    const base = { pool, backend: backendId };
    this.up = families.up.labels(base);
    this.draining = families.draining.labels(base);
    this.draining.set(0);
    this.ejections = families.ejections.labels(base);
    this.ejections.inc(0);
  }

  requestStarted(): void {
    this.active += 1;
  }

  requestFinished(statusClass: StatusClass, durationSeconds: number, route: string = NO_ROUTE_LABEL): void {
    this.active -= 1;
    let series = this.series.get(route);
    if (series === undefined) {
      series = new RouteSeries();
      this.series.set(route, series);
    }
    series.byClass[CLASS_INDEX[statusClass]]! += 1;
    // A NaN or negative duration (a clock bug upstream) must not poison the sum forever.
    const seconds = durationSeconds >= 0 && durationSeconds < Infinity ? durationSeconds : 0;
    const bounds = REQUEST_DURATION_BUCKETS;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    series.buckets[i]! += 1;
    series.durationSum += seconds;
    series.durationCount += 1;
  }

  /** Forgets the series of routes no longer in the config (the unrouted one stays). */
  retainRoutes(labels: ReadonlySet<string>): void {
    for (const label of this.series.keys()) if (label !== NO_ROUTE_LABEL && !labels.has(label)) this.series.delete(label);
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
    const value = isUp ? 1 : 0;
    if (value === this.upValue) return;
    this.upValue = value;
    this.up.set(value);
  }

  ejected(): void {
    this.ejections.inc();
  }

  setDraining(draining: boolean): void {
    const value = draining ? 1 : 0;
    if (value === this.drainingValue) return;
    this.drainingValue = value;
    this.draining.set(value);
  }

  latencyEstimate(read: () => number): void {
    this.latencyEwma = read;
  }

  /** Removes the prom-client series of this backend; the snapshot families stop listing it once it leaves the map. */
  remove(): void {
    const base: LabelSet = { pool: this.pool, backend: this.backendId };
    const f = this.families;
    f.up.remove(base);
    f.draining.remove(base);
    f.ejections.remove(base);
    for (const reason of this.errorChildren.keys()) f.upstreamErrors.remove({ ...base, reason });
    for (const result of this.healthChildren.keys()) f.healthChecks.remove({ ...base, result });
  }
}

class PoolChildren implements PoolMetrics {
  private readonly retries: CounterChild;
  private readonly retriesRefused: CounterChild;
  /** Route label -> requests answered without a backend, by status class (CLASS_INDEX). */
  readonly withoutBackend = new Map<string, number[]>();

  constructor(
    private readonly families: Families,
    readonly pool: string,
  ) {
    this.retries = families.retries.labels({ pool });
    this.retries.inc(0);
    this.retriesRefused = families.retriesRefused.labels({ pool });
    this.retriesRefused.inc(0);
  }

  retry(): void {
    this.retries.inc();
  }

  retryRefused(): void {
    this.retriesRefused.inc();
  }

  requestWithoutBackend(statusClass: StatusClass, route: string = NO_ROUTE_LABEL): void {
    let counts = this.withoutBackend.get(route);
    if (counts === undefined) {
      counts = [0, 0, 0, 0, 0];
      this.withoutBackend.set(route, counts);
    }
    counts[CLASS_INDEX[statusClass]]! += 1;
  }

  remove(): void {
    this.families.retries.remove({ pool: this.pool });
    this.families.retriesRefused.remove({ pool: this.pool });
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
  const electionsStarted = new Counter({
    name: `${p}raft_elections_started_total`,
    help: 'Elections this node started (pre-vote, vote or leadership-transfer rounds); rising while no leader is known means it cannot reach a quorum.',
    registers,
  });
  electionsStarted.inc(0);
  const ticks = new Counter({
    name: `${p}raft_ticks_total`,
    help: 'Ticks of the Raft clock on this node, one per cluster.heartbeatInterval while the event loop keeps up; a rate below that means timers run late.',
    registers,
  });
  ticks.inc(0);
  const proposals = new Counter({
    name: `${p}raft_proposals_total`,
    help: 'Config change proposals by outcome.',
    labelNames: ['result'] as const,
    registers,
  });
  const peerReachable = new Gauge({
    name: `${p}raft_peer_reachable`,
    help: '1 while this node has a connection up to the peer, else 0: every member for a voter, the voters for a learner.',
    labelNames: ['peer'] as const,
    registers,
  });
  const rejected = new Counter({
    name: `${p}raft_peer_messages_rejected_total`,
    help: 'Peer messages dropped before reaching Raft, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });

  const failed = new Gauge({
    name: `${p}raft_failed`,
    help: '1 when this node stopped taking part in Raft after a storage failure or a broken invariant (the log says what to do); the data plane keeps serving its last config.',
    registers,
  });
  failed.set(0);

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
    electionsStarted: (count) => electionsStarted.inc(count),
    ticked: () => ticks.inc(),
    proposal: (result) => proposalChildren.get(result)?.inc(),
    setPeerReachable: (peer, reachable) => {
      let child = peerChildren.get(peer);
      if (child === undefined) {
        child = peerReachable.labels({ peer });
        peerChildren.set(peer, child);
      }
      child.set(reachable ? 1 : 0);
    },
    forgetPeer: (peer) => {
      if (peerChildren.delete(peer)) peerReachable.remove({ peer });
    },
    peerMessageRejected: (reason) => rejected.inc({ reason }),
    setFailed: (value) => failed.set(value ? 1 : 0),
  };
}

export function createMetrics(options: CreateMetricsOptions = {}): PrometheusMetrics {
  const registry = options.registry ?? new Registry();
  const p = options.prefix ?? 'balancer_';
  const registers = [registry];

  const backends = new Map<string, Map<string, BackendChildren>>();
  const pools = new Map<string, PoolChildren>();
  /** By listener name: bounded by the listeners the config has named, a handful. */
  const listeners = new Map<string, ListenerCounts>();
  const eachBackend = (visit: (b: BackendChildren) => void): void => {
    for (const byId of backends.values()) for (const b of byId.values()) visit(b);
  };


  registerSnapshot(
    registry,
    new SnapshotFamily(
      `${p}requests_total`,
      `Requests answered, by pool, backend, route (its name, else its index; absent with no routes) and status class; backend="${NO_BACKEND_LABEL}" when no backend was reached.`,
      'counter',
      () => {
        const values: Sample[] = [];
        eachBackend((b) => {
          for (const [route, series] of b.series) {
            const labels = seriesLabels(b.pool, b.backendId, route);
            STATUS_CLASSES.forEach((code, i) => {
              // 1xx only once seen; the others from zero, so rate() sees the first error instead of a series appearing at 1.
              if (i === 0 && series.byClass[0] === 0) return;
              values.push({ labels: { ...labels, code }, value: series.byClass[i]! });
            });
          }
        });
        for (const pool of pools.values()) {
          for (const [route, counts] of pool.withoutBackend) {
            STATUS_CLASSES.forEach((code, i) => {
              const value = counts[i]!;
              if (value > 0) values.push({ labels: { ...seriesLabels(pool.pool, NO_BACKEND_LABEL, route), code }, value });
            });
          }
        }
        return values;
      },
    ),
  );
  registerSnapshot(
    registry,
    new SnapshotFamily(
      `${p}listener_requests_total`,
      'Requests (and WebSocket upgrades) that arrived on each listener, by client protocol: http1, h2 (HTTP/2 over TLS or h2c) or grpc (HTTP/2 with an application/grpc content type); answered by a backend or not.',
      'counter',
      () => {
        const values: Sample[] = [];
        for (const [listener, counts] of listeners) {
          CLIENT_PROTOCOLS.forEach((protocol, i) => values.push({ labels: { listener, protocol }, value: counts.byProtocol[i]! }));
        }
        return values;
      },
    ),
  );
  const durationName = `${p}request_duration_seconds`;
  registerSnapshot(
    registry,
    new SnapshotFamily(durationName, 'Time from receiving a request to the end of the response, by pool, backend and route.', 'histogram', () => {
      const values: Sample[] = [];
      eachBackend((b) => {
        for (const [route, series] of b.series) {
          const labels = seriesLabels(b.pool, b.backendId, route);
          let cumulative = 0;
          REQUEST_DURATION_BUCKETS.forEach((le, i) => {
            cumulative += series.buckets[i]!;
            values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${durationName}_bucket` });
          });
          values.push({ labels: { ...labels, le: '+Inf' }, value: series.durationCount, metricName: `${durationName}_bucket` });
          values.push({ labels, value: series.durationSum, metricName: `${durationName}_sum` });
          values.push({ labels, value: series.durationCount, metricName: `${durationName}_count` });
        }
      });
      return values;
    }),
  );
  let readConnections: (() => Iterable<BackendConnections>) | null = null;
  registerSnapshot(
    registry,
    new SnapshotFamily(
      `${p}backend_connections`,
      "Connections open to the backend for requests: HTTP/1.1 connections, or HTTP/2 sessions (each carrying up to 100 requests). Pools that name the same backend with the same connection settings share them, and each reports them. WebSocket tunnels are not counted.",
      'gauge',
      () => {
        const values: Sample[] = [];
        if (readConnections !== null) for (const { pool, backend, connections } of readConnections()) values.push({ labels: { pool, backend }, value: connections });
        return values;
      },
    ),
  );
  registerSnapshot(
    registry,
    new SnapshotFamily(`${p}backend_active_requests`, 'Requests in flight to the backend.', 'gauge', () => {
      const values: Sample[] = [];
      eachBackend((b) => values.push({ labels: { pool: b.pool, backend: b.backendId }, value: b.active }));
      return values;
    }),
  );

  registerSnapshot(
    registry,
    new SnapshotFamily(
      `${p}backend_latency_ewma_seconds`,
      "The backend's peak-EWMA latency (the pool's ewma.initial until measured); peak-ewma pools pick by it.",
      'gauge',
      () => {
        const values: Sample[] = [];
        eachBackend((b) => {
          if (b.latencyEwma !== null) values.push({ labels: { pool: b.pool, backend: b.backendId }, value: b.latencyEwma() });
        });
        return values;
      },
    ),
  );

  const families: Families = {
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
    retries: new Counter({
      name: `${p}retries_total`,
      help: 'Requests retried on another backend.',
      labelNames: ['pool'] as const,
      registers,
    }),
    retriesRefused: new Counter({
      name: `${p}retries_refused_total`,
      help: 'Retries not made because the retry budget was exhausted (the failure went to the client).',
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

  const rateLimited = new Counter({
    name: `${p}rate_limited_total`,
    help: 'Requests a rate limit (of the route or of its pool) answered 429, by route (its name, else its index; absent with no routes).',
    labelNames: ['route'] as const,
    registers,
  });
  const rateLimitedChildren = new Map<string, CounterChild>();

  const configVersion = new Gauge({
    name: `${p}config_version`,
    help: 'Version of the pool config this node serves.',
    registers,
  });
  const restartRequired = new Gauge({
    name: `${p}config_restart_required`,
    help: '1 while local settings of the config file are not what runs: ones only a restart applies (admin.listen, workers, cluster, ...), or TLS or admin token files that could not be used; the log names them.',
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

  // Counted when scraped, from the config history: a change is recorded after it serves (locally) or inside the
  // replicated log (in a cluster), so there is no one place that sees each change with its source as it happens.
  let changesSource: (() => { version: number; changes: readonly HistoryEntry[] }) | null = null;
  /** The last version counted; 0 until the node serves a first config (which is where counting starts). */
  let countedUpTo = 0;
  const countNewChanges = (): void => {
    if (changesSource === null) return;
    const { version, changes } = changesSource();
    if (countedUpTo === 0 || version <= countedUpTo) {
      if (countedUpTo === 0) countedUpTo = version;
      return;
    }
    const kinds = new Map(changes.map((entry) => [entry.version, entry.source.kind]));
    for (let counted = countedUpTo + 1; counted <= version; counted++) configChanges.inc({ source: kinds.get(counted) ?? 'unknown' });
    countedUpTo = version;
  };
  const configChanges = new Counter({
    name: `${p}config_changes_total`,
    help: 'Config versions this node started serving, by where the change came from: file, seed, api, cli, rollback, or unknown (no longer in the config history).',
    labelNames: ['source'] as const,
    registers,
    collect: countNewChanges,
  });
  // Every source from zero, so the first change of a kind is an increase Prometheus sees.
  for (const kind of CHANGE_KINDS) configChanges.inc({ source: kind }, 0);

  const raft = createRaftMetrics(registry, p);

  if (options.collectDefault !== false) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }

  return {
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    renderRequestFamilies: async () =>
      (await Promise.all([`${p}requests_total`, durationName].map((name) => registry.getSingleMetricAsString(name)))).join('\n'),
    requestCounters() {
      const out = new Map<string, RequestCounters>();
      const bounds = REQUEST_DURATION_BUCKETS;
      eachBackend((b) => {
        const entry: RequestCounters = { pool: b.pool, backend: b.backendId, requests: 0, errors: 0, buckets: [] };
        const perBucket = new Array<number>(bounds.length + 1).fill(0);
        for (const series of b.series.values()) {
          for (const count of series.byClass) entry.requests += count;
          entry.errors += series.byClass[CLASS_INDEX['5xx']]!;
          for (let i = 0; i < perBucket.length; i++) perBucket[i]! += series.buckets[i]!;
        }
        let cumulative = 0;
        for (let i = 0; i < perBucket.length; i++) entry.buckets.push([i < bounds.length ? bounds[i]! : Infinity, (cumulative += perBucket[i]!)]);
        out.set(`${b.pool}\u0000${b.backendId}`, entry);
      });
      // As in the text: requests answered without a backend have no durations, and a pool appears once it has one.
      for (const pool of pools.values()) {
        let requests = 0;
        let errors = 0;
        for (const counts of pool.withoutBackend.values()) {
          for (const count of counts) requests += count;
          errors += counts[CLASS_INDEX['5xx']]!;
        }
        if (requests > 0) out.set(`${pool.pool}\u0000${NO_BACKEND_LABEL}`, { pool: pool.pool, backend: NO_BACKEND_LABEL, requests, errors, buckets: [] });
      }
      return out;
    },
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
    backendConnections(read) {
      readConnections = read;
    },
    pool(pool) {
      let children = pools.get(pool);
      if (children === undefined) {
        children = new PoolChildren(families, pool);
        pools.set(pool, children);
      }
      return children;
    },
    listener(listener) {
      let counts = listeners.get(listener);
      if (counts === undefined) {
        counts = new ListenerCounts();
        listeners.set(listener, counts);
      }
      return counts;
    },
    setConfigVersion: (version) => configVersion.set(version),
    configReload: (result) => configReloads.inc({ result }),
    setRestartRequired: (required) => restartRequired.set(required ? 1 : 0),
    rateLimited(route) {
      let child = rateLimitedChildren.get(route);
      if (child === undefined) {
        child = route === NO_ROUTE_LABEL ? rateLimited.labels({}) : rateLimited.labels({ route });
        rateLimitedChildren.set(route, child);
      }
      child.inc();
    },
    countConfigChanges(source) {
      changesSource = source;
      countedUpTo = source().version;
    },
    raft,
    retain(live, routes) {
      if (routes !== undefined) {
        const labels = new Set(routes);
        eachBackend((b) => b.retainRoutes(labels));
        for (const pool of pools.values()) for (const route of pool.withoutBackend.keys()) if (route !== NO_ROUTE_LABEL && !labels.has(route)) pool.withoutBackend.delete(route);
        for (const route of rateLimitedChildren.keys()) {
          if (route === NO_ROUTE_LABEL || labels.has(route)) continue;
          rateLimitedChildren.delete(route);
          rateLimited.remove({ route });
        }
      }
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
