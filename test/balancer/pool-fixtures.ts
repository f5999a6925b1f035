// Builders for pool tests: a full PoolConfig with overrides, recording metrics, and a scriptable probe.

import { DEFAULTS, type BackendConfig, type HealthCheckConfig, type PoolConfig } from '../../src/config/schema.js';
import type { Probe, ProbeResult, ProbeTarget } from '../../src/health/probe.js';
import { noopMetrics, type BackendMetrics, type HealthCheckResult, type Metrics } from '../../src/metrics/types.js';

export function backend(id: string, overrides: Partial<BackendConfig> = {}): BackendConfig {
  return { id, url: `http://127.0.0.1:${9000 + id.charCodeAt(id.length - 1)}`, weight: 1, drain: false, backup: false, ...overrides };
}

export function healthCheck(overrides: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return {
    path: '/healthz',
    intervalMs: 1_000,
    unhealthyIntervalMs: 500,
    timeoutMs: 200,
    rise: 2,
    fall: 2,
    expectedStatuses: [[200, 399]],
    host: null,
    jitter: 0,
    grpc: null,
    reuseConnection: true,
    ...overrides,
  };
}

export function poolConfig(overrides: Partial<PoolConfig> = {}): PoolConfig {
  return {
    name: 'web',
    strategy: 'round-robin',
    backends: [backend('a'), backend('b'), backend('c')],
    hashOn: null,
    ringSize: DEFAULTS.ringSize,
    sticky: null,
    rateLimit: null,
    discovery: null,
    healthCheck: null,
    outlierDetection: {
      enabled: true,
      consecutiveGatewayFailures: 3,
      consecutive5xx: 0,
      baseEjectionTimeMs: 10_000,
      maxEjectionTimeMs: 60_000,
      maxEjectionPercent: 100,
      activeCheckUnejects: true,
    },
    timeouts: DEFAULTS.timeouts,
    retries: 2,
    retryBudget: { percent: 20, minConcurrent: 3 },
    panicThresholdPercent: 0,
    slowStartMs: 0,
    ewma: DEFAULTS.ewma,
    circuitBreaker: { maxRequestsPerBackend: 0, maxPendingPerBackend: 0 },
    connections: { max: 0 },
    protocol: 'http1',
    tls: { ca: null, serverName: null, cert: null, key: null },
    ...overrides,
  };
}

export interface BackendRecord {
  up: boolean[];
  checks: HealthCheckResult[];
  ejections: number;
  /** Reads the latency gauge, in seconds, once the pool said where from. */
  latency: (() => number) | null;
}

/** Metrics that keep what they are told; `onCheck` sees each health-check result as it is recorded. */
export function recordingMetrics(
  onCheck?: (backend: string, result: HealthCheckResult) => void,
): Metrics & { records: Map<string, BackendRecord> } {
  const records = new Map<string, BackendRecord>();
  return {
    ...noopMetrics,
    records,
    backend(pool: string, id: string): BackendMetrics {
      const key = `${pool}/${id}`;
      let record = records.get(key);
      if (record === undefined) {
        record = { up: [], checks: [], ejections: 0, latency: null };
        records.set(key, record);
      }
      const r = record;
      return {
        requestStarted() {},
        requestFinished() {},
        upstreamError() {},
        healthCheck: (result) => {
          r.checks.push(result);
          onCheck?.(id, result);
        },
        setUp: (up) => r.up.push(up),
        ejected: () => r.ejections++,
        latencyEstimate: (read) => {
          r.latency = read;
        },
      };
    },
  };
}

/** A probe whose answer per backend port is set by the test; records every call. */
export function scriptedProbe(): Probe & {
  answers: Map<string, ProbeResult>;
  calls: string[];
  hold: boolean;
  release(): void;
} {
  const answers = new Map<string, ProbeResult>();
  const calls: string[] = [];
  const held: Array<() => void> = [];
  const probe = Object.assign(
    (target: ProbeTarget): Promise<ProbeResult> => {
      calls.push(target.url.host);
      const answer = () => answers.get(target.url.host) ?? { result: 'pass' as const, detail: 'HTTP 200' };
      if (probe.hold) return new Promise((resolve) => held.push(() => resolve(answer())));
      return Promise.resolve(answer());
    },
    {
      answers,
      calls,
      hold: false,
      release() {
        for (const resolve of held.splice(0)) resolve();
      },
    },
  );
  return probe;
}

/** Lets resolved probe promises run their continuations. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
