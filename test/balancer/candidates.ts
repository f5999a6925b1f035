// Test doubles for strategy candidates: plain mutable objects with the Candidate shape.

import type { Candidate } from '../../src/balancer/strategy.js';

export interface TestCandidate extends Candidate {
  available: boolean;
  effectiveWeight: number;
  inflight: number;
}

export function candidates(spec: Record<string, number> | readonly string[]): TestCandidate[] {
  const entries: Array<[string, number]> = Array.isArray(spec)
    ? spec.map((id): [string, number] => [id, 1])
    : Object.entries(spec as Record<string, number>);
  return entries.map(([id, weight]) => ({ id, available: true, effectiveWeight: weight, inflight: 0 }));
}

/** Picks `count` times and returns the ids (undefined as '-'). */
export function sequence(pick: () => Candidate | undefined, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(pick()?.id ?? '-');
  return out;
}
