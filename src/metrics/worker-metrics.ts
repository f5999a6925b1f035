// Merges the primary's metrics with its data-plane workers' into one exposition: counters stay monotonic across
// worker deaths, and each gauge family is combined the way its meaning asks for (not summed blindly).

import { Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

export type MetricFamilySnapshot = MetricObjectWithValues<MetricValue<string>>;

/**
 * How a gauge family combines across the primary and its workers:
 * - `sum`: a quantity each process holds its own share of (requests in flight, open fds and handles, memory);
 * - `max` / `min`: a per-process reading where the worst process is what matters (event-loop lag) or every
 *   process has the same value (the fd limit: summing it showed three times the real limit);
 * - `primary`: state only the primary keeps (health, config, Raft, latency estimates, start time, version);
 *   a worker's copy is stale or zero.
 */
export type GaugeAggregation = 'sum' | 'max' | 'min' | 'primary';

/** Every gauge family balancer exports, with its aggregation. A gauge missing here is taken from the primary only. */
export const GAUGE_AGGREGATION: Readonly<Record<string, GaugeAggregation>> = {
  balancer_backend_active_requests: 'sum',
  balancer_backend_connections: 'sum',
  balancer_backend_up: 'primary',
  balancer_backend_draining: 'primary',
  balancer_backend_latency_ewma_seconds: 'primary',
  balancer_config_version: 'primary',
  balancer_config_restart_required: 'primary',
  balancer_raft_term: 'primary',
  balancer_raft_commit_index: 'primary',
  balancer_raft_applied_index: 'primary',
  balancer_raft_is_leader: 'primary',
  balancer_raft_failed: 'primary',
  balancer_raft_peer_reachable: 'primary',
  process_open_fds: 'sum',
  process_max_fds: 'max',
  process_resident_memory_bytes: 'sum',
  process_virtual_memory_bytes: 'sum',
  process_heap_bytes: 'sum',
  process_start_time_seconds: 'primary',
  nodejs_active_handles: 'sum',
  nodejs_active_requests: 'sum',
  nodejs_active_resources: 'sum',
  nodejs_external_memory_bytes: 'sum',
  nodejs_heap_size_total_bytes: 'sum',
  nodejs_heap_size_used_bytes: 'sum',
  nodejs_heap_space_size_available_bytes: 'sum',
  nodejs_heap_space_size_total_bytes: 'sum',
  nodejs_heap_space_size_used_bytes: 'sum',
  nodejs_eventloop_lag_seconds: 'max',
  nodejs_eventloop_lag_min_seconds: 'min',
  nodejs_eventloop_lag_max_seconds: 'max',
  nodejs_eventloop_lag_mean_seconds: 'max',
  nodejs_eventloop_lag_stddev_seconds: 'max',
  nodejs_eventloop_lag_p50_seconds: 'max',
  nodejs_eventloop_lag_p90_seconds: 'max',
  nodejs_eventloop_lag_p99_seconds: 'max',
  nodejs_version_info: 'primary',
};

/** Counters and histograms (buckets, sum and count) only grow: they are summed, and a dead worker's last values stay in. */
function isMonotonic(family: MetricFamilySnapshot): boolean {
  const type = String(family.type);
  return type === 'counter' || type === 'histogram';
}

interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
}

function sampleKey(sample: Sample): string {
  const labels = Object.keys(sample.labels)
    .sort()
    .map((name) => `${name}=${JSON.stringify(String(sample.labels[name]))}`);
  return `${sample.metricName ?? ''}{${labels.join(',')}}`;
}

interface FoldedFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricFamilySnapshot['type'];
  readonly samples: Map<string, Sample>;
}

/**
 * The counts of workers that are gone, per family and series. Once folded in they never go away while the
 * primary still has the pool and backend they are about (a series of a removed backend is dropped, as the live
 * processes drop theirs).
 */
export class RetiredWorkerCounts {
  private readonly families = new Map<string, FoldedFamily>();

  /** Adds a dead worker's last snapshot (its counters and histograms; its gauges died with it). */
  fold(snapshot: readonly MetricFamilySnapshot[]): void {
    for (const family of snapshot) {
      if (!isMonotonic(family)) continue;
      let folded = this.families.get(family.name);
      if (folded === undefined) {
        folded = { name: family.name, help: family.help, type: family.type, samples: new Map() };
        this.families.set(family.name, folded);
      }
      for (const sample of family.values as Sample[]) {
        const key = sampleKey(sample);
        const before = folded.samples.get(key);
        folded.samples.set(key, { ...sample, value: (before?.value ?? 0) + sample.value });
      }
    }
  }

