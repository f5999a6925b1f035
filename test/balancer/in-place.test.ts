// A running pool taking a weight, drain or backup edit in place (PoolRuntime.reconfigure) ends where a rebuild would: same picks, events, status and gauges.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { PoolRuntime, type BackendStateChange, type PoolDeps } from '../../src/balancer/pool.js';
import { inPlaceChanges } from '../../src/config/in-place.js';
import type { StrategyName } from '../../src/balancer/strategy.js';
import type { BackendConfig, PoolConfig } from '../../src/config/schema.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics, type BackendMetrics, type Metrics } from '../../src/metrics/types.js';
import { backend, poolConfig } from './pool-fixtures.js';

const STRATEGIES: readonly StrategyName[] = ['round-robin', 'weighted', 'random', 'least-request', 'peak-ewma', 'ring-hash', 'maglev'];
/** Strategies with a rotation position, which a new strategy object (a rebuilt pool's) starts from the beginning. */
const ROTATING: ReadonlySet<StrategyName> = new Set(['round-robin', 'weighted']);

/** The pool's status view; for a rotating strategy without what depends on which request went where (see ROTATING). */
function comparable(strategy: StrategyName, pool: PoolRuntime): unknown {
  const status = pool.status();
  if (!ROTATING.has(strategy)) return status;
  return { ...status, backends: status.backends.map(({ inflight: _inflight, latencyEwmaMs: _latency, ...rest }) => rest) };
}

function tally(ids: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}

/** Metrics that keep the last value of each backend's up and draining gauges. */
function gaugeMetrics(): Metrics & { gauges: Map<string, { up?: boolean; draining?: boolean }> } {
  const gauges = new Map<string, { up?: boolean; draining?: boolean }>();
  return {
    ...noopMetrics,
    gauges,
    backend(pool: string, id: string): BackendMetrics {
      const key = `${pool}/${id}`;
      const gauge = gauges.get(key) ?? {};
      gauges.set(key, gauge);
      return {
        ...noopMetrics.backend(pool, id),
        setUp: (up) => (gauge.up = up),
        setDraining: (draining) => (gauge.draining = draining),
      };
    },
  };
}

/** One pool and everything it reports to, from a seeded random of its own (two of these given the same calls agree). */
function world(config: PoolConfig) {
  const changes: BackendStateChange[] = [];
  const metrics = gaugeMetrics();
  const deps: PoolDeps = {
    clock: new FakeClock(),
    random: seededRandom(7),
    metrics,
    logger: memoryLogger('error'),
    onStateChange: (change) => changes.push({ ...change }),
  };
  const pool = PoolRuntime.create(config, undefined, deps);
  pool.start();
  return { pool, deps, changes, metrics };
}

/** `count` picks, each left in flight when its index is odd (so least-request and peak-ewma see load), with hash keys for hashing pools. */
function drive(pool: PoolRuntime, count: number, keyOf: (n: number) => number, inflight: Map<string, number>): string[] {
  const picked: string[] = [];
  for (let n = 0; n < count; n++) {
    const backend = pool.pick(undefined, { hashKey: keyOf(n) });
    picked.push(backend?.id ?? '-');
    if (backend === undefined) continue;
    backend.requestStarted();
    if (n % 2 === 0) backend.requestFinished('success', 5 + (n % 7));
    else inflight.set(backend.id, (inflight.get(backend.id) ?? 0) + 1);
  }
  return picked;
}

const weights = (weightsById: Record<string, Partial<BackendConfig>>): PoolConfig['backends'] =>
  ['a', 'b', 'c', 'd'].map((id) => backend(id, weightsById[id] ?? {}));

