import { describe, expect, test, vi } from 'vitest';
import { parseDocument } from 'yaml';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import * as validate from '../../src/config/validate.js';
import { rewriteReplicatedSectionsRead } from '../../src/config/write.js';

// What the rewrite validates to read back the backends it edited, counted (the real function still runs).
vi.mock('../../src/config/validate.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/config/validate.js')>();
  return { ...original, validatedLoneBackend: vi.fn(original.validatedLoneBackend), validateReplicated: vi.fn(original.validateReplicated) };
});

const TEXT = `# kept
routes:
  - match: { pathPrefix: / }
    pool: web
pools:
  web:
    backends:
      - { url: http://127.0.0.1:9001, id: a }   # first
      - { url: http://127.0.0.1:9002, id: b, weight: 2 }
      - { url: http://127.0.0.1:9003, id: c, drain: true }
`;

function known(text: string): { text: string; document: ReturnType<typeof parseDocument>; written: { routes: unknown; pools: unknown }; reads: ReplicatedConfig } {
  const checked = validate.validateConfigText(text, 'x');
  if (!checked.ok) throw new Error('invalid');
  const document = parseDocument(text, { uniqueKeys: true });
  const sections = document.toJS() as Record<string, unknown>;
  return { text, document, written: { routes: sections['routes'], pools: sections['pools'] }, reads: { routes: checked.config.routes, pools: checked.config.pools } };
}

function withBackends(config: ReplicatedConfig, change: (backend: ReplicatedConfig['pools'][string]['backends'][number]) => object): ReplicatedConfig {
  const web = config.pools['web']!;
  return validate.deepFreeze({ routes: config.routes, pools: { web: { ...web, backends: web.backends.map((b) => ({ ...b, ...change(b) })) } } }) as ReplicatedConfig;
}

describe('rewriteReplicatedSectionsRead, editing and reading back backends it knows the reading of', () => {
  test('weight and drain edits (keys added, changed, removed) are read back from those two values, not by validating a copy of the pool', () => {
    const lone = vi.mocked(validate.validatedLoneBackend);
    const start = known(TEXT);
    // a gains weight 5 and a drain, b's weight goes back to the default (its key removed), c is undrained.
    const target = withBackends(start.reads, (b) => (b.id === 'a' ? { weight: 5, drain: true } : b.id === 'b' ? { weight: 1 } : { drain: false }));
    const validated = vi.mocked(validate.validateReplicated);
    lone.mockClear();
    validated.mockClear();
    const read = rewriteReplicatedSectionsRead(TEXT, target, start);
    expect(read.document).toBe(start.document);
    expect(lone).not.toHaveBeenCalled();
    // Nor is a copy of the pool validated per key added or removed: the keys' defaults do not depend on anything else.
    expect(validated).not.toHaveBeenCalled();
    expect(read.text).toContain('- { url: http://127.0.0.1:9001, id: a, drain: true, weight: 5 }   # first');
    expect(read.text).toContain('- { url: http://127.0.0.1:9002, id: b }\n');
    expect(read.text).toContain('- { url: http://127.0.0.1:9003, id: c }\n');
    const sections = parseDocument(read.text).toJS() as Record<string, unknown>;
    expect(read.written).toEqual({ routes: sections['routes'], pools: sections['pools'] });
    const again = validate.validateConfigText(read.text, 'x');
    if (!again.ok) throw new Error('invalid');
    expect(validate.sameReplicated({ routes: again.config.routes, pools: again.config.pools }, target)).toBe(true);
  });

  test('an edit of another key of a backend is read back by validating that backend in a copy of its pool', () => {
    const lone = vi.mocked(validate.validatedLoneBackend);
    const start = known(TEXT);
    const target = withBackends(start.reads, (b) => (b.id === 'b' ? { backup: true } : {}));
    lone.mockClear();
    const read = rewriteReplicatedSectionsRead(TEXT, target, start);
    expect(read.text).toContain('- { url: http://127.0.0.1:9002, id: b, weight: 2, backup: true }');
    expect(lone).toHaveBeenCalledTimes(1);
    const again = validate.validateConfigText(read.text, 'x');
    if (!again.ok) throw new Error('invalid');
    expect(validate.sameReplicated({ routes: again.config.routes, pools: again.config.pools }, target)).toBe(true);
  });
});