  /** Drops series about pools or backends the primary no longer exports (removed from the config). */
  prune(primary: readonly MetricFamilySnapshot[]): void {
    const pools = new Set<string>();
    const backends = new Set<string>();
    for (const family of primary) {
      for (const sample of family.values as Sample[]) {
        const pool = sample.labels['pool'];
        if (pool === undefined) continue;
        pools.add(String(pool));
        const backend = sample.labels['backend'];
        if (backend !== undefined) backends.add(`${String(pool)}\u0000${String(backend)}`);
      }
    }
    for (const family of this.families.values()) {
      for (const [key, sample] of family.samples) {
        const pool = sample.labels['pool'];
        if (pool === undefined) continue;
        const backend = sample.labels['backend'];
        // The empty backend label counts requests that reached no backend: it lives as long as its pool.
        const gone = !pools.has(String(pool)) || (backend !== undefined && backend !== '' && !backends.has(`${String(pool)}\u0000${String(backend)}`));
        if (gone) family.samples.delete(key);
      }
    }
  }

  snapshot(): MetricFamilySnapshot[] {
    return [...this.families.values()].map(
      (family) => ({ name: family.name, help: family.help, type: family.type, aggregator: 'sum', values: [...family.samples.values()] }) as MetricFamilySnapshot,
    );
  }
}

function combine(aggregation: GaugeAggregation, values: readonly number[]): number {
  switch (aggregation) {
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'max':
      return Math.max(...values);
    case 'min':
      return Math.min(...values);
    case 'primary':
      return values[0]!;
  }
}

/**
 * One list of families from the primary's own snapshot, its live workers' latest snapshots and the retired
 * workers' counts. Counters and histograms: the sum over all of them. Gauges: by GAUGE_AGGREGATION, over the
 * processes that report the series (`primary` ones only from the primary).
 */
export function mergeWorkerMetrics(
  primary: readonly MetricFamilySnapshot[],
  workers: readonly (readonly MetricFamilySnapshot[])[],
  retired: readonly MetricFamilySnapshot[],
): MetricFamilySnapshot[] {
  interface Merging {
    readonly first: MetricFamilySnapshot;
    readonly samples: Map<string, { sample: Sample; values: number[] }>;
  }
  const merged = new Map<string, Merging>();
  const add = (family: MetricFamilySnapshot, fromPrimary: boolean): void => {
    if (!isMonotonic(family) && !fromPrimary && (GAUGE_AGGREGATION[family.name] ?? 'primary') === 'primary') return;
    let entry = merged.get(family.name);
    if (entry === undefined) {
      entry = { first: family, samples: new Map() };
      merged.set(family.name, entry);
    }
    for (const sample of family.values as Sample[]) {
      const key = sampleKey(sample);
      const seen = entry.samples.get(key);
      if (seen === undefined) entry.samples.set(key, { sample, values: [sample.value] });
      else seen.values.push(sample.value);
    }
  };
  for (const family of primary) add(family, true);
  for (const snapshot of workers) for (const family of snapshot) add(family, false);
  for (const family of retired) add(family, false);

  return [...merged.values()].map(({ first, samples }) => {
    const aggregation: GaugeAggregation = isMonotonic(first) ? 'sum' : (GAUGE_AGGREGATION[first.name] ?? 'primary');
    const values = [...samples.values()].map(({ sample, values: all }) => ({ ...sample, value: combine(aggregation, all) }));
    return { name: first.name, help: first.help, type: first.type, aggregator: 'first', values } as MetricFamilySnapshot;
  });
}

/**
 * Keeps merged counters and histograms from ever showing a smaller value than the last scrape did. Summing the
 * same numbers in another order (a worker's counts move from the live list to the retired one when it dies) can
 * come out a last bit lower (0.025648734999820590 -> ...587), and Prometheus reads any decrease as a reset:
 * rate() would count the whole value again. Only series of this scrape are remembered, so memory follows them.
 */
export class MonotonicClamp {
  private last = new Map<string, number>();

  apply(families: readonly MetricFamilySnapshot[]): MetricFamilySnapshot[] {
    const seen = new Map<string, number>();
    const clamped = families.map((family) => {
      if (!isMonotonic(family)) return family;
      const values = (family.values as Sample[]).map((sample) => {
        const key = `${family.name}${sampleKey(sample)}`;
        const value = Math.max(sample.value, this.last.get(key) ?? -Infinity);
        seen.set(key, value);
        return value === sample.value ? sample : { ...sample, value };
      });
      return { ...family, values } as MetricFamilySnapshot;
    });
    this.last = seen;
    return clamped;
  }
}

/** The text exposition of merged families, rendered by prom-client as for one process. */
export async function renderMerged(families: readonly MetricFamilySnapshot[]): Promise<string> {
  const registry = new Registry();
  for (const family of families) {
    // The Registry only needs name, get() and reset(); its declared parameter type is prom-client's Metric class.
    registry.registerMetric({ name: family.name, get: () => family, reset: () => undefined } as unknown as Parameters<Registry['registerMetric']>[0]);
  }
  return registry.metrics();
}
