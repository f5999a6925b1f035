// Which edits of a pool's config a running pool takes in place (backends' weight, drain and backup flags) rather than being built again.

import { isDeepStrictEqual } from 'node:util';
import type { BackendConfig, PoolConfig } from './schema.js';

/** Backend fields a running pool takes in place (reconfigure): what picking reads at each pick, nothing built from them but hash tables. */
const IN_PLACE_BACKEND_FIELDS: ReadonlySet<string> = new Set(['weight', 'drain', 'backup']);
const POOL_FIELDS_BESIDE_BACKENDS: ReadonlySet<string> = new Set(['backends']);

/**
 * How `next` differs from the running `current`: [] when it means the same, the indexes of the backends whose weight,
 * drain or backup flag changed when nothing else did (reconfigure takes that in place), null when anything else
 * changed (a new pool is built). Objects the two configs share are not looked into (an edited config keeps the
 * objects it did not edit), so a one-backend edit of a 1,000-backend pool compares one backend and 1,000 references.
 */
export function inPlaceChanges(current: PoolConfig, next: PoolConfig): number[] | null {
  if (current === next) return [];
  if (!sameExcept(current, next, POOL_FIELDS_BESIDE_BACKENDS)) return null;
  const [before, after] = [current.backends, next.backends];
  if (before.length !== after.length) return null;
  const changed: number[] = [];
  for (let index = 0; index < after.length; index++) {
    const [a, b] = [before[index]!, after[index]!];
    if (a === b) continue;
    if (!sameExcept(a, b, IN_PLACE_BACKEND_FIELDS)) return null;
    if (a.weight !== b.weight || a.drain !== b.drain || a.backup !== b.backup) changed.push(index);
  }
  return changed;
}

/**
 * The edited backend at `index` of `next`, for a running pool's reconfigure: the running pool's backend there must be
 * the same one (`runningId`), or the change was not one inPlaceChanges allows, and taking it would mix two backends up.
 */
export function editedBackend(next: PoolConfig, index: number, runningId: string): BackendConfig {
  const backend = next.backends[index]!;
  if (backend.id !== runningId) throw new Error(`pool "${next.name}": backend ${index} is "${backend.id}", not "${runningId}": not an in-place change`);
  return backend;
}

/** Whether two plain objects have the same keys and deep-equal values but for the keys in `except` (which both must have). */
function sameExcept(a: object, b: object, except: ReadonlySet<string>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  for (const key of keys) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) return false;
    if (except.has(key)) continue;
    const [x, y] = [(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]];
    if (x !== y && !isDeepStrictEqual(x, y)) return false;
  }
  return true;
}
