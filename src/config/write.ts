// Writing config back: rewriting only routes/pools of a YAML text while every other byte stays put (the file itself is replaced by atomic-write.ts).

import { isDeepStrictEqual } from 'node:util';
import { Document, Scalar, isAlias, isMap, isPair, isScalar, isSeq, parseDocument, stringify, visit, type Node, type Pair, type YAMLMap, type YAMLSeq } from 'yaml';
import { BalancerError } from '../errors.js';
import { defaultBackendId, parseBackendUrl } from './file-spec.js';
import { toPlainReplicated } from './plain.js';
import { DEFAULTS, type PoolConfig, type ReplicatedConfig } from './schema.js';
import type { JsonValue } from './spec.js';
import { backendWithFlags, deepFreeze, sameReplicated, validateReplicated, validatedLoneBackend } from './validate.js';

// ---------------------------------------------------------------- text edits

interface Edit {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

type Json = JsonValue;
type JsonObject = { readonly [key: string]: Json };
type Segment = string | number;

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

function lineEnd(text: string, offset: number): number {
  const newline = text.indexOf('\n', offset);
  return newline === -1 ? text.length : newline + 1;
}

function column(text: string, offset: number): number {
  return offset - lineStart(text, offset);
}

/** Words a plain scalar of letters reads as other than a string (YAML 1.2 core, and 1.1's booleans): stringify decides their quoting. */
const NOT_PLAIN_STRINGS: ReadonlySet<string> = new Set(['null', 'true', 'false', 'yes', 'no', 'on', 'off', 'y', 'n']);

/** A scalar or collection on one line, quoted as flow context requires (safe both inside and outside `{}`). */
function renderInline(value: Json): string {
  // A weight or a flag: what stringify would write, without its machinery (it was a tenth of a weight change).
  if (typeof value === 'boolean' || (typeof value === 'number' && Number.isSafeInteger(value))) return String(value);
  // A key such as `weight` or `drain` put into a backend: plain as it is (stringify, run cold, was ~10 ms of the first such edit).
  if (typeof value === 'string' && /^[a-z][A-Za-z0-9]*$/.test(value) && !NOT_PLAIN_STRINGS.has(value)) return value;
  const rendered = stringify([value], { collectionStyle: 'flow', lineWidth: 0 }).trim();
  return rendered.slice(1, -1).trim();
}

/**
 * Block YAML whose first line continues where it is put and whose next lines start at `indent`. Collections that
 * hold only scalars (a backend, a route's match, a health check) go on one line, `{ url: ..., id: ... }`, as in the
 * shipped files: one line per backend keeps diffs readable and `sed` recipes working, and nothing nests on one line.
 */
function renderBlock(value: Json, indent: number): string {
  const document = new Document(value);
  visit(document, {
    Map: (_key, node) => {
      if (node.items.length > 0 && node.items.every((pair) => isScalar(pair.value))) node.flow = true;
    },
    Seq: (_key, node) => {
      if (node.items.length > 0 && node.items.every((item) => isScalar(item))) node.flow = true;
    },
  });
  // The root itself stays block: it is what this function was asked to write as a block.
  if (isMap(document.contents) || isSeq(document.contents)) document.contents.flow = false;
  const lines = document.toString({ indent: 2, lineWidth: 0 }).replace(/\n$/, '').split('\n');
  return lines.map((line, index) => (index === 0 ? line : ' '.repeat(indent) + line)).join('\n');
}

/** Routes and pools alone, in the style a rewrite writes them: what `balancer config diff` compares line by line. */
export function renderReplicatedText(plain: { readonly routes: readonly unknown[]; readonly pools: Readonly<Record<string, unknown>> }): string {
  return (['routes', 'pools'] as const)
    .map((key) => {
      const value = plain[key] as Json;
      return isBlockCollection(value) ? `${key}:\n  ${renderBlock(value, 2)}\n` : `${key}: ${renderInline(value)}\n`;
    })
    .join('');
}

function isBlockCollection(value: Json): boolean {
  return (Array.isArray(value) && value.length > 0) || (isObject(value) && Object.keys(value).length > 0);
}

function keyOf(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
}

/** A node's offsets as stored: only for a node of a document no rewrite has followed (a fresh parse); else rangeIn. */
function rangeOf(node: unknown): Range | undefined {
  return (node as Node | null)?.range ?? undefined;
}

/*
 * The offsets of a kept document's nodes follow the rewrites lazily. Following an edit that changes a length (a key
 * added to a backend, a weight 9 becoming 10) used to move the offsets of every node after it at once: a walk of the
 * whole file per write, most of the first change after a start with 1,000 backends, while a rewrite reads the offsets
 * of a handful of nodes. Instead the document keeps the edit sets it followed, and a node's offsets are brought up to
 * date when they are read (rangeIn), remembering how far. After MAX_LAZY_STEPS sets every node is brought up to date
 * at once and the list starts again, so a node read rarely costs at most that many steps.
 */
interface OffsetMoves {
  /** Edit sets followed since `base`, oldest first, each sorted by end: each moves offsets of the text before it to the text after it. */
  readonly steps: Array<readonly Edit[]>;
  /** How many edit sets every node of the document had been brought past when `steps` last started again. */
  base: number;
}

const MAX_LAZY_STEPS = 64;
const documentMoves = new WeakMap<Document, OffsetMoves>();
/** How many of its document's edit sets a node's stored offsets have been brought past (absent: the document's base). */
const nodeMoves = new WeakMap<object, number>();

/** Where `offset` of the text before `edits` (sorted by end) is in the text after them; one inside an edited span stays. */
function movedOffset(edits: readonly Edit[], offset: number): number {
  let shifted = offset;
  for (const edit of edits) {
    if (edit.end > offset) break;
    shifted += edit.text.length - (edit.end - edit.start);
  }
  return shifted;
}

/** A node's offsets in the text `document` now stands for (the last text a rewrite handed it back with). */
function rangeIn(document: Document, node: unknown): Range | undefined {
  const range = rangeOf(node);
  if (range === undefined) return undefined;
  const moves = documentMoves.get(document);
  if (moves === undefined || moves.steps.length === 0) return range;
  const now = moves.base + moves.steps.length;
  const at = Math.max(nodeMoves.get(node as object) ?? moves.base, moves.base);
  if (at === now) return range;
  let [start, valueEnd, end] = range;
  for (let step = at - moves.base; step < moves.steps.length; step++) {
    const edits = moves.steps[step]!;
    start = movedOffset(edits, start);
    valueEnd = movedOffset(edits, valueEnd);
    end = movedOffset(edits, end);
  }
  const current: Range = [start, valueEnd, end];
  (node as { range: Range }).range = current;
  nodeMoves.set(node as object, now);
  return current;
}

/** Every node under `node` (pairs' keys and values, collections' items), `node` included. */
function forEachNode(node: unknown, each: (node: object) => void): void {
  if (node === null || typeof node !== 'object') return;
  if (isPair(node)) {
    forEachNode(node.key, each);
    forEachNode(node.value, each);
    return;
  }
  each(node);
  if (isMap(node) || isSeq(node)) for (const item of node.items as unknown[]) forEachNode(item, each);
}

/** `document` now stands for the text after `edits` (sorted by end); its nodes' offsets follow when read. */
function followOffsets(document: Document, edits: readonly Edit[]): void {
  let moves = documentMoves.get(document);
  if (moves === undefined) {
    moves = { steps: [], base: 0 };
    documentMoves.set(document, moves);
  }
  moves.steps.push(edits);
  if (moves.steps.length < MAX_LAZY_STEPS) return;
  const caughtUp = moves;
  forEachNode(document.contents, (node) => rangeIn(document, node));
  rangeIn(document, document);
  caughtUp.base += caughtUp.steps.length;
  caughtUp.steps.length = 0;
}

/**
 * The offsets of a node of a document a rewrite handed back, in that rewrite's text (a document that followed the
 * rewrite's edits keeps the offsets of the nodes after them stale until read through here).
 */
export function nodeRange(document: Document, node: unknown): Range | undefined {
  return rangeIn(document, node);
}

/**
 * What the original text already reads as at a place in the sections (its plain form), when the caller knows it;
 * UNKNOWN where the file's shape there may not mirror the plain form.
 */
const UNKNOWN = Symbol('unknown');
type Reads = Json | undefined | typeof UNKNOWN;

/**
 * The same meaning for sure: equal plain forms. Compared in place, stopping at the first difference: stringifying both
 * sides cost the whole section at every level on the way down to a one-weight change.
 */
function sameRead(reads: Reads, value: Json): boolean {
  // The same object: a part both configs share, whose plain form was built once (toPlainBackend keeps them).
  return (reads === value && reads !== undefined) || (reads !== UNKNOWN && reads !== undefined && isDeepStrictEqual(reads, value));
}

function readsAt(reads: Reads, key: string): Reads {
  return reads !== UNKNOWN && isObject(reads) ? reads[key] : UNKNOWN;
}

class SectionRewriter {
  readonly edits: Edit[] = [];
  /** The edits that put one scalar's text in place of another's: the parsed document can follow them without a new parse. */
  readonly scalarEdits: Array<{ readonly node: Scalar; readonly edit: Edit }> = [];
  private readonly expectedUnits = new Map<string, ReturnType<typeof validateReplicated>>();

