import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { isMap, isPair, isScalar, isSeq, parseDocument, stringify, visit, type Document } from 'yaml';
import type { PoolConfig, ReplicatedConfig } from '../../src/config/schema.js';
import { validateConfigText, validateReplicated } from '../../src/config/validate.js';
import { nodeRange, rewriteReplicatedSections, rewriteReplicatedSectionsRead, type RoutesAndPoolsAsWritten } from '../../src/config/write.js';
import { replaceFile } from '../../src/atomic-write.js';
import { replicatedFileArb } from './arbitraries.js';

const ORIGINAL = `# yaml-language-server: $schema=./balancer.schema.json
listen: 127.0.0.1:8080            # the proxy's listener
admin:
  listen: 127.0.0.1:9090          # admin API, /metrics, /healthz, /readyz
  token: change-me                # or tokenFile: PATH

routes:                           # first match in file order wins
  - match: { host: api.example.com, pathPrefix: /v1 }
    pool: api
  - match: {pathPrefix: /}        # catch-all
    pool: web
pools:
  web:
    strategy: weighted            # random | round-robin | weighted | least-request
    backends:
      - { url: http://127.0.0.1:9001, weight: 3, id: web-1 }   # id defaults to host:port
      - { url: http://127.0.0.1:9002 }                          # weight defaults to 1
      # the big one
      - url: 'http://127.0.0.1:9003'
        weight: 5    # five
    healthCheck: { path: /healthz, interval: 2000, timeout: 1s, rise: 2, fall: 3 }
  api:
    backends:
    - url: http://127.0.0.1:9100   # only one
      weight: 1
cluster:                          # absent: a single node
    nodeId: n1
    listen: 127.0.0.1:7001
    peers: {n1: 127.0.0.1:7001}
    secret: 0123456789abcdef
`;

function replicatedOf(text: string): ReplicatedConfig {
  const result = validateConfigText(text, 'x');
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return { routes: result.config.routes, pools: result.config.pools };
}

function withPool(config: ReplicatedConfig, name: string, change: (pool: PoolConfig) => PoolConfig): ReplicatedConfig {
  return { routes: config.routes, pools: { ...config.pools, [name]: change(config.pools[name]!) } };
}

/** The lines of `after` that are not in `before`, and the other way round (a small line diff for assertions). */
function changedLines(before: string, after: string): { removed: string[]; added: string[] } {
  const a = before.split('\n');
  const b = after.split('\n');
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  return { removed: a.slice(start, endA), added: b.slice(start, endB) };
}

/** Paths of collections under routes and pools written in flow style (`{ ... }`, `[ ... ]`) that hold collections: lines that grow without bound. */
function nestedFlowCollections(text: string): string[] {
  const found: string[] = [];
  const isCollection = (node: unknown): boolean => isMap(node) || isSeq(node);
  const visit = (node: unknown, path: string): void => {
    if (isMap(node) || isSeq(node)) {
      const items = node.items.map((item) => (isPair(item) ? item.value : item));
      if (node.flow === true && items.some(isCollection)) found.push(path);
      node.items.forEach((item, index) => {
        if (isPair(item)) visit(item.value, `${path}.${String(isScalar(item.key) ? item.key.value : index)}`);
        else visit(item, `${path}[${index}]`);
      });
    }
  };
  const root = parseDocument(text).contents;
  if (isMap(root)) for (const pair of root.items) if (isScalar(pair.key) && (pair.key.value === 'routes' || pair.key.value === 'pools')) visit(pair.value, String(pair.key.value));
  return found;
}

