// The config reducer's backend commands: one pool validated again, the rest carried over, same outcome as validating it all.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyCommand, type ConfigState } from '../../src/control/config-reducer.js';
import type { BackendPatch } from '../../src/control/types.js';
import { toPlainBackend, toPlainReplicated } from '../../src/config/plain.js';
import { sameReplicated, validateReplicated } from '../../src/config/validate.js';
import { replicatedFileArb } from '../config/arbitraries.js';

function stateOf(plain: unknown): ConfigState {
  const result = validateReplicated(plain);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return { version: 1, config: result.config };
}

const start = stateOf({
  routes: [{ match: { pathPrefix: '/api' }, pool: 'api' }, { match: { pathPrefix: '/' }, pool: 'web' }],
  pools: {
    web: { strategy: 'weighted', backends: [{ url: 'http://127.0.0.1:9001', id: 'web-1' }, { url: 'http://127.0.0.1:9002', id: 'web-2', weight: 3 }] },
    api: { backends: [{ url: 'http://127.0.0.1:9100' }], healthCheck: { path: '/healthz', interval: '2s' } },
  },
});

describe('backend commands', () => {
  it('change one pool: the result reads as the whole edited config validated, and the other pools are kept as they were', () => {
    const updated = applyCommand(start, { type: 'update-backend', pool: 'web', id: 'web-2', patch: { weight: 7, drain: true } }, 2);
    if (!updated.ok) throw new Error(updated.error.message);
    expect(updated.state.version).toBe(2);
    expect(updated.state.config.pools['web']!.backends[1]).toMatchObject({ id: 'web-2', weight: 7, drain: true });
    expect(updated.state.config.pools['api']).toBe(start.config.pools['api']);
    expect(updated.state.config.routes).toBe(start.config.routes);
    expect(Object.isFrozen(updated.state.config.pools)).toBe(true);
    const whole = validateReplicated(toPlainReplicated(updated.state.config));
    expect(whole.ok && whole.config).toEqual(updated.state.config);
    expect(Object.keys(updated.state.config.pools)).toEqual(['web', 'api']);

    const added = applyCommand(updated.state, { type: 'add-backend', pool: 'api', backend: { url: 'http://127.0.0.1:9101', weight: 2 } }, 3);
    expect(added).toMatchObject({ ok: true, backend: { id: '127.0.0.1:9101', url: 'http://127.0.0.1:9101', weight: 2 } });
    const removed = applyCommand(updated.state, { type: 'remove-backend', pool: 'web', id: 'web-1' }, 3);
    expect(removed.ok && removed.state.config.pools['web']!.backends.map((b) => b.id)).toEqual(['web-2']);
  });

  it('refuse a bad edit with the path a whole-config validation gives, and name a duplicate a conflict', () => {
    const bad = applyCommand(start, { type: 'add-backend', pool: 'api', backend: { url: 'ftp://127.0.0.1:21' } }, 2);
    expect(bad).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', details: [{ path: 'pools.api.backends[1].url' }] } });
    const duplicate = applyCommand(start, { type: 'add-backend', pool: 'web', backend: { url: 'http://127.0.0.1:9003', id: 'web-1' } }, 2);
    expect(duplicate).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
    expect(applyCommand(start, { type: 'update-backend', pool: 'web', id: 'nope', patch: { weight: 2 } }, 2)).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  });
});