  constructor(
    private readonly text: string,
    private readonly document: Document,
    private readonly target: { routes: Json; pools: Json },
  ) {}

  private json(node: unknown): Json {
    return toJson(this.document, node);
  }

  private range(node: unknown): Range | undefined {
    return rangeIn(this.document, node);
  }

  /** The backend id a backend list's item in the file has (read from its id and url alone when it can be). */
  private fileBackendId(item: Node): string | undefined {
    return backendIdOf(idAndUrlOf(item) ?? this.json(item));
  }

  /** Does `fileValue` at `path` (undefined: key absent) mean the same as the target there? Checked on the enclosing pool or route alone. */
  private sameMeaning(path: readonly Segment[], fileValue: Json | undefined): boolean {
    const [section, unit] = path;
    if (unit === undefined) return false;
    // A value inside one backend is checked in a copy of its pool that holds only that backend: validating the whole
    // pool per value cost O(backends). A copy too small to be valid only makes the value count as changed, which
    // writes the target's value: never wrong, at worst less minimal.
    const backendIndex = section === 'pools' && path[2] === 'backends' && typeof path[3] === 'number' ? path[3] : null;
    const pluck = (root: { routes: Json; pools: Json }): unknown => {
      if (section === 'pools' && isObject(root.pools)) {
        const pool = root.pools[unit as string];
        if (backendIndex !== null && isObject(pool) && Array.isArray(pool['backends'])) {
          return { pools: { [unit]: { ...pool, backends: [pool['backends'][backendIndex]] } } };
        }
        return { pools: { [unit]: pool } };
      }
      if (section === 'routes' && Array.isArray(root.routes)) {
        const route = root.routes[unit as number];
        const pool = isObject(route) && typeof route['pool'] === 'string' ? route['pool'] : 'x';
        return { routes: [route], pools: { [pool]: {} } };
      }
      return undefined;
    };
    const unitOfTarget = pluck(this.target);
    if (unitOfTarget === undefined) return false;
    // Only the enclosing unit is copied and altered: cloning the whole target per value cost O(backends) each time.
    const altered = structuredClone(unitOfTarget);
    // In the plucked unit a route sits at index 0, and so does a backend plucked alone; a pool keeps its name.
    const pathInUnit = section === 'routes' ? [section, 0, ...path.slice(2)] : backendIndex !== null ? [...path.slice(0, 3), 0, ...path.slice(4)] : path;
    let parent: unknown = altered;
    for (const segment of pathInUnit.slice(0, -1)) {
      if (typeof parent !== 'object' || parent === null) return false;
      parent = (parent as Record<string | number, unknown>)[segment];
    }
    const last = pathInUnit[pathInUnit.length - 1]!;
    if (typeof parent !== 'object' || parent === null) return false;
    if (fileValue === undefined) delete (parent as Record<string | number, unknown>)[last];
    else (parent as Record<string | number, unknown>)[last] = fileValue;
    const cacheKey = `${String(section)}\u0000${String(unit)}\u0000${backendIndex ?? ''}`;
    let expected = this.expectedUnits.get(cacheKey);
    if (expected === undefined) {
      expected = validateReplicated(unitOfTarget);
      this.expectedUnits.set(cacheKey, expected);
    }
    const actual = validateReplicated(altered);
    return expected.ok && actual.ok && isDeepStrictEqual(expected.config, actual.config);
  }

