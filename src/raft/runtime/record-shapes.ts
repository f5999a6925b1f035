// Shape checks for Raft data that comes from outside the process (peer messages, the write-ahead log, snapshot files): one strict definition of a valid entry, snapshot and hard state.

import type { Entry, HardState, Snapshot } from '../core/types.js';

const ENTRY_TYPES: ReadonlySet<string> = new Set(['normal', 'conf-change', 'empty']);

/** A non-negative safe integer: an index, a term, a commit. */
export const isCount = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 0;
export const optional = (value: unknown, check: (v: unknown) => boolean): boolean => value === undefined || check(value);
const isStringArray = (value: unknown): boolean => Array.isArray(value) && value.every((v) => typeof v === 'string');

export function isEntry(value: unknown): value is Entry {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  return (
    isCount(e['index']) &&
    isCount(e['term']) &&
    typeof e['type'] === 'string' &&
    ENTRY_TYPES.has(e['type']) &&
    typeof e['data'] === 'string' &&
    optional(e['requestId'], (v) => typeof v === 'string')
  );
}

export function isEntryList(value: unknown): value is Entry[] {
  return Array.isArray(value) && value.every(isEntry);
}

export function isSnapshot(value: unknown): value is Snapshot {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Record<string, unknown>;
  const meta = s['metadata'] as Record<string, unknown> | undefined;
  const conf = (typeof meta === 'object' && meta !== null ? meta['confState'] : undefined) as Record<string, unknown> | undefined;
  return (
    typeof s['data'] === 'string' &&
    typeof meta === 'object' &&
    meta !== null &&
    isCount(meta['index']) &&
    isCount(meta['term']) &&
    typeof conf === 'object' &&
    conf !== null &&
    isStringArray(conf['voters']) &&
    isStringArray(conf['learners'])
  );
}

export function isHardState(value: unknown): value is HardState {
  if (typeof value !== 'object' || value === null) return false;
  const hs = value as Record<string, unknown>;
  return isCount(hs['term']) && isCount(hs['commit']) && (hs['vote'] === null || typeof hs['vote'] === 'string');
}
