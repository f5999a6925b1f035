// The Wing & Gong checker: accepts linearizable register histories, rejects the rest, handles timeouts.

import { describe, expect, it } from 'vitest';
import { checkLinearizable, type HistoryOp } from '../../src/raft/sim/linearizability.js';

const write = (client: number, value: string, call: number, ret: number, output?: 'ok'): HistoryOp => ({
  client, op: { kind: 'write', value }, call, ret, ...(output === undefined ? {} : { output }),
});
const cas = (client: number, expect: string | null, value: string, call: number, ret: number, output?: 'ok' | 'fail'): HistoryOp => ({
  client, op: { kind: 'cas', expect, value }, call, ret, ...(output === undefined ? {} : { output }),
});
const read = (client: number, value: string | null, call: number, ret: number): HistoryOp => ({
  client, op: { kind: 'read' }, call, ret, output: value,
});

describe('linearizability checker', () => {
  it('accepts a sequential history and returns a witness order', () => {
    const result = checkLinearizable([write(0, 'a', 0, 1, 'ok'), read(1, 'a', 2, 3), cas(0, 'a', 'b', 4, 5, 'ok'), read(1, 'b', 6, 7)]);
    expect(result.ok).toBe(true);
    expect(result.order).toEqual([0, 1, 2, 3]);
  });

  it('rejects a stale read after a completed write', () => {
    expect(checkLinearizable([write(0, 'a', 0, 1, 'ok'), read(1, null, 2, 3)]).ok).toBe(false);
  });

  it('accepts either order for overlapping operations', () => {
    expect(checkLinearizable([write(0, 'a', 0, 10, 'ok'), read(1, null, 1, 2), read(2, 'a', 3, 4)]).ok).toBe(true);
    // ...but a read cannot see the new value and then the old one.
    expect(checkLinearizable([write(0, 'a', 0, 10, 'ok'), read(1, 'a', 1, 2), read(2, null, 3, 4)]).ok).toBe(false);
  });

  it('checks compare-and-set outcomes', () => {
    expect(checkLinearizable([cas(0, null, 'a', 0, 1, 'ok'), cas(1, null, 'b', 2, 3, 'ok')]).ok).toBe(false);
    expect(checkLinearizable([cas(0, null, 'a', 0, 1, 'ok'), cas(1, null, 'b', 2, 3, 'fail'), read(0, 'a', 4, 5)]).ok).toBe(true);
    // Two concurrent CAS from the same expected value cannot both succeed.
    expect(checkLinearizable([cas(0, null, 'a', 0, 5, 'ok'), cas(1, null, 'b', 0, 5, 'ok')]).ok).toBe(false);
  });

  it('a timed-out write may have happened, at any time after its call, or never', () => {
    const timedOut = write(0, 'x', 0, Infinity);
    expect(checkLinearizable([timedOut, read(1, 'x', 5, 6)]).ok).toBe(true);
    expect(checkLinearizable([timedOut, read(1, null, 5, 6)]).ok).toBe(true);
    expect(checkLinearizable([timedOut, read(1, 'x', 5, 6), read(1, null, 7, 8)]).ok).toBe(false);
    // It cannot have happened before it was called.
    expect(checkLinearizable([read(1, 'x', 0, 1), write(0, 'x', 2, Infinity)]).ok).toBe(false);
  });

  it('a timed-out compare-and-set is judged by its effect, not its unknown answer', () => {
    const history = [write(0, 'a', 0, 1, 'ok'), cas(1, 'a', 'b', 2, Infinity), read(2, 'b', 10, 11), cas(0, 'b', 'c', 12, 13, 'ok')];
    expect(checkLinearizable(history).ok).toBe(true);
  });

  it('handles a larger concurrent history quickly thanks to memoization', () => {
    const history: HistoryOp[] = [];
    // 8 clients, each writing its own value concurrently, then reads that agree on the last one.
    for (let c = 0; c < 8; c++) history.push(write(c, `v${c}`, 0, 100, 'ok'));
    for (let c = 0; c < 8; c++) history.push(read(c, 'v3', 101 + c, 102 + c));
    // Without memoization this search is 16! orderings: it would run into the test timeout rather than pass.
    expect(checkLinearizable(history).ok).toBe(true);
  });
});