  /**
   * Whether `key` sits in block context (only indentation, or a sequence's `- `, before it on its line), so a
   * value under it may be written as a block. Inside `{ ... }` or `[ ... ]` it may not.
   */
  private inBlockContext(key: Node | undefined): boolean {
    const keyStart = this.range(key)?.[0];
    if (keyStart === undefined) return false;
    return /^[ \t]*(?:-[ \t]+)*$/.test(this.text.slice(lineStart(this.text, keyStart), keyStart));
  }

  replace(node: Node, value: Json, key?: Node): void {
    const [start, end] = this.range(node)!;
    const block = (isMap(node) || isSeq(node)) && !node.flow;
    const emptyFlow = (isMap(node) || isSeq(node)) && node.flow === true && node.items.length === 0;
    if (emptyFlow && isBlockCollection(value) && this.inBlockContext(key)) {
      // `pools: {}` or `backends: []` that gains entries in a block-style file becomes a block again, not one long line.
      const keyEnd = this.range(key)![1];
      const colon = this.text.indexOf(':', keyEnd);
      const indent = column(this.text, this.range(key)![0]) + 2;
      this.edits.push({ start: colon, end, text: `:\n${' '.repeat(indent)}${renderBlock(value, indent)}` });
      return;
    }
    if (block && isBlockCollection(value)) {
      const rendered = renderBlock(value, column(this.text, start));
      // A block collection's range ends after its newline; whatever replaces it must end the line too.
      this.edits.push({ start, end, text: this.text[end - 1] === '\n' ? `${rendered}\n` : rendered });
      return;
    }
    const keyEnd = this.range(key)?.[1];
    if (block && keyEnd !== undefined) {
      // `key:` then a block on the next lines becomes `key: []` on one line.
      const colon = this.text.indexOf(':', keyEnd);
      this.edits.push({ start: colon, end, text: `: ${renderInline(value)}${this.text[end - 1] === '\n' ? '\n' : ''}` });
      return;
    }
    const rendered = renderInline(value);
    const edit = { start, end, text: block && this.text[end - 1] === '\n' ? `${rendered}\n` : rendered };
    this.edits.push(edit);
    if (isScalar(node) && !block && (value === null || typeof value !== 'object')) this.scalarEdits.push({ node, edit });
  }

  /**
   * `key` is the map key owning `node`, if any: a block collection that turns into a one-line value moves up beside it.
   * `reads` is what the original text means at `path`, if known: where it already is the target, nothing there is
   * looked at (a weight change then visits one backend, not every key of every pool with a validation per default).
   */
  merge(node: unknown, value: Json, path: readonly Segment[], key?: Node, reads: Reads = UNKNOWN): void {
    if (sameRead(reads, value)) return;
    if ((isMap(node) || isSeq(node)) && node.flow === true && node.items.length === 0 && isBlockCollection(value) && this.inBlockContext(key)) {
      return this.replace(node, value, key);
    }
    if (isMap(node) && isObject(value)) return this.mergeMap(node, value, path, key, reads);
    if (isSeq(node) && Array.isArray(value)) return this.mergeSeq(node, value, path, key, reads);
    const current = this.json(node);
    if (isDeepStrictEqual(current, value)) return;
    // Known to read as another scalar than the target: it changed, no need to ask the validator.
    const readsOtherScalar = reads !== UNKNOWN && reads !== undefined && (reads === null || typeof reads !== 'object');
    if (!readsOtherScalar && this.sameMeaning(path, current)) return;
    this.replace(node as Node, value, key);
  }

  private mergeMap(map: YAMLMap, value: JsonObject, path: readonly Segment[], key?: Node, reads: Reads = UNKNOWN): void {
    const isRecord = path.length === 1 && path[0] === 'pools';
    // A backend whose reading is known: each key's default is the same whatever else the backend or its pool says
    // (weight, drain, backup; an id whose default follows the URL is the same backend's), so what the text reads as
    // there decides, without validating a copy of the pool per key (cold, most of the first weight added to a backend).
    const knownBackend = path.length === 4 && path[0] === 'pools' && path[2] === 'backends' && reads !== UNKNOWN && isObject(reads);
    const present = new Map<string, Pair>();
    for (const pair of map.items as Pair[]) present.set(keyOf(pair), pair);
    const removals: Pair[] = [];
    for (const [key, pair] of present) {
      if (Object.hasOwn(value, key)) continue;
      // Outside the pools record an absent key means "the default"; a file that spells the default out keeps it.
      if (knownBackend ? readsAt(reads, key) === undefined : !isRecord && this.sameMeaning([...path, key], this.json(pair.value))) continue;
      removals.push(pair);
    }
    // A key the file leaves out already means its default (or what the original text is known to read there); spelling it out would be noise.
    const additions = Object.keys(value).filter(
      (key) => !present.has(key) && (isRecord || (!sameRead(readsAt(reads, key), value[key]!) && (knownBackend || !this.sameMeaning([...path, key], undefined)))),
    );
    if (map.items.length > 0 && removals.length === map.items.length && additions.length === 0) {
      this.replace(map, value, key);
      return;
    }
    for (const pair of removals) this.removePair(map, pair);
    for (const [key, pair] of present) {
      if (Object.hasOwn(value, key)) this.merge(pair.value, value[key]!, [...path, key], pair.key as Node, readsAt(reads, key));
    }
    for (const key of additions) this.addPair(map, key, value[key]!);
  }

  private removePair(map: YAMLMap, pair: Pair): void {
    const items = map.items as Pair[];
    const index = items.indexOf(pair);
    const keyStart = this.range(pair.key)![0];
    const next = items[index + 1];
    if (map.flow) {
      const previous = items[index - 1];
      if (next !== undefined) this.edits.push({ start: keyStart, end: this.range(next.key)![0], text: '' });
      else if (previous !== undefined) this.edits.push({ start: this.range(previous.value)![1], end: this.range(pair.value)?.[1] ?? keyStart, text: '' });
      return;
    }
    const prefix = this.text.slice(lineStart(this.text, keyStart), keyStart);
    const valueEnd = this.range(pair.value)?.[2] ?? this.range(pair.key)![2];
    if (prefix.trim() !== '' && next !== undefined) {
      // The key shares its line with a `- `: pull the next key up into its place.
      this.edits.push({ start: keyStart, end: this.range(next.key)![0], text: '' });
      return;
    }
    const end = this.text[valueEnd - 1] === '\n' ? valueEnd : lineEnd(this.text, valueEnd);
    this.edits.push({ start: prefix.trim() === '' ? lineStart(this.text, keyStart) : keyStart, end, text: '' });
  }

