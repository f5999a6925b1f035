// The last 15 minutes of each pool, one sample per second, for the dashboard's charts: requests/s, 5xx ratio,
// p50/p99 latency, each backend's state, and config changes with their source. Fixed-size rings: memory does not grow.

import type { ChangeSource, HistoryEntry } from '../control/history.js';
import type { NodeStatus } from '../control/types.js';
import { parseRequestCounters, requestRates, sumCounters, type RequestCounters } from '../metrics/request-counters.js';

const HISTORY_SECONDS = 900;
const HISTORY_INTERVAL_MS = 1_000;
/** Config changes kept for the markers; older ones fall out of the window anyway. */
const MAX_MARKERS = 200;

const STATE_CODES: Readonly<Record<string, string>> = { up: 'u', down: 'd', ejected: 'e', draining: 'r' };

export interface HistorySources {
  /** Prometheus text holding at least the request counter and duration families (across worker processes when there are any). */
  requestFamilies(): Promise<string>;
  /** The counters requestFamilies' text holds, read directly where they live in this process (then the text is never read). */
  requestCounters?(): Map<string, RequestCounters>;
  status(): NodeStatus;
  /** The config history, newest first: where each marker's source and change come from. */
  changes(): readonly HistoryEntry[];
}

/** A config version that started serving between two samples, drawn as a marker on the charts. */
export interface ConfigMarker {
  /** The sample that first saw it. */
  readonly at: number;
  readonly version: number;
  /** Where the change came from; null when the config history no longer holds the version. */
  readonly source: ChangeSource | null;
  /** What it did ("add backend web/web-4"); null like source. */
  readonly change: string | null;
}

/** What GET /api/v1/history returns: parallel arrays, oldest first; null where there was nothing to measure. */
export interface HistorySnapshot {
  readonly intervalMs: number;
  readonly windowSeconds: number;
  /** Wall-clock ms of each sample. */
  readonly at: readonly number[];
  readonly pools: ReadonlyArray<{
    readonly name: string;
    readonly requestsPerSecond: ReadonlyArray<number | null>;
    readonly errorRatio: ReadonlyArray<number | null>;
    readonly p50: ReadonlyArray<number | null>;
    readonly p99: ReadonlyArray<number | null>;
    /** One letter per sample: u up, d down, e ejected, r draining, - not in the config then. */
    readonly backends: ReadonlyArray<{ readonly id: string; readonly states: string }>;
  }>;
  readonly configChanges: readonly ConfigMarker[];
}

class Ring {
  readonly values: Float64Array;
  constructor(size: number) {
    this.values = new Float64Array(size).fill(Number.NaN);
  }
}

interface PoolSeries {
  readonly rps: Ring;
  readonly errors: Ring;
  readonly p50: Ring;
  readonly p99: Ring;
  readonly states: Map<string, Uint8Array>;
}

export class MetricsHistory {
  private readonly size: number;
  private readonly at: Float64Array;
  /** Samples taken; the ring slot of sample n is n % size. */
  private taken = 0;
  private readonly pools = new Map<string, PoolSeries>();
  private readonly markers: ConfigMarker[] = [];
  private previous: { at: number; counters: Map<string, RequestCounters> } | null = null;
  private lastVersion: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private sampling = false;

  constructor(
    private readonly sources: HistorySources,
    size = HISTORY_SECONDS,
  ) {
    this.size = size;
    this.at = new Float64Array(size).fill(Number.NaN);
  }

  start(): void {
    if (this.timer !== null) return;
    // A failed read (a worker slow to answer) leaves a one-second gap in the charts, nothing worse.
    this.timer = setInterval(() => void this.sample().catch(() => undefined), HISTORY_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes one sample now (the timer calls this each second; tests call it directly). */
  async sample(now = Date.now()): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const status = this.sources.status();
      const direct = this.sources.requestCounters?.();
      if (direct !== undefined) {
        this.record(now, status, direct);
        return;
      }
      this.record(now, status, parseRequestCounters(await this.sources.requestFamilies()));
    } finally {
      this.sampling = false;
    }
  }