describe('a weight or drain edit', () => {
  it('keeps every other backend of the pool as the very object it was', () => {
    const updated = applyCommand(start, { type: 'update-backend', pool: 'web', id: 'web-2', patch: { weight: 5 } }, 2);
    if (!updated.ok) throw new Error(updated.error.message);
    const [first, second] = updated.state.config.pools['web']!.backends;
    expect(first).toBe(start.config.pools['web']!.backends[0]);
    expect(second).toMatchObject({ id: 'web-2', weight: 5, drain: false });
    expect(Object.isFrozen(second)).toBe(true);
    expect(Object.isFrozen(updated.state.config.pools['web']!.backends)).toBe(true);
  });

  it('shares the plain forms of the backends it kept: built once, frozen, the same objects in the next config\'s plain form', () => {
    const updated = applyCommand(start, { type: 'update-backend', pool: 'web', id: 'web-1', patch: { weight: 4 } }, 2);
    if (!updated.ok) throw new Error(updated.error.message);
    const before = toPlainReplicated(start.config).pools['web']!['backends'] as object[];
    const after = toPlainReplicated(updated.state.config).pools['web']!['backends'] as object[];
    expect(after[1]).toBe(before[1]);
    expect(after[0]).not.toBe(before[0]);
    expect(after[0]).toEqual({ url: 'http://127.0.0.1:9001', id: 'web-1', weight: 4 });
    expect(Object.isFrozen(after[1])).toBe(true);
    expect(toPlainBackend(updated.state.config.pools['web']!.backends[0]!)).toBe(after[0]);
  });

  it('refuses a bad weight with the path of the backend in its pool', () => {
    const bad = applyCommand(start, { type: 'update-backend', pool: 'web', id: 'web-2', patch: { weight: 0 } }, 2);
    expect(bad).toMatchObject({ ok: false, error: { code: 'CONFIG_INVALID', details: [{ path: 'pools.web.backends[1].weight' }] } });
  });

  it('property: gives what validating the whole edited config gives, or the same problems', () => {
    // Values as a log entry or a request body may carry them: in range or not, fractional, of another type.
    const weightArb = fc.oneof(fc.integer({ min: -1, max: 70_000 }), fc.double({ noNaN: false }), fc.constantFrom<unknown>('3', null, true, 2.5, 10_000, 10_001));
    const drainArb = fc.oneof(fc.boolean(), fc.constantFrom<unknown>('true', 0, 1, null));
    const edit = fc.record({ pick: fc.nat(), weight: fc.option(weightArb, { nil: undefined }), drain: fc.option(drainArb, { nil: undefined }) });
    fc.assert(
      fc.property(replicatedFileArb, edit, (from, { pick, weight, drain }) => {
        const validated = validateReplicated(from);
        if (!validated.ok) return;
        const state: ConfigState = { version: 1, config: validated.config };
        const candidates = Object.values(state.config.pools).flatMap((pool) => pool.backends.map((b, index) => [pool.name, b.id, index] as const));
        if (candidates.length === 0) return;
        const [pool, id, index] = candidates[pick % candidates.length]!;
        const patch = { ...(weight === undefined ? {} : { weight }), ...(drain === undefined ? {} : { drain }) };
        const result = applyCommand(state, { type: 'update-backend', pool, id, patch: patch as BackendPatch }, 2);
        // The whole config, edited in its plain form and validated from scratch.
        // (Plain forms of validated pools are shared and frozen: the edit is made in copies.)
        const plain = toPlainReplicated(state.config) as { routes: unknown[]; pools: Record<string, { backends: Record<string, unknown>[] }> };
        const backends = [...plain.pools[pool]!.backends];
        backends[index] = { ...backends[index], id, ...patch };
        plain.pools[pool] = { ...plain.pools[pool]!, backends };
        const whole = validateReplicated(plain);
        if (whole.ok) {
          expect(result.ok && result.state.config).toEqual(whole.config);
        } else {
          expect(result.ok).toBe(false);
          if (!result.ok) expect(result.error.details.map((problem) => problem.path).sort()).toEqual(whole.problems.map((problem) => problem.path).sort());
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('sameReplicated', () => {
  it('compares by value: a copy is the same, one weight or the order of pools is not', () => {
    const copy = stateOf(toPlainReplicated(start.config)).config;
    expect(copy.pools['web']).not.toBe(start.config.pools['web']);
    expect(sameReplicated(start.config, copy)).toBe(true);
    const updated = applyCommand(start, { type: 'update-backend', pool: 'web', id: 'web-2', patch: { weight: 4 } }, 2);
    if (!updated.ok) throw new Error(updated.error.message);
    expect(sameReplicated(start.config, updated.state.config)).toBe(false);
    expect(sameReplicated(updated.state.config, copy)).toBe(false);
    const reordered = { routes: start.config.routes, pools: { api: start.config.pools['api']!, web: start.config.pools['web']! } };
    expect(sameReplicated(start.config, reordered)).toBe(false);
    expect(sameReplicated(start.config, { routes: [...start.config.routes].reverse(), pools: start.config.pools })).toBe(false);
  });
});