describe('rewriteReplicatedSections', () => {
  const original = replicatedOf(ORIGINAL);

  test('the same config leaves the text unchanged, byte for byte', () => {
    expect(rewriteReplicatedSections(ORIGINAL, original)).toBe(ORIGINAL);
  });

  test('a weight change rewrites exactly one scalar', () => {
    const changed = withPool(original, 'web', (pool) => ({
      ...pool,
      backends: pool.backends.map((b) => (b.id === '127.0.0.1:9003' ? { ...b, weight: 7 } : b)),
    }));
    const text = rewriteReplicatedSections(ORIGINAL, changed);
    expect(changedLines(ORIGINAL, text)).toEqual({ removed: ['        weight: 5    # five'], added: ['        weight: 7    # five'] });
    expect(replicatedOf(text)).toEqual(changed);
  });

  test('a backend whose id is tagged, or that is an alias of another map, is found by the id it reads as', () => {
    const text = [
      'routes:',
      '  - { match: { pathPrefix: /api }, pool: api }',
      '  - { match: { pathPrefix: / }, pool: web }',
      'pools:',
      '  web:',
      '    backends:',
      '      - { url: http://127.0.0.1:9001, id: !!str 7 }',
      '      - &shared { url: http://127.0.0.1:9002, id: b }',
      '  api:',
      '    backends:',
      '      - *shared',
      '',
    ].join('\n');
    const reads = replicatedOf(text);
    expect(reads.pools['web']!.backends.map((b) => b.id)).toEqual(['7', 'b']);
    const changed = withPool(reads, 'web', (pool) => ({ ...pool, backends: pool.backends.map((b) => (b.id === '7' ? { ...b, weight: 3 } : b)) }));
    const rewritten = rewriteReplicatedSections(text, changed);
    expect(changedLines(text, rewritten)).toEqual({ removed: ['      - { url: http://127.0.0.1:9001, id: !!str 7 }'], added: ['      - { url: http://127.0.0.1:9001, id: !!str 7, weight: 3 }'] });
    expect(replicatedOf(rewritten)).toEqual(changed);
    // The alias's pool changes through its own entry, which stays an alias as long as the anchored map means the same.
    const api = withPool(changed, 'api', (pool) => ({ ...pool, backends: pool.backends.map((b) => ({ ...b, weight: 2 })) }));
    expect(replicatedOf(rewriteReplicatedSections(rewritten, api))).toEqual(api);
  });

  test('a weight change inside a one-line flow entry keeps its comment', () => {
    const changed = withPool(original, 'web', (pool) => ({
      ...pool,
      backends: pool.backends.map((b) => (b.id === 'web-1' ? { ...b, weight: 4 } : b)),
    }));
    const text = rewriteReplicatedSections(ORIGINAL, changed);
    expect(changedLines(ORIGINAL, text)).toEqual({
      removed: ['      - { url: http://127.0.0.1:9001, weight: 3, id: web-1 }   # id defaults to host:port'],
      added: ['      - { url: http://127.0.0.1:9001, weight: 4, id: web-1 }   # id defaults to host:port'],
    });
  });

  test('setting a default weight on a backend that spelled none adds the key; back to default removes it', () => {
    const heavier = withPool(original, 'web', (pool) => ({
      ...pool,
      backends: pool.backends.map((b) => (b.id === '127.0.0.1:9002' ? { ...b, weight: 2 } : b)),
    }));
    const text = rewriteReplicatedSections(ORIGINAL, heavier);
    expect(changedLines(ORIGINAL, text)).toEqual({
      removed: ['      - { url: http://127.0.0.1:9002 }                          # weight defaults to 1'],
      added: ['      - { url: http://127.0.0.1:9002, weight: 2 }                          # weight defaults to 1'],
    });
    expect(rewriteReplicatedSections(text, original)).toBe(ORIGINAL);
  });

  test('values written differently but meaning the same are left alone (interval: 2000 is 2s; weight: 1 is the default)', () => {
    const text = rewriteReplicatedSections(ORIGINAL, original);
    expect(text).toContain('interval: 2000,');
    expect(text).toContain('      weight: 1\n');
  });

  test('draining a backend and removing another keeps every other comment', () => {
    const changed = withPool(original, 'web', (pool) => ({
      ...pool,
      backends: pool.backends.filter((b) => b.id !== '127.0.0.1:9002').map((b) => (b.id === 'web-1' ? { ...b, drain: true } : b)),
    }));
    const text = rewriteReplicatedSections(ORIGINAL, changed);
    expect(changedLines(ORIGINAL, text)).toEqual({
      removed: [
        '      - { url: http://127.0.0.1:9001, weight: 3, id: web-1 }   # id defaults to host:port',
        '      - { url: http://127.0.0.1:9002 }                          # weight defaults to 1',
      ],
      added: ['      - { url: http://127.0.0.1:9001, weight: 3, id: web-1, drain: true }   # id defaults to host:port'],
    });
    expect(replicatedOf(text)).toEqual(changed);
  });

  test('adding a backend appends one line in the style of its neighbours', () => {
    const added = withPool(original, 'api', (pool) => ({
      ...pool,
      backends: [...pool.backends, { id: 'api-2', url: 'http://127.0.0.1:9101', weight: 2, drain: false, backup: false }],
    }));
    const text = rewriteReplicatedSections(ORIGINAL, added);
    expect(changedLines(ORIGINAL, text)).toEqual({
      removed: [],
      added: ['    - url: http://127.0.0.1:9101', '      weight: 2', '      id: api-2'],
    });
    expect(replicatedOf(text)).toEqual(added);
  });

  test('adding a pool and a route leaves local sections and comments byte for byte', () => {
    const next = validateReplicated({
      routes: [{ match: { host: 'api.example.com', pathPrefix: '/v1' }, pool: 'api' }, { match: { pathPrefix: '/static' }, pool: 'static' }, { pool: 'web' }],
      pools: {
        web: { strategy: 'weighted', backends: [{ url: 'http://127.0.0.1:9001', weight: 3, id: 'web-1' }, { url: 'http://127.0.0.1:9002' }, { url: 'http://127.0.0.1:9003', weight: 5 }], healthCheck: { path: '/healthz', interval: '2s', timeout: '1s', rise: 2, fall: 3 } },
        api: { backends: [{ url: 'http://127.0.0.1:9100' }] },
        static: { backends: [{ url: 'http://127.0.0.1:9200' }] },
      },
    });
    expect(next.ok).toBe(true);
    if (!next.ok) return;
    const text = rewriteReplicatedSections(ORIGINAL, next.config);
    expect(replicatedOf(text)).toEqual(next.config);
    const untouched = (t: string) => [t.split('\n').slice(0, 7), t.slice(t.indexOf('cluster:'))];
    expect(untouched(text)).toEqual(untouched(ORIGINAL));
    for (const comment of ['# only one', '# the big one', '# five', '# catch-all', '# weight defaults to 1', '# random | round-robin']) {
      expect(text).toContain(comment);
    }
  });

  test('a file without routes and pools gets them appended', () => {
    const local = 'listen: 127.0.0.1:8080   # here\n';
    const target = validateReplicated({ pools: { web: { backends: [{ url: 'http://127.0.0.1:1' }] } } });
    if (!target.ok) throw new Error('invalid');
    const text = rewriteReplicatedSections(local, target.config);
    expect(text.startsWith(local)).toBe(true);
    expect(replicatedOf(text)).toEqual(target.config);
  });

  test('an empty file and a one-line JSON file work too', () => {
    const target = validateReplicated({ pools: { web: {} } });
    if (!target.ok) throw new Error('invalid');
    expect(replicatedOf(rewriteReplicatedSections('', target.config))).toEqual(target.config);
    const json = rewriteReplicatedSections('{"listen": ":8080", "pools": {}}', target.config);
    expect(replicatedOf(json)).toEqual(target.config);
    const reread = validateConfigText(json, 'x');
    expect(reread.ok && reread.config.listeners[0]!.listen).toBe(':8080');
  });

  test('refuses text that is not YAML', () => {
    expect(() => rewriteReplicatedSections('a: [', original)).toThrow(/not valid YAML/);
  });

  test('property: any file rewritten to any config reads back as that config, local sections intact', () => {
    const pairs = fc.tuple(replicatedFileArb, replicatedFileArb, fc.constantFrom('block', 'flow-items'));
    fc.assert(
      fc.property(pairs, ([from, to, style]) => {
        const start = validateReplicated(from);
        const target = validateReplicated(to);
        if (!start.ok || !target.ok) return;
        const body = stringify(from, { lineWidth: 0, ...(style === 'flow-items' ? { indentSeq: false } : {}) });
        const text = `listen: 127.0.0.1:8080 # keep\n${body}log: { level: warn }   # keep too\n`;
        const rewritten = rewriteReplicatedSections(text, target.config);
        expect(replicatedOf(rewritten)).toEqual(target.config);
        expect(rewritten.startsWith('listen: 127.0.0.1:8080 # keep\n')).toBe(true);
        expect(rewritten).toContain('log: { level: warn }   # keep too\n');
        // Writing the same config again changes nothing.
        expect(rewriteReplicatedSections(rewritten, target.config)).toBe(rewritten);
      }),
      { numRuns: 100 },
    );
  });

  test('a block-style file stays block style when emptied sections gain entries again', () => {
    const emptied = rewriteReplicatedSections(ORIGINAL, { routes: [], pools: {} });
    expect(emptied).toContain('routes: []');
    expect(emptied).toContain('pools: {}');
    const regrown = rewriteReplicatedSections(emptied, original);
    expect(replicatedOf(regrown)).toEqual(original);
    expect(nestedFlowCollections(regrown)).toEqual([]);
    expect(Math.max(...regrown.split('\n').map((line) => line.length))).toBeLessThan(100);
    // A pool whose backends went to [] gets them back as a block list.
    const noBackends = withPool(original, 'api', (pool) => ({ ...pool, backends: [] }));
    const back = rewriteReplicatedSections(rewriteReplicatedSections(ORIGINAL, noBackends), original);
    expect(back).toContain('  api:\n    backends:\n      - { url: http://127.0.0.1:9100 }\n');
    // Inside a one-line map an empty list stays on that line.
    const inFlow = 'pools: { web: { backends: [] } }\n';
    const target = replicatedOf('pools:\n  web:\n    backends:\n      - url: http://127.0.0.1:1\n');
    expect(rewriteReplicatedSections(inFlow, target)).toBe('pools: { web: { backends: [ { url: http://127.0.0.1:1 } ] } }\n');
  });

  test('property: a block-style file rewritten through any configs, emptied ones included, never nests collections on one line', () => {
    const steps = fc.tuple(replicatedFileArb, fc.boolean(), replicatedFileArb);
    fc.assert(
      fc.property(steps, ([from, middle, to]) => {
        const start = validateReplicated(from);
        const target = validateReplicated(to);
        if (!start.ok || !target.ok) return;
        let text = `listen: 127.0.0.1:8080\n${stringify(from, { lineWidth: 0, collectionStyle: 'block' })}`;
        if (middle) text = rewriteReplicatedSections(text, { routes: [], pools: {} });
        const rewritten = rewriteReplicatedSections(text, target.config);
        expect(replicatedOf(rewritten)).toEqual(target.config);
        expect(nestedFlowCollections(rewritten)).toEqual([]);
      }),
      { numRuns: 100 },
    );
  });

  test('property: changing one weight in a generated file changes one line', () => {
    fc.assert(
      fc.property(replicatedFileArb, fc.nat(), fc.integer({ min: 1, max: 10_000 }), (from, pick, weight) => {
        const start = validateReplicated(from);
        if (!start.ok) return;
        const candidates = Object.values(start.config.pools).flatMap((pool) => pool.backends.map((b) => [pool.name, b.id] as const));
        if (candidates.length === 0) return;
        const [poolName, id] = candidates[pick % candidates.length]!;
        const target = withPool(start.config, poolName, (pool) => ({ ...pool, backends: pool.backends.map((b) => (b.id === id ? { ...b, weight } : b)) }));
        const text = stringify(from, { lineWidth: 0 });
        const rewritten = rewriteReplicatedSections(text, target);
        expect(replicatedOf(rewritten)).toEqual(target);
        const diff = changedLines(text, rewritten);
        expect(diff.removed.length).toBeLessThanOrEqual(1);
        expect(diff.added.length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 150 },
    );
  });
});

describe('rewriteReplicatedSectionsRead, told what the text reads as', () => {
  test('property: the rewrite is the one that looks at every key, and reads back as the target', () => {
    const pairs = fc.tuple(fc.oneof(fc.constant(null), replicatedFileArb), replicatedFileArb, fc.nat(), fc.integer({ min: 1, max: 10_000 }), fc.boolean());
    fc.assert(
      fc.property(pairs, ([from, other, pick, weight, oneWeight]) => {
        const text = from === null ? ORIGINAL : stringify(from, { lineWidth: 0 });
        const start = validateConfigText(text, 'x');
        if (!start.ok) return;
        const reads: ReplicatedConfig = { routes: start.config.routes, pools: start.config.pools };
        let target: ReplicatedConfig;
        if (oneWeight) {
          const candidates = Object.values(reads.pools).flatMap((pool) => pool.backends.map((b) => [pool.name, b.id] as const));
          if (candidates.length === 0) return;
          const [poolName, id] = candidates[pick % candidates.length]!;
          target = withPool(reads, poolName, (pool) => ({ ...pool, backends: pool.backends.map((b) => (b.id === id ? { ...b, weight } : b)) }));
        } else {
          const validated = validateReplicated(other);
          if (!validated.ok) return;
          target = validated.config;
        }
        const told = rewriteReplicatedSectionsRead(text, target, { text, reads }).text;
        expect(told).toBe(rewriteReplicatedSections(text, target));
        expect(replicatedOf(told)).toEqual(target);
      }),
      { numRuns: 200 },
    );
  });

  test('told what the text reads as, a weight change rewrites its one line; told about another text, the rewrite ignores it', () => {
    // `interval: 2000` and a default weight written out mean what the target says: the rewrite leaves them.
    const reads = replicatedOf(ORIGINAL);
    const target = withPool(reads, 'api', (pool) => ({ ...pool, backends: pool.backends.map((b) => ({ ...b, weight: 4 })) }));
    const rewritten = rewriteReplicatedSectionsRead(ORIGINAL, target, { text: ORIGINAL, reads }).text;
    expect(changedLines(ORIGINAL, rewritten)).toEqual({ removed: ['      weight: 1'], added: ['      weight: 4'] });
    // Told something about another text, the rewrite does not use it.
    const wrong = rewriteReplicatedSectionsRead(ORIGINAL, target, { text: `${ORIGINAL}\n`, reads: target }).text;
    expect(replicatedOf(wrong)).toEqual(target);
  });
});

/**
 * Every node's kind, value (with a scalar's style and source text) and offsets in document order, offsets as the
 * rewrite's text has them (read through nodeRange: a followed document moves them when read): two documents of the
 * same text agree on all of it.
 */
function nodeOffsets(document: Document): string[] {
  const out: string[] = [];
  visit(document, (_key, node) => {
    const range = nodeRange(document, node);
    if (range) out.push(`${(node as object).constructor.name} ${isScalar(node) ? `${JSON.stringify(node.value)} ${node.type} ${node.source}` : ''} ${range.join(',')}`);
  });
  out.push(`document ${nodeRange(document, document)?.join(',')}`);
  return out;
}

describe('rewriteReplicatedSectionsRead, one rewrite after another', () => {
  test('property: the document handed back for the next rewrite is the new text\'s own, whatever scalars change', () => {
    const change = fc.record({ pick: fc.nat(), weight: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 10_000 })), drain: fc.boolean(), strategy: fc.constantFrom('random', 'round-robin', 'weighted', 'least-request') });
    fc.assert(
      fc.property(fc.oneof(fc.constant(null), replicatedFileArb), fc.array(change, { minLength: 1, maxLength: 8 }), (from, changes) => {
        const text0 = from === null ? ORIGINAL : stringify(from, { lineWidth: 0 });
        const start = validateConfigText(text0, 'x');
        if (!start.ok) return;
        let config: ReplicatedConfig = { routes: start.config.routes, pools: start.config.pools };
        let text = text0;
        let parsed: { text: string; document: Document; written: RoutesAndPoolsAsWritten; reads: ReplicatedConfig } | undefined;
        for (const { pick, weight, drain, strategy } of changes) {
          const backends = Object.values(config.pools).flatMap((pool) => pool.backends.map((b) => [pool.name, b.id] as const));
          if (backends.length === 0) return;
          const [poolName, id] = backends[pick % backends.length]!;
          // A hashing pool keeps its strategy: the others refuse its hashOn.
          config = withPool(config, poolName, (pool) => ({ ...pool, strategy: pool.hashOn === null ? strategy : pool.strategy, backends: pool.backends.map((b) => (b.id === id ? { ...b, weight, drain } : b)) }));
          const read = rewriteReplicatedSectionsRead(text, config, parsed);
          // The same text as a rewrite that parses its input afresh, and the document is that text's parse.
          expect(read.text).toBe(rewriteReplicatedSections(text, config));
          const fresh = parseDocument(read.text, { uniqueKeys: true });
          expect(nodeOffsets(read.document)).toEqual(nodeOffsets(fresh));
          expect(replicatedOf(read.text)).toEqual(config);
          // The sections as written are the new text's, whether read again whole or only where the edits fell.
          const sections = fresh.toJS() as Record<string, unknown>;
          expect(read.written).toEqual({ routes: sections['routes'] ?? null, pools: sections['pools'] ?? null });
          text = read.text;
          parsed = { text: read.text, document: read.document, written: read.written, reads: config };
        }
      }),
      { numRuns: 50 },
    );
  });

  /** A pool of `count` one-line backends, as the shipped files write them. */
  const longFile = (count: number): string =>
    `# kept\nlisten: 127.0.0.1:0\nroutes:\n  - match: { pathPrefix: / }\n    pool: web\npools:\n  web:\n    strategy: weighted\n    backends:\n${Array.from(
      { length: count },
      (_, i) => `      - { url: http://127.0.0.1:${10000 + i}, id: web-${i + 1} }   # backend ${i + 1}`,
    ).join('\n')}\n`;

  test('a key added near the top of a long list leaves the offsets after it unread: they move when read, and read as a fresh parse has them', () => {
    const text = longFile(200);
    const start = replicatedOf(text);
    const document = parseDocument(text, { uniqueKeys: true });
    const sections = document.toJS() as Record<string, unknown>;
    const written = { routes: sections['routes'] ?? null, pools: sections['pools'] ?? null };
    const target = withPool(start, 'web', (pool) => ({ ...pool, backends: pool.backends.map((b, i) => (i === 1 ? { ...b, weight: 7 } : b)) }));
    const last = (document.getIn(['pools', 'web', 'backends']) as { items: unknown[] }).items[199] as { range: number[] };
    const before = [...last.range];
    const read = rewriteReplicatedSectionsRead(text, target, { text, document, written, reads: start });
    expect(read.document).toBe(document);
    expect(changedLines(text, read.text).added).toEqual(['      - { url: http://127.0.0.1:10001, id: web-2, weight: 7 }   # backend 2']);
    // Not walked: the rewrite read nothing near the end of the list.
    expect(last.range).toEqual(before);
    expect(nodeOffsets(read.document)).toEqual(nodeOffsets(parseDocument(read.text, { uniqueKeys: true })));
    expect(nodeRange(read.document, last)).toEqual(before.map((offset) => offset + ', weight: 7'.length));
  });

  test('a kept document followed through more length changes than it keeps lazily still reads as its text, all along', () => {
    const text0 = longFile(30);
    let config = replicatedOf(text0);
    let text = text0;
    let known: { text: string; document: Document; written: RoutesAndPoolsAsWritten; reads: ReplicatedConfig } | undefined;
    let document: Document | undefined;
    // Each round of 30 changes gives every backend a weight of the other length (one digit, two): every rewrite
    // changes a length, and offsets that are not read for a while fall many edit sets behind.
    for (let change = 0; change < 150; change++) {
      const index = (change * 7) % 30;
      const weight = Math.floor(change / 30) % 2 === 0 ? 10 + (change % 30) : 2 + (change % 7);
      config = withPool(config, 'web', (pool) => ({ ...pool, backends: pool.backends.map((b, i) => (i === index ? { ...b, weight } : b)) }));
      const read = rewriteReplicatedSectionsRead(text, config, known);
      document ??= read.document;
      // The same document followed all along (no parse of the new text), and the text a fresh rewrite writes.
      expect(read.document).toBe(document);
      expect(read.text).toBe(rewriteReplicatedSections(text, config));
      if (change % 50 === 49 || change === 149) expect(nodeOffsets(read.document)).toEqual(nodeOffsets(parseDocument(read.text, { uniqueKeys: true })));
      text = read.text;
      known = { text, document: read.document, written: read.written, reads: config };
    }
    expect(replicatedOf(text)).toEqual(config);
  });
});

describe('replaceFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'balancer-write-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('replaces the file and leaves no temporary file behind', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, 'old\n');
    await replaceFile(file, 'new\n');
    expect(await readFile(file, 'utf8')).toBe('new\n');
    expect(await readdir(dir)).toEqual(['balancer.yaml']);
  });

  test('keeps the permissions of the file it replaces', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, 'old\n');
    await chmod(file, 0o600);
    await replaceFile(file, 'new\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  test('a missing directory is an error', async () => {
    await expect(replaceFile(join(dir, 'nope', 'balancer.yaml'), 'x')).rejects.toMatchObject({ code: 'CONFIG_IO' });
  });

  test('a replace that cannot rename leaves what was there and no temporary file, and names the file', async () => {
    // A directory in the file's place: the new text is written and synced, then the rename over it fails.
    const file = join(dir, 'balancer.yaml');
    await mkdir(file);
    await writeFile(join(file, 'kept'), 'x');
    await expect(replaceFile(file, 'new\n')).rejects.toMatchObject({ code: 'CONFIG_IO', message: expect.stringContaining(file) });
    expect(await readdir(dir)).toEqual(['balancer.yaml']);
    expect(await readdir(file)).toEqual(['kept']);
  });
});