  private record(now: number, status: NodeStatus, counters: Map<string, RequestCounters>): void {
    const slot = this.taken % this.size;
    this.taken++;
    this.at[slot] = now;
    if (this.lastVersion !== null && status.version !== this.lastVersion) this.addMarkers(now, this.lastVersion, status.version);
    this.lastVersion = status.version;
    const seconds = this.previous === null ? 0 : (now - this.previous.at) / 1000;
    const live = new Set<string>();
    for (const pool of status.pools) {
      live.add(pool.name);
      const series = this.series(pool.name);
      const parts = [...counters.values()].filter((c) => c.pool === pool.name);
      const before = this.previous === null ? null : [...this.previous.counters.values()].filter((c) => c.pool === pool.name);
      const rates = before === null ? null : requestRates(sumCounters(pool.name, before), sumCounters(pool.name, parts), seconds);
      series.rps.values[slot] = rates?.requestsPerSecond ?? Number.NaN;
      series.errors.values[slot] = rates?.errorRatio ?? Number.NaN;
      series.p50.values[slot] = rates?.p50 ?? Number.NaN;
      series.p99.values[slot] = rates?.p99 ?? Number.NaN;
      const seen = new Set<string>();
      for (const backend of pool.backends) {
        seen.add(backend.id);
        let states = series.states.get(backend.id);
        if (states === undefined) {
          states = new Uint8Array(this.size).fill(0x2d); // '-'
          series.states.set(backend.id, states);
        }
        states[slot] = (STATE_CODES[backend.state] ?? '-').charCodeAt(0);
      }
      for (const [id, states] of series.states) {
        if (seen.has(id)) continue;
        states[slot] = 0x2d;
        // Gone for a whole window: nothing left to draw.
        if (states.every((code) => code === 0x2d)) series.states.delete(id);
      }
    }
    // A pool gone from the config: it stops being sampled, and is forgotten once its window is empty.
    for (const [name, series] of this.pools) {
      if (live.has(name)) continue;
      series.rps.values[slot] = series.errors.values[slot] = series.p50.values[slot] = series.p99.values[slot] = Number.NaN;
      if (series.rps.values.every(Number.isNaN) && [...series.states.values()].every((s) => s.every((c) => c === 0x2d))) this.pools.delete(name);
    }
    this.previous = { at: now, counters };
  }

  /** One marker per version made since the last sample (a burst of API calls is several), each with its source. */
  private addMarkers(now: number, previous: number, current: number): void {
    const entries = this.sources.changes().filter((entry) => entry.version > previous && entry.version <= current);
    const versions = new Set([...entries.map((entry) => entry.version), current]);
    for (const version of [...versions].sort((a, b) => a - b)) {
      const entry = entries.find((candidate) => candidate.version === version);
      this.markers.push({ at: now, version, source: entry?.source ?? null, change: entry?.change ?? null });
    }
    if (this.markers.length > MAX_MARKERS) this.markers.splice(0, this.markers.length - MAX_MARKERS);
  }

  private series(name: string): PoolSeries {
    let series = this.pools.get(name);
    if (series === undefined) {
      series = { rps: new Ring(this.size), errors: new Ring(this.size), p50: new Ring(this.size), p99: new Ring(this.size), states: new Map() };
      this.pools.set(name, series);
    }
    return series;
  }

  snapshot(): HistorySnapshot {
    const count = Math.min(this.taken, this.size);
    const first = this.taken - count;
    const order = Array.from({ length: count }, (_, i) => (first + i) % this.size);
    const values = (ring: Float64Array) => order.map((slot) => (Number.isNaN(ring[slot]!) ? null : ring[slot]!));
    const oldest = count > 0 ? this.at[order[0]!]! : Infinity;
    return {
      intervalMs: HISTORY_INTERVAL_MS,
      windowSeconds: this.size,
      at: values(this.at) as number[],
      pools: [...this.pools].map(([name, series]) => ({
        name,
        requestsPerSecond: values(series.rps.values),
        errorRatio: values(series.errors.values),
        p50: values(series.p50.values),
        p99: values(series.p99.values),
        backends: [...series.states].map(([id, states]) => ({ id, states: order.map((slot) => String.fromCharCode(states[slot]!)).join('') })),
      })),
      configChanges: this.markers.filter((m) => m.at >= oldest),
    };
  }
}
