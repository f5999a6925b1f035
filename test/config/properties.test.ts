import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { toPlainPool, toPlainReplicated } from '../../src/config/plain.js';
import { applyCommand } from '../../src/control/config-reducer.js';
import {
  validateConfig,
  validateConfigText,
  validateReplicated,
  validateReplicatedText,
  type ValidationResult,
} from '../../src/config/validate.js';
import { replicatedFileArb } from './arbitraries.js';
import { FULL_EXAMPLE } from './fixtures.js';

/** A validator bug shows up as this catch-all message rather than a throw; neither may happen. */
function expectWellFormed(result: ValidationResult<unknown>): void {
  expect(typeof result.ok).toBe('boolean');
  if (result.ok) return;
  expect(result.problems.length).toBeGreaterThan(0);
  for (const problem of result.problems) {
    expect(typeof problem.message).toBe('string');
    expect(problem.message).not.toContain('could not be validated');
    if (problem.line !== undefined) expect(problem.line).toBeGreaterThanOrEqual(1);
    if (problem.column !== undefined) expect(problem.column).toBeGreaterThanOrEqual(1);
  }
}

describe('never throws', () => {
  test('arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => {
        expectWellFormed(validateConfigText(text, 'f'));
        expectWellFormed(validateReplicatedText(text, 'f'));
      }),
      { numRuns: 500 },
    );
  });

  test('arbitrary JSON-ish values, as values and as YAML text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        expectWellFormed(validateConfig(value));
        expectWellFormed(validateReplicated(value));
        expectWellFormed(validateConfigText(stringify(value), 'f'));
        expectWellFormed(validateReplicatedText(JSON.stringify(value) ?? 'null', 'f'));
      }),
      { numRuns: 300 },
    );
  });

  test('values shaped almost like a config, with anything in the leaves', () => {
    const leaf = fc.anything({ maxDepth: 2, withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true });
    fc.assert(
      fc.property(leaf, leaf, leaf, leaf, (a, b, c, d) => {
        expectWellFormed(validateReplicated({ routes: [{ pool: a, match: b }], pools: { web: { backends: [c], healthCheck: d } } }));
        expectWellFormed(validateReplicated({ routes: a, pools: { x: b, y: { strategy: c, timeouts: d } } }));
        expectWellFormed(validateConfig({ cluster: a, limits: b, admin: c, trustedProxies: d }));
      }),
      { numRuns: 300 },
    );
  });

  test('the full example with random characters removed or inserted', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(FULL_EXAMPLE.length), fc.nat(8), fc.constantFrom('', ' ', ':', '-', '\n', '{', '[', '"', 'x', '&a', '*a', '!!str ')), { minLength: 1, maxLength: 4 }),
        (mutations) => {
          let text = FULL_EXAMPLE;
          for (const [at, remove, insert] of mutations) text = text.slice(0, at) + insert + text.slice(at + remove);
          expectWellFormed(validateConfigText(text, 'f'));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the plain form', () => {
  test('validateReplicated(toPlainReplicated(x)) deep-equals x, also after JSON transport', () => {
    let validCount = 0;
    fc.assert(
      fc.property(replicatedFileArb, (input) => {
        const first = validateReplicated(input);
        if (!first.ok) return;
        validCount++;
        const plain = JSON.parse(JSON.stringify(toPlainReplicated(first.config))) as unknown;
        const second = validateReplicated(plain);
        expect(second.ok).toBe(true);
        if (second.ok) expect(second.config).toEqual(first.config);
      }),
      { numRuns: 300 },
    );
    // The generator must mostly produce valid configs, or the property proves little.
    expect(validCount).toBeGreaterThan(150);
  });

  test('leaves defaults out and writes durations and sizes readably', () => {
    const result = validateReplicated({
      routes: [{ match: { pathPrefix: '/' }, pool: 'web', maxBodySize: 10 * 1024 * 1024 }],
      pools: {
        web: {
          strategy: 'round-robin',
          backends: [{ url: 'http://127.0.0.1:9001', weight: 1 }, { url: 'http://127.0.0.1:9002', id: 'b', weight: 3, drain: true }],
          healthCheck: { path: '/healthz', interval: 2000, timeout: '1500ms' },
          timeouts: { connect: 5000, response: 90_000 },
        },
      },
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(toPlainReplicated(result.config)).toEqual({
      routes: [{ pool: 'web', maxBodySize: '10mb' }],
      pools: {
        web: {
          backends: [{ url: 'http://127.0.0.1:9001' }, { url: 'http://127.0.0.1:9002', id: 'b', weight: 3, drain: true }],
          healthCheck: { path: '/healthz', timeout: '1500ms' },
          timeouts: { response: '90s' },
        },
      },
    });
  });

  test('a validated pool\'s plain form is built once, frozen through, and a pool left alone by a command keeps it', () => {
    const result = validateReplicated({
      routes: [{ match: { pathPrefix: '/' }, pool: 'web' }],
      pools: {
        web: { backends: [{ url: 'http://127.0.0.1:9001' }, { url: 'http://127.0.0.1:9002', id: 'b' }], healthCheck: { path: '/healthz' } },
        api: { backends: [{ url: 'http://127.0.0.1:9100' }] },
      },
    });
    if (!result.ok) throw new Error('invalid');
    const web = toPlainPool(result.config.pools['web']!);
    expect(toPlainPool(result.config.pools['web']!)).toBe(web);
    expect(toPlainReplicated(result.config).pools['web']).toBe(web);
    expect(Object.isFrozen(web) && Object.isFrozen(web['healthCheck']) && Object.isFrozen(web['backends'])).toBe(true);
    // A command edits a copy: the shared form stays what it was, and the pool it did not touch keeps its form.
    const api = toPlainPool(result.config.pools['api']!);
    const edited = applyCommand({ version: 1, config: result.config }, { type: 'add-backend', pool: 'web', backend: { url: 'http://127.0.0.1:9003' } }, 2);
    if (!edited.ok) throw new Error('refused');
    expect(toPlainPool(edited.state.config.pools['web']!)['backends']).toHaveLength(3);
    expect(web['backends']).toHaveLength(2);
    expect(toPlainPool(edited.state.config.pools['api']!)).toBe(api);
  });
});