/** A sequence of edits that each touch only weights, drain and backup flags. */
const EDITS: ReadonlyArray<Record<string, Partial<BackendConfig>>> = [
  { b: { weight: 5 } },
  { b: { weight: 5 }, c: { drain: true } },
  { a: { weight: 3 }, b: { weight: 5 }, c: { drain: true }, d: { backup: true } },
  { a: { weight: 3 }, b: { weight: 1, drain: true }, d: { backup: true } },
  { a: { drain: true }, b: { drain: true }, c: { drain: true } },
  // Every primary drained: the backup serves.
  { a: { drain: true }, b: { drain: true }, c: { drain: true }, d: { backup: true } },
  {},
];

describe('PoolRuntime.reconfigure (weight, drain and backup edits in place)', () => {
  for (const strategy of STRATEGIES) {
    it(`${strategy}: picks, state-change events, status and gauges match a pool rebuilt for each edit`, () => {
      const base = poolConfig({ strategy, backends: weights({}) });
      const inPlace = world(base);
      let rebuilt = world(base);
      const runtimes = inPlace.pool.backends;
      const keyOf = (n: number) => (Math.imul(n + 1, 0x9e3779b1) ^ (n << 7)) >>> 0;
      const inflightA = new Map<string, number>();
      const inflightB = new Map<string, number>();
      expect(drive(inPlace.pool, 40, keyOf, inflightA)).toEqual(drive(rebuilt.pool, 40, keyOf, inflightB));
      for (const edit of EDITS) {
        const next = poolConfig({ strategy, backends: weights(edit) });
        const changed = inPlaceChanges(inPlace.pool.config, next);
        expect(changed).not.toBeNull();
        inPlace.pool.reconfigure(next, changed!);
        const successor = PoolRuntime.create(next, rebuilt.pool, rebuilt.deps);
        successor.start();
        rebuilt.pool.stop();
        rebuilt = { ...rebuilt, pool: successor };
        // The same backends, not new ones: health, in-flight counts and connections were never handed over.
        expect(inPlace.pool.backends).toBe(runtimes);
        expect(inPlace.pool.config).toBe(next);
        expect(inPlace.changes).toEqual(rebuilt.changes);
        expect(comparable(strategy, inPlace.pool)).toEqual(comparable(strategy, rebuilt.pool));
        expect(inPlace.metrics.gauges).toEqual(rebuilt.metrics.gauges);
        const [mine, theirs] = [drive(inPlace.pool, 840, (n) => keyOf(n * 31 + 5), inflightA), drive(rebuilt.pool, 840, (n) => keyOf(n * 31 + 5), inflightB)];
        if (ROTATING.has(strategy)) {
          // A rebuilt pool starts its rotation afresh; the running one goes on where it was: the same shares, in another phase.
          const [a, b] = [tally(mine), tally(theirs)];
          expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
          for (const id of Object.keys(a)) expect(Math.abs(a[id]! - b[id]!)).toBeLessThanOrEqual(4);
        } else expect(mine).toEqual(theirs);
      }
      expect(inPlace.changes.map((change) => `${change.backend}:${change.to}`)).toContain('c:draining');
    });
  }

  it('a weight edit moves a weighted pool\'s traffic share at once; a drained backend gets no new requests but its requests in flight finish', () => {
    const { pool, changes, metrics } = world(poolConfig({ strategy: 'weighted', backends: weights({}) }));
    const a = pool.get('a')!;
    a.requestStarted();
    const share = (picks: number) => tally(Array.from({ length: picks }, () => pool.pick()!.id));
    expect(share(800)).toEqual({ a: 200, b: 200, c: 200, d: 200 });
    const heavier = poolConfig({ strategy: 'weighted', backends: weights({ b: { weight: 5 } }) });
    pool.reconfigure(heavier, inPlaceChanges(pool.config, heavier)!);
    expect(share(800)).toEqual({ a: 100, b: 500, c: 100, d: 100 });
    const drained = poolConfig({ strategy: 'weighted', backends: weights({ a: { drain: true }, b: { weight: 5 } }) });
    pool.reconfigure(drained, inPlaceChanges(pool.config, drained)!);
    expect(share(700)).toEqual({ b: 500, c: 100, d: 100 });
    expect(a.state).toBe('draining');
    expect(changes).toEqual([expect.objectContaining({ backend: 'a', from: 'up', to: 'draining', reason: 'drain set in config' })]);
    expect(metrics.gauges.get('web/a')).toEqual({ up: false, draining: true });
    // The request a had in flight before the drain still ends there, and is counted.
    expect(a.inflight).toBe(1);
    a.requestFinished('success', 10);
    expect(a.inflight).toBe(0);
    expect(pool.status().backends.find((backend) => backend.id === 'a')).toMatchObject({ state: 'draining', weight: 1, inflight: 0 });
  });

  it('a hashing pool\'s keys map as in a pool built fresh from the edited weights (the table is built again)', () => {
    for (const strategy of ['ring-hash', 'maglev'] as const) {
      const backends = Array.from({ length: 20 }, (_, i) => backend(`n${i}`, { url: `http://127.0.0.1:${10_000 + i}` }));
      const { pool } = world(poolConfig({ strategy, backends }));
      const keys = Array.from({ length: 3000 }, (_, n) => Math.imul(n + 1, 0x9e3779b1) >>> 0);
      const before = keys.map((key) => pool.pick(undefined, { hashKey: key })!.id);
      const edited = poolConfig({ strategy, backends: backends.map((b, i) => (i % 3 === 0 ? { ...b, weight: 4 } : b)) });
      pool.reconfigure(edited, inPlaceChanges(pool.config, edited)!);
      const fresh = world(edited).pool;
      const after = keys.map((key) => pool.pick(undefined, { hashKey: key })!.id);
      expect(after).toEqual(keys.map((key) => fresh.pick(undefined, { hashKey: key })!.id));
      expect(after).not.toEqual(before);
    }
  });
});