  private addPair(map: YAMLMap, key: string, value: Json): void {
    const renderedKey = renderInline(key);
    const last = (map.items as Pair[])[map.items.length - 1];
    const [mapStart, mapEnd] = this.range(map)!;
    if (map.flow || last === undefined) {
      if (last === undefined) {
        // `{}`: put the pair inside the braces.
        const open = this.text.indexOf('{', mapStart);
        this.edits.push({ start: open + 1, end: open + 1, text: ` ${renderedKey}: ${renderInline(value)} ` });
      } else {
        const at = this.range(last.value)?.[1] ?? this.range(last.key)![1];
        this.edits.push({ start: at, end: at, text: `, ${renderedKey}: ${renderInline(value)}` });
      }
      return;
    }
    const indent = column(this.text, this.range((map.items as Pair[])[0]!.key)![0]);
    const body = isBlockCollection(value) ? `\n${' '.repeat(indent + 2)}${renderBlock(value, indent + 2)}` : ` ${renderInline(value)}`;
    const needsNewline = this.text[mapEnd - 1] !== '\n';
    this.edits.push({ start: mapEnd, end: mapEnd, text: `${needsNewline ? '\n' : ''}${' '.repeat(indent)}${renderedKey}:${body}\n` });
  }

  private mergeSeq(seq: YAMLSeq, value: readonly Json[], path: readonly Segment[], key?: Node, reads: Reads = UNKNOWN): void {
    const items = seq.items as Node[];
    const byId = path.length === 3 && path[0] === 'pools' && path[2] === 'backends';
    if (!byId) {
      // Item by item only while the file's list is the plain form's list (a route the validator dropped would shift them).
      const readsOf = (index: number): Reads => (reads !== UNKNOWN && Array.isArray(reads) && reads.length === items.length ? reads[index] : UNKNOWN);
      items.slice(0, value.length).forEach((item, index) => this.merge(item, value[index]!, [...path, index], undefined, readsOf(index)));
      if (items.length > value.length) {
        if (value.length === 0) return this.replace(seq, value, key);
        for (const item of items.slice(value.length)) this.removeItem(seq, item);
      }
      for (const item of value.slice(items.length)) this.appendItem(seq, item);
      return;
    }
    if (reads !== UNKNOWN && Array.isArray(reads) && reads.length === value.length && items.length === value.length) {
      // The file's list reads as `reads` item by item (validation keeps a list's order): only the backends whose plain
      // form is not the very object read there need a look, as long as each keeps its id. With 1,000 backends and one
      // weight changed, this skips walking the other 999 items for their ids.
      const changed: number[] = [];
      for (let index = 0; index < value.length; index++) if (value[index] !== reads[index]) changed.push(index);
      const sameIds = changed.every((index) => {
        const id = backendIdOf(value[index]);
        return id !== undefined && id === backendIdOf(reads[index]) && id === this.fileBackendId(items[index]!);
      });
      if (sameIds) {
        for (const index of changed) this.merge(items[index], value[index]!, [...path, index], undefined, reads[index]);
        return;
      }
    }
    const fileIndexById = new Map<string, number>();
    items.forEach((item, index) => {
      const id = this.fileBackendId(item);
      if (id !== undefined && !fileIndexById.has(id)) fileIndexById.set(id, index);
    });
    const matched = value.map((item) => {
      const id = backendIdOf(item);
      return id === undefined ? -1 : (fileIndexById.get(id) ?? -1);
    });
    const matchedInOrder = matched.filter((index) => index !== -1);
    const firstNew = matched.indexOf(-1);
    const inOrder = matchedInOrder.every((index, i) => i === 0 || index > matchedInOrder[i - 1]!);
    const newOnlyAtEnd = firstNew === -1 || matched.slice(firstNew).every((index) => index === -1);
    if (!inOrder || !newOnlyAtEnd || matchedInOrder.length === 0) {
      if (!isDeepStrictEqual(this.json(seq), value)) this.replace(seq, value, key);
      return;
    }
    const kept = new Set(matched);
    items.forEach((item, index) => {
      if (!kept.has(index)) this.removeItem(seq, item);
    });
    // A backend is what the original text reads under its id (ids are unique in a valid pool).
    const readById = new Map<string, Json>();
    if (reads !== UNKNOWN && Array.isArray(reads)) {
      for (const backend of reads) {
        const id = backendIdOf(backend);
        if (id !== undefined) readById.set(id, backend);
      }
    }
    matched.forEach((fileIndex, targetIndex) => {
      if (fileIndex === -1) return;
      const id = backendIdOf(value[targetIndex]);
      this.merge(items[fileIndex], value[targetIndex]!, [...path, targetIndex], undefined, id === undefined ? UNKNOWN : (readById.get(id) ?? UNKNOWN));
    });
    if (firstNew !== -1) for (const item of value.slice(firstNew)) this.appendItem(seq, item);
  }

  private removeItem(seq: YAMLSeq, item: Node): void {
    const [start, , end] = this.range(item)!;
    if (seq.flow) {
      const items = seq.items as Node[];
      const index = items.indexOf(item);
      const next = items[index + 1];
      const previous = items[index - 1];
      if (next !== undefined) this.edits.push({ start, end: this.range(next)![0], text: '' });
      else if (previous !== undefined) this.edits.push({ start: this.range(previous)![1], end: this.range(item)![1], text: '' });
      return;
    }
    const stop = this.text[end - 1] === '\n' ? end : lineEnd(this.text, end);
    this.edits.push({ start: lineStart(this.text, start), end: stop, text: '' });
  }

