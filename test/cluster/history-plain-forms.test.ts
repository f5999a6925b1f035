// A change's history entry builds the plain form of its config when the entry is read, not when the change is applied.

import { describe, expect, it, vi } from 'vitest';
import { ConfigStateMachine, encodeEnvelope, type ClusterCommand } from '../../src/cluster/state-machine.js';
import * as plain from '../../src/config/plain.js';
import type { Entry } from '../../src/raft/core/types.js';

// Every plain form of a whole config built, counted (the real function still runs).
vi.mock('../../src/config/plain.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/config/plain.js')>();
  return { ...original, toPlainReplicated: vi.fn(original.toPlainReplicated) };
});

function entry(index: number, command: ClusterCommand): Entry {
  return { term: 1, index, type: 'normal', data: encodeEnvelope({ requestId: `r${index}`, command, meta: { at: '2026-01-01T00:00:00.000Z', source: { kind: 'api', node: 'n1' } } }) };
}

describe('history entries', () => {
  it('applying changes builds no plain form of their configs; reading an entry builds its own once, as the config it recorded', () => {
    const built = vi.mocked(plain.toPlainReplicated);
    const machine = new ConfigStateMachine();
    const backends = [1, 2, 3].map((n) => ({ url: `http://127.0.0.1:900${n}`, id: `web-${n}` }));
    built.mockClear();
    machine.applyEntry(entry(1, { type: 'set-config', config: { routes: [{ match: { pathPrefix: '/' }, pool: 'web' }], pools: { web: { backends } } } }));
    const states = [machine.state.config];
    for (let index = 2; index <= 6; index++) {
      machine.applyEntry(entry(index, { type: 'update-backend', pool: 'web', id: 'web-2', patch: { weight: index } }));
      states.push(machine.state.config);
    }
    expect(built).not.toHaveBeenCalled();
    const entries = machine.history();
    expect(entries.map((e) => e.version)).toEqual([6, 5, 4, 3, 2, 1]);
    const third = machine.changeAt(3)!;
    const form = third.config;
    expect(built).toHaveBeenCalledTimes(1);
    expect(third.config).toBe(form);
    expect(built).toHaveBeenCalledTimes(1);
    expect(form).toEqual(plain.toPlainReplicated(states[2]!));
    expect((form.pools['web']!['backends'] as object[])[1]).toEqual({ url: 'http://127.0.0.1:9002', id: 'web-2', weight: 3 });
    // A snapshot carries every entry's config, and a machine restored from it lists the same history.
    const restored = new ConfigStateMachine();
    restored.restore(machine.snapshot());
    expect(JSON.parse(JSON.stringify(restored.history()))).toEqual(JSON.parse(JSON.stringify(machine.history())));
    expect(restored.changeAt(6)!.config.pools['web']).toEqual(plain.toPlainReplicated(states[5]!).pools['web']);
  });
});