describe('inPlaceChanges', () => {
  const base = poolConfig({ backends: weights({}) });

  it('is [] for the same meaning, and names the backends whose weight, drain or backup flag alone changed', () => {
    expect(inPlaceChanges(base, base)).toEqual([]);
    expect(inPlaceChanges(base, structuredClone(base))).toEqual([]);
    expect(inPlaceChanges(base, poolConfig({ backends: weights({ b: { weight: 2 }, d: { drain: true } }) }))).toEqual([1, 3]);
    expect(inPlaceChanges(base, poolConfig({ backends: weights({ c: { backup: true } }) }))).toEqual([2]);
  });

  it('is null (a rebuild) when anything else changed: a URL, an id, addresses, the backends, a pool setting', () => {
    const edited = (backends: PoolConfig['backends'], overrides: Partial<PoolConfig> = {}) => poolConfig({ backends, ...overrides });
    const list = weights({});
    expect(inPlaceChanges(base, edited(list.map((b, i) => (i === 1 ? { ...b, url: 'http://127.0.0.1:1' } : b))))).toBeNull();
    expect(inPlaceChanges(base, edited(list.map((b, i) => (i === 1 ? { ...b, id: 'z' } : b))))).toBeNull();
    expect(inPlaceChanges(base, edited(list.map((b, i) => (i === 1 ? { ...b, addresses: ['127.0.0.9'] } : b))))).toBeNull();
    expect(inPlaceChanges(base, edited(list.map((b, i) => (i === 1 ? { ...b, discovered: true as const } : b))))).toBeNull();
    expect(inPlaceChanges(base, edited(list.slice(1)))).toBeNull();
    expect(inPlaceChanges(base, edited([list[1]!, list[0]!, list[2]!, list[3]!]))).toBeNull();
    expect(inPlaceChanges(base, edited(list, { strategy: 'weighted' }))).toBeNull();
    expect(inPlaceChanges(base, edited(list, { retries: 5 }))).toBeNull();
    expect(inPlaceChanges(base, edited(list, { timeouts: { ...base.timeouts, connectMs: 1 } }))).toBeNull();
  });
});