  private appendItem(seq: YAMLSeq, value: Json): void {
    const items = seq.items as Node[];
    const last = items[items.length - 1];
    if (seq.flow || last === undefined) {
      if (last === undefined) {
        const open = this.text.indexOf('[', this.range(seq)![0]);
        this.edits.push({ start: open + 1, end: open + 1, text: renderInline(value) });
      } else {
        const at = this.range(last)![1];
        this.edits.push({ start: at, end: at, text: `, ${renderInline(value)}` });
      }
      return;
    }
    const lastStart = this.range(last)![0];
    const dash = this.text.lastIndexOf('-', lastStart);
    const indent = column(this.text, dash);
    // Follow the neighbours' style: one-line `{ ... }` entries stay one-line.
    const rendered = (isMap(last) && last.flow) || !isBlockCollection(value) ? renderInline(value) : renderBlock(value, indent + 2);
    const seqEnd = this.range(seq)![1];
    const needsNewline = this.text[seqEnd - 1] !== '\n';
    this.edits.push({ start: seqEnd, end: seqEnd, text: `${needsNewline ? '\n' : ''}${' '.repeat(indent)}- ${rendered}\n` });
  }
}

function toJson(document: Document, node: unknown): Json {
  if (node === null || node === undefined) return null;
  if (isScalar(node) || isMap(node) || isSeq(node) || isAlias(node)) {
    try {
      return node.toJS(document, { maxAliasCount: 1000 }) as Json;
    } catch {
      return null;
    }
  }
  return null;
}

/**
 * A backend item's `id` and `url` as its plain form has them, read off the map's own scalars (the plain form of every
 * item of a 1,000-backend list was a tenth of a weight change); null when something in the map could read otherwise
 * (a tag, an anchor, an alias, a key that is no plain string, a merge key), and the caller takes the plain form.
 */
function idAndUrlOf(item: unknown): JsonObject | null {
  if (!isMap(item) || item.tag !== undefined || item.anchor !== undefined) return null;
  const found: Record<string, Json> = {};
  for (const pair of item.items as Pair[]) {
    if (!isScalar(pair.key) || typeof pair.key.value !== 'string' || pair.key.value === '<<') return null;
    const key = pair.key.value;
    if (key !== 'id' && key !== 'url') continue;
    if (!isScalar(pair.value) || pair.value.tag !== undefined) return null;
    found[key] = pair.value.value as Json;
  }
  return found;
}

function backendIdOf(value: Json | undefined): string | undefined {
  if (!isObject(value)) return undefined;
  if (typeof value['id'] === 'string') return value['id'];
  if (typeof value['url'] !== 'string') return undefined;
  const parsed = parseBackendUrl(value['url']);
  return 'value' in parsed ? defaultBackendId(parsed.value) : undefined;
}

function applyEdits(text: string, edits: readonly Edit[]): string {
  const ordered = [...edits].sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  let limit = Infinity;
  for (const edit of ordered) {
    if (edit.end > limit) throw new Error('overlapping edits');
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
    limit = edit.start;
  }
  return out;
}

/** A text's routes and pools: as written (parsed, not validated) and validated; null when either fails. */
function replicatedOf(text: string): { written: RoutesAndPoolsAsWritten; config: ReplicatedConfig; document: Document } | null {
  try {
    const document = parseDocument(text, { uniqueKeys: true });
    if (document.errors.length > 0) return null;
    const read = replicatedOfDocument(document);
    return read === null ? null : { ...read, document };
  } catch {
    // An edit removed an anchor something else still refers to: not a usable result.
    return null;
  }
}

function replicatedOfDocument(document: Document): { written: RoutesAndPoolsAsWritten; config: ReplicatedConfig } | null {
  let value: Record<string, unknown> | null;
  try {
    value = document.toJS({ maxAliasCount: 1000 }) as Record<string, unknown> | null;
  } catch {
    // An alias whose anchor is gone, or too many of them: not a usable result.
    return null;
  }
  const result = validateReplicated({ routes: value?.['routes'] ?? [], pools: value?.['pools'] ?? {} });
  return result.ok ? { written: { routes: value?.['routes'] ?? null, pools: value?.['pools'] ?? null }, config: result.config } : null;
}

/**
 * What the YAML 1.2 core schema reads a decimal integer or `true`/`false` as, without a parse (yaml's fixed cost per
 * parse was most of following a weight change); null for any other text, which the caller parses.
 */
function knownPlainScalar(text: string): Scalar | null {
  let value: number | boolean;
  if (text === 'true' || text === 'false') value = text === 'true';
  else if (/^-?(?:0|[1-9][0-9]*)$/.test(text) && Number.isSafeInteger(Number(text))) value = Number(text);
  else return null;
  const scalar = new Scalar(value);
  scalar.type = 'PLAIN';
  scalar.source = text;
  return scalar;
}

/** More edits than this and a parse of the new text is as cheap as following them one by one. */
const MAX_FOLLOWED_EDITS = 16;

type Range = readonly [number, number, number];
type Collection = YAMLMap | YAMLSeq;

/** Whether a node or anything inside it carries an anchor, an alias or an explicit tag: a part parsed alone could read otherwise. */
function hasProperties(node: unknown): boolean {
  // A plain walk: yaml's visit builds a frozen path per node (most of finding the edited backend, cold).
  let found = false;
  forEachNode(node, (inside) => {
    if (isAlias(inside) || ((isScalar(inside) || isMap(inside) || isSeq(inside)) && (inside.anchor !== undefined || inside.tag !== undefined))) found = true;
  });
  return found;
}

/**
 * Makes `document` (parsed from `text`) the document of the text with the rewriter's edits applied, without parsing that
 * whole text again (for a 1,000-backend file the parse was most of a config change's CPU). It works edit by edit: a
 * scalar replaced by a scalar is parsed alone; any other edit must lie inside a one-line-style flow collection (a
 * `{ url: ..., weight: 2 }` backend), which is parsed alone with every edit inside it. Both are self-contained in YAML (a flow
 * scalar is also a valid block scalar), so the pieces read as the whole would; every other node's offsets move past
 * the edits. Returns false, with `document` untouched, for anything else (the caller parses the new text).
 */
function followEdits(text: string, document: Document, rewriter: SectionRewriter): boolean {
  const { edits, scalarEdits } = rewriter;
  if (edits.length === 0) return true;
  if (edits.length > MAX_FOLLOWED_EDITS) return false;
  // A %YAML 1.1 file reads some plain scalars (yes, on) otherwise than the 1.2 parse of a piece would.
  // (The look for the word first: the multi-line pattern alone scanned a 1,000-backend file at ~0.2 ms a write.)
  if (text.includes('%YAML') && /^%YAML/m.test(text)) return false;

  const scalarOf = new Map(scalarEdits.map(({ node, edit }) => [edit, node]));
  const scalars: Array<{ node: Scalar; parsed: Scalar }> = [];
  const pieces = new Map<Collection, { parent: unknown; range: Range; edits: Edit[] }>();
  // A scalar put for a scalar is rendered flow-safe, so parsed alone inside `[ ]` it reads as in place, in a flow
  // collection or not; unless another edit re-parses the flow collection it is in, which then takes it along.
  const scalarCandidates: Array<{ edit: Edit; node: Scalar }> = [];
  const addToPiece = (edit: Edit): boolean => {
    const owner = flowOwner(document, edit);
    if (owner === undefined) return false;
    const piece = pieces.get(owner.node) ?? { parent: owner.parent, range: owner.range, edits: [] };
    piece.edits.push(edit);
    pieces.set(owner.node, piece);
    return true;
  };
  for (const edit of edits) {
    const scalar = scalarOf.get(edit);
    if (scalar !== undefined && scalar.anchor === undefined && scalar.tag === undefined && ['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE'].includes(scalar.type ?? '') && !/[\r\n]/.test(edit.text)) {
      scalarCandidates.push({ edit, node: scalar });
    } else if (!addToPiece(edit)) {
      return false;
    }
  }
  for (const { edit, node } of scalarCandidates) {
    if ([...pieces.values()].some(({ range }) => range[0] < edit.start && edit.end < range[1])) {
      addToPiece(edit);
      continue;
    }
    const known = knownPlainScalar(edit.text);
    if (known !== null) {
      scalars.push({ node, parsed: known });
      continue;
    }
    const probe = parseDocument(`[${edit.text}]`);
    const items = isSeq(probe.contents) ? probe.contents.items : [];
    const parsed = items[0];
    if (probe.errors.length > 0 || items.length !== 1 || !isScalar(parsed) || parsed.tag !== undefined) return false;
    scalars.push({ node, parsed });
  }

  const replacements: Array<{ old: Collection; parent: unknown; range: Range; parsed: Collection }> = [];
  for (const [old, { parent, range, edits: inside }] of pieces) {
    if (hasProperties(old)) return false;
    const slice = applyEdits(
      text.slice(range[0], range[1]),
      inside.map((edit) => ({ start: edit.start - range[0], end: edit.end - range[0], text: edit.text })),
    );
    const probe = parseDocument(slice, { uniqueKeys: true });
    const parsed = probe.contents;
    if (probe.errors.length > 0 || !(isMap(parsed) || isSeq(parsed)) || !parsed.flow || rangeOf(parsed)?.[0] !== 0 || hasProperties(parsed)) return false;
    const isPairParent = isPair(parent) && parent.value === old;
    const isItemParent = (isSeq(parent) || isMap(parent)) && (parent.items as unknown[]).includes(old);
    if (!isPairParent && !isItemParent) return false;
    replacements.push({ old, parent, range, parsed });
  }

  // Past this point nothing can fail: the document changes.
  const ordered = [...edits].sort((a, b) => a.end - b.end);
  const moved = (offset: number): number => movedOffset(ordered, offset);
  // Edits that keep every length (a weight 3 put for a 2) move no offset. Others move the offsets of the nodes after
  // them, as those are read (rangeIn); the pieces put in below are placed in the new text already.
  const lengthChanged = edits.some((edit) => edit.text.length !== edit.end - edit.start);
  if (lengthChanged) followOffsets(document, ordered);
  const now = (documentMoves.get(document)?.base ?? 0) + (documentMoves.get(document)?.steps.length ?? 0);
  for (const { node, parsed } of scalars) {
    node.value = parsed.value;
    if (parsed.type === undefined) delete node.type;
    else node.type = parsed.type;
    if (parsed.source === undefined) delete node.source;
    else node.source = parsed.source;
  }
  for (const { old, parent, range, parsed } of replacements) {
    const at = moved(range[0]);
    shiftRanges(parsed, (offset) => offset + at);
    // Parsed alone the piece ends at its closing bracket; in the file its node also spans a comment after it.
    const [start, valueEnd] = rangeOf(parsed)!;
    parsed.range = [start, valueEnd, moved(range[2])];
    // Its offsets are the new text's already: none of the edit sets followed so far moves them again.
    forEachNode(parsed, (node) => nodeMoves.set(node, now));
    if (old.comment !== undefined) parsed.comment = old.comment;
    if (old.commentBefore !== undefined) parsed.commentBefore = old.commentBefore;
    if (old.spaceBefore !== undefined) parsed.spaceBefore = old.spaceBefore;
    if (isPair(parent)) parent.value = parsed;
    else {
      const items = (parent as Collection).items as unknown[];
      items[items.indexOf(old)] = parsed;
    }
  }
  return true;
}

/** Moves every offset of `node` and everything inside it: a piece parsed alone, put in at its place in the file. */
function shiftRanges(node: unknown, by: (offset: number) => number): void {
  forEachNode(node, (inside) => {
    const range = rangeOf(inside);
    if (range !== undefined) (inside as { range: Range }).range = [by(range[0]), by(range[1]), by(range[2])];
  });
}

/**
 * The outermost flow collection whose brackets hold `edit` strictly, with what it hangs in (a pair, or a collection as
 * its item): found by going down from the root through the node that holds the edit (a binary search in a long list),
 * where a visit of the whole document read every node's offsets.
 */
function flowOwner(document: Document, edit: Edit): { node: Collection; parent: unknown; range: Range } | undefined {
  let parent: unknown = document;
  let node: unknown = document.contents;
  for (;;) {
    if (!isMap(node) && !isSeq(node)) return undefined;
    const range = rangeIn(document, node);
    if (range === undefined) return undefined;
    if (node.flow) return range[0] < edit.start && edit.end < range[1] ? { node, parent, range } : undefined;
    const child = childHolding(document, node, edit);
    if (child === undefined) return undefined;
    parent = isMap(node) ? child.pair : node;
    node = child.node;
  }
}

/** The item of a block collection (a pair's key or value in a map) whose offsets hold `edit`. */
function childHolding(document: Document, collection: Collection, edit: Edit): { node: unknown; index: number; pair?: Pair } | undefined {
  const items = collection.items as unknown[];
  const nodesOf = (item: unknown): unknown[] => (isPair(item) ? [item.key, item.value] : [item]);
  const startOf = (item: unknown): number | undefined => {
    for (const inside of nodesOf(item)) {
      const range = rangeIn(document, inside);
      if (range !== undefined) return range[0];
    }
    return undefined;
  };
  // The last item starting at or before the edit, by a binary search over the items in text order.
  let low = 0;
  let high = items.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const start = startOf(items[middle]);
    if (start === undefined) return undefined;
    if (start <= edit.start) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  if (found === -1) return undefined;
  const item = items[found];
  for (const inside of nodesOf(item)) {
    const range = rangeIn(document, inside);
    if (range !== undefined && range[0] <= edit.start && edit.end <= range[2]) return isPair(item) ? { node: inside, index: found, pair: item } : { node: inside, index: found };
  }
  return undefined;
}

function rootPair(document: Document, key: string): Pair | undefined {
  const root = document.contents;
  if (!isMap(root)) return undefined;
  return (root.items as Pair[]).find((pair) => keyOf(pair) === key);
}

/** The routes and pools of a YAML text as parsed (before validation and defaults); null where a section is absent. */
export interface RoutesAndPoolsAsWritten {
  readonly routes: unknown;
  readonly pools: unknown;
}

/**
 * `originalText` with `routes` and `pools` changed to `replicated`, touching only what differs: a weight change
 * rewrites one number; comments, blank lines and every local section stay byte for byte.
 */
export function rewriteReplicatedSections(originalText: string, replicated: ReplicatedConfig): string {
  return rewriteReplicatedSectionsRead(originalText, replicated).text;
}

/** What a caller already knows of a text (used only for that very text): its parse, and the routes and pools it reads as. */
export interface KnownText {
  readonly text: string;
  /** Only read by the rewrite: the document handed back by the rewrite that wrote `text`. */
  readonly document?: Document | undefined;
  readonly reads?: ReplicatedConfig | undefined;
  /** With `document`: the sections as written that the same rewrite handed back. */
  readonly written?: RoutesAndPoolsAsWritten | undefined;
}

/**
 * rewriteReplicatedSections, also handing back what its own check parsed of the new text: the sections as written
 * and the document, which the next rewrite of that same text may pass in `known`.
 */
export function rewriteReplicatedSectionsRead(
  originalText: string,
  replicated: ReplicatedConfig,
  known?: KnownText,
): { text: string; written: RoutesAndPoolsAsWritten; document: Document } {
  const plain = toPlainReplicated(replicated);
  const target = { routes: plain.routes as Json, pools: plain.pools as Json };
  const mine = known !== undefined && known.text === originalText ? known : undefined;
  const readsPlain = mine?.reads === undefined ? undefined : toPlainReplicated(mine.reads);
  let document = mine?.document ?? parseDocument(originalText, { uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new BalancerError('CONFIG_INVALID', `cannot rewrite a config that is not valid YAML: ${document.errors[0]!.message.split('\n')[0]}`);
  }
  // What the new text must read as: `replicated` itself, normally; its plain form validated again only when a read
  // differs from it (a config built elsewhere may carry what its plain form does not say), which costs a validation.
  let validatedPlain: ReturnType<typeof validateReplicated> | undefined;
  const expectedConfig = (): ReplicatedConfig => {
    validatedPlain ??= validateReplicated(plain);
    if (!validatedPlain.ok) throw new BalancerError('CONFIG_INVALID', 'the replicated config to write is invalid', { details: validatedPlain.problems });
    return validatedPlain.config;
  };
  const readsAsTarget = (config: ReplicatedConfig): boolean => sameReplicated(config, replicated) || sameReplicated(config, expectedConfig());

  const attempt = (surgical: boolean): { text: string; rewriter: SectionRewriter | null } => {
    const rewriter = new SectionRewriter(originalText, document, target);
    const root = document.contents;
    if (!isMap(root) || root.flow) {
      // Nothing to preserve inside (empty file, or a one-line JSON object): write the sections out plainly.
      const base = isMap(root) ? ((root.toJSON() ?? {}) as Record<string, Json>) : {};
      return { text: stringify({ ...base, routes: target.routes, pools: target.pools }, { lineWidth: 0 }), rewriter: null };
    }
    for (const key of ['routes', 'pools'] as const) {
      const pair = rootPair(document, key);
      const value = target[key];
      if (pair === undefined) {
        if (key === 'routes' && Array.isArray(value) && value.length === 0) continue;
        rewriter.edits.push(...addRootPair(originalText, rangeIn(document, root)![1], key, value));
      } else if (rangeIn(document, pair.value) === undefined) {
        const [start, end] = rangeIn(document, pair.key)!;
        rewriter.edits.push({ start, end, text: `${key}: ${renderInline(value)}` });
      } else if (surgical) {
        rewriter.merge(pair.value, value, [key], pair.key as Node, readsPlain === undefined ? UNKNOWN : (readsPlain[key] as Json));
      } else {
        rewriter.replace(pair.value as Node, value, pair.key as Node);
      }
    }
    return { text: applyEdits(originalText, rewriter.edits), rewriter };
  };

  for (const surgical of [true, false]) {
    let text: string;
    let rewriter: SectionRewriter | null;
    try {
      ({ text, rewriter } = attempt(surgical));
    } catch {
      continue;
    }
    // Edits that all fall inside backends of the file, whose reading (and as-written form) is known: only those backends are read again.
    const backendEdits =
      rewriter !== null && mine?.document === document && mine.reads !== undefined && mine.written !== undefined ? backendItemsEdited(document, rewriter.edits) : null;
    if (rewriter !== null && followEdits(originalText, document, rewriter)) {
      const after = backendEdits === null ? null : readsAfterBackendEdits(document, backendEdits, mine!.reads!, mine!.written!);
      if (after !== null && readsAsTarget(after.config)) return { text, written: after.written, document };
      const followed = replicatedOfDocument(document);
      if (followed !== null && readsAsTarget(followed.config)) return { text, written: followed.written, document };
      // The document no longer matches originalText; the parse below decides, and a next attempt starts from the text.
      document = parseDocument(originalText, { uniqueKeys: true });
    }
    const read = replicatedOf(text);
    if (read !== null && readsAsTarget(read.config)) return { text, written: read.written, document: read.document };
  }
  throw new BalancerError('INTERNAL', 'could not rewrite routes and pools in the config text');
}

/** The backend lists of the file's pools, by pool key, when `pools` is a plain map of maps (no alias, anchor or tag on the way). */
function backendLists(document: Document): Map<string, YAMLSeq> | null {
  const pools = rootPair(document, 'pools')?.value;
  if (!isMap(pools) || pools.anchor !== undefined || pools.tag !== undefined) return null;
  const lists = new Map<string, YAMLSeq>();
  for (const pair of pools.items as Pair[]) {
    if (!isScalar(pair.key) || !isMap(pair.value) || pair.value.anchor !== undefined || pair.value.tag !== undefined) continue;
    const backends = (pair.value.items as Pair[]).find((item) => isScalar(item.key) && item.key.value === 'backends')?.value;
    if (isSeq(backends) && backends.anchor === undefined && backends.tag === undefined) lists.set(keyOf(pair), backends);
  }
  return lists;
}

/**
 * Which backends of the file (pool key, index in its list) the edits fall in, each strictly inside one backend that
 * carries no anchor, alias or tag (so nothing else in the file reads through it); null when any edit falls elsewhere.
 */
function backendItemsEdited(document: Document, edits: readonly Edit[]): Array<{ readonly pool: string; readonly index: number }> | null {
  if (edits.length === 0) return null;
  const lists = backendLists(document);
  if (lists === null) return null;
  const found = new Map<string, { pool: string; index: number }>();
  for (const edit of edits) {
    let owner: { pool: string; index: number } | undefined;
    for (const [pool, list] of lists) {
      const range = rangeIn(document, list);
      if (range === undefined || edit.start < range[0] || edit.end > range[1]) continue;
      const held = childHolding(document, list, edit);
      const index = held?.index ?? -1;
      const itemRange = index === -1 ? undefined : rangeIn(document, list.items[index]);
      if (itemRange !== undefined && itemRange[0] < edit.start && edit.end < itemRange[1]) owner = { pool, index };
      break;
    }
    if (owner === undefined || !isMap(lists.get(owner.pool)!.items[owner.index]) || hasProperties(lists.get(owner.pool)!.items[owner.index])) return null;
    found.set(`${owner.pool}\u0000${owner.index}`, owner);
  }
  return [...found.values()];
}

/**
 * What the followed document reads as when only the backends `edited` changed in it: the text before read as `reads`
 * (validated) and was written as `written`, so only those backends are read and validated again, each in a copy of its
 * pool that holds only it. A pool validates each backend on its own but for duplicate ids and URLs, so a backend
 * whose id and URL stay as they were reads in the whole pool as it reads alone. Null when that does not hold (the
 * caller reads the whole document).
 */
function readsAfterBackendEdits(
  document: Document,
  edited: ReadonlyArray<{ readonly pool: string; readonly index: number }>,
  reads: ReplicatedConfig,
  written: RoutesAndPoolsAsWritten,
): { written: RoutesAndPoolsAsWritten; config: ReplicatedConfig } | null {
  const lists = backendLists(document);
  const writtenPools = written.pools;
  if (lists === null || typeof writtenPools !== 'object' || writtenPools === null) return null;
  const newWrittenPools: Record<string, unknown> = { ...(writtenPools as Record<string, unknown>) };
  const newPools: Record<string, PoolConfig> = { ...reads.pools };
  for (const { pool, index } of edited) {
    const list = lists.get(pool);
    const item = list?.items[index];
    const writtenPool = newWrittenPools[pool] as Record<string, unknown> | undefined;
    const before = newPools[pool];
    if (list === undefined || !isMap(item) || hasProperties(item) || typeof writtenPool !== 'object' || writtenPool === null || before === undefined) return null;
    const writtenBackends = writtenPool['backends'];
    if (!Array.isArray(writtenBackends) || writtenBackends.length !== list.items.length || before.backends.length !== list.items.length) return null;
    const value = toJson(document, item);
    // A weight or drain edit (the rewrite's own, nearly always): those two values decoded, not a pool copy validated.
    const flags = flagEdits(writtenBackends[index], value);
    const backend =
      (flags === null ? null : backendWithFlags(before.backends[index]!, flags)) ??
      validatedLoneBackend(pool, { ...writtenPool, backends: [value] }, before, before.backends[index]!);
    if (backend === null) return null;
    const backends = [...before.backends];
    backends[index] = backend;
    newPools[pool] = deepFreeze({ ...before, backends });
    const asWritten = [...writtenBackends];
    asWritten[index] = value;
    newWrittenPools[pool] = { ...writtenPool, backends: asWritten };
  }
  return { written: { routes: written.routes, pools: newWrittenPools }, config: deepFreeze({ routes: reads.routes, pools: newPools }) };
}

/**
 * The weight and drain a backend written as `value` sets, when every other key is written as in `old` (what the same
 * backend read as before); a key left out sets the default. Null when anything else differs.
 */
function flagEdits(old: unknown, value: Json): { weight: unknown; drain: unknown } | null {
  if (!isObject(old as Json) || !isObject(value)) return null;
  const before = old as JsonObject;
  for (const key of Object.keys(before)) if (key !== 'weight' && key !== 'drain' && !(Object.hasOwn(value, key) && isDeepStrictEqual(before[key], value[key]))) return null;
  for (const key of Object.keys(value)) if (key !== 'weight' && key !== 'drain' && !Object.hasOwn(before, key)) return null;
  return {
    weight: Object.hasOwn(value, 'weight') ? value['weight'] : DEFAULTS.weight,
    drain: Object.hasOwn(value, 'drain') ? value['drain'] : false,
  };
}

function addRootPair(text: string, end: number, key: string, value: Json): Edit[] {
  const body = isBlockCollection(value) ? `\n  ${renderBlock(value, 2)}` : ` ${renderInline(value)}`;
  return [{ start: end, end, text: `${text[end - 1] === '\n' || end === 0 ? '' : '\n'}${key}:${body}\n` }];
}
