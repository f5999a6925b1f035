// Reading balancer's request counters back from the Prometheus text of /metrics, and the rates between two reads:
// what `balancer top` shows per backend (requests/s, 5xx ratio, p50/p99) without a Prometheus server.

/** One pool+backend's counters at one moment; `buckets` are cumulative [upper bound, count] pairs, +Inf last. */
export interface RequestCounters {
  readonly pool: string;
  readonly backend: string;
  requests: number;
  errors: number;
  buckets: Array<[number, number]>;
}

export interface RequestRates {
  readonly requestsPerSecond: number;
  /** Share of the interval's requests answered with a 5xx; null without requests. */
  readonly errorRatio: number | null;
  /** Seconds; null without requests. */
  readonly p50: number | null;
  readonly p99: number | null;
}

const LINE = /^(balancer_requests_total|balancer_request_duration_seconds_bucket)\{([^}]*)\}\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** pool\u0000backend -> counters summed over routes, from the text exposition (other families are skipped). */
export function parseRequestCounters(text: string): Map<string, RequestCounters> {
  const out = new Map<string, RequestCounters>();
  for (const line of text.split('\n')) {
    const match = LINE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const label of match[2]!.matchAll(LABEL)) labels[label[1]!] = unescapeLabel(label[2]!);
    const pool = labels['pool'] ?? '';
    const backend = labels['backend'] ?? '';
    const key = `${pool}\u0000${backend}`;
    let entry = out.get(key);
    if (entry === undefined) {
      entry = { pool, backend, requests: 0, errors: 0, buckets: [] };
      out.set(key, entry);
    }
    const value = Number(match[3]);
    if (match[1] === 'balancer_requests_total') {
      entry.requests += value;
      if (labels['code'] === '5xx') entry.errors += value;
    } else {
      // One series per route: the same bound of another route's series adds to it.
      const bound = labels['le'] === '+Inf' ? Infinity : Number(labels['le']);
      const same = entry.buckets.find(([existing]) => existing === bound);
      if (same === undefined) entry.buckets.push([bound, value]);
      else same[1] += value;
    }
  }
  for (const entry of out.values()) entry.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the bucket as PromQL's histogram_quantile
 * does; the highest finite bound when it falls in +Inf; null without observations.
 */
export function histogramQuantile(q: number, buckets: ReadonlyArray<readonly [number, number]>): number | null {
  const total = buckets.length === 0 ? 0 : buckets[buckets.length - 1]![1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let previousBound = 0;
  let previousCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === Infinity) return previousBound;
      return previousBound + (bound - previousBound) * ((rank - previousCount) / Math.max(count - previousCount, 1e-12));
    }
    previousBound = bound;
    previousCount = count;
  }
  return previousBound;
}

/** Rates between two reads `seconds` apart; null when a counter went backwards (a restart) or no time passed. */
export function requestRates(before: RequestCounters, after: RequestCounters, seconds: number): RequestRates | null {
  if (!(seconds > 0) || after.requests < before.requests) return null;
  const requests = after.requests - before.requests;
  const earlier = new Map(before.buckets);
  const deltas = after.buckets.map(([bound, count]): [number, number] => [bound, count - (earlier.get(bound) ?? 0)]);
  return {
    requestsPerSecond: requests / seconds,
    errorRatio: requests > 0 ? Math.max(0, after.errors - before.errors) / requests : null,
    p50: requests > 0 ? histogramQuantile(0.5, deltas) : null,
    p99: requests > 0 ? histogramQuantile(0.99, deltas) : null,
  };
}

/** One set of counters adding up several (a pool's backends and its requests answered without one); buckets by bound. */
export function sumCounters(pool: string, parts: Iterable<RequestCounters>): RequestCounters {
  const buckets = new Map<number, number>();
  let requests = 0;
  let errors = 0;
  for (const part of parts) {
    requests += part.requests;
    errors += part.errors;
    for (const [bound, count] of part.buckets) buckets.set(bound, (buckets.get(bound) ?? 0) + count);
  }
  return { pool, backend: '', requests, errors, buckets: [...buckets].sort((a, b) => a[0] - b[0]) };
}
