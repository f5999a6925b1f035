// The cluster state machine: commands by log index, request-id dedupe, CAS, membership with addresses, snapshot determinism.

import { describe, expect, it } from 'vitest';
import { ConfigStateMachine, encodeEnvelope, type ClusterCommand } from '../../src/cluster/state-machine.js';
import type { ConfigCommand } from '../../src/control/config-reducer.js';
import type { Entry } from '../../src/raft/core/types.js';

const webConfig = { routes: [], pools: { web: { backends: [{ url: 'http://127.0.0.1:9001', id: 'a' }] } } };

function entry(index: number, requestId: string, command: ClusterCommand): Entry {
  return { term: 1, index, type: 'normal', data: encodeEnvelope({ requestId, command }), requestId };
}

describe('ConfigStateMachine', () => {
  it('applies set-config with the log index as the version', () => {
    const machine = new ConfigStateMachine();
    const effect = machine.applyEntry(entry(7, 'r1', { type: 'set-config', config: webConfig, expectedVersion: 0 }));
    expect(effect).toMatchObject({ kind: 'command', duplicate: false, outcome: { ok: true, version: 7 } });
    expect(machine.version).toBe(7);
    expect(Object.keys(machine.state.config.pools)).toEqual(['web']);
  });

  it('refuses a compare-and-set from a stale version and changes nothing', () => {
    const machine = new ConfigStateMachine();
    machine.applyEntry(entry(3, 'seed', { type: 'set-config', config: webConfig, expectedVersion: 0 }));
    const effect = machine.applyEntry(entry(4, 'late-seed', { type: 'set-config', config: { routes: [], pools: {} }, expectedVersion: 0 }));
    expect(effect).toMatchObject({ kind: 'command', outcome: { ok: false, error: { code: 'VERSION_MISMATCH' } } });
    expect(machine.version).toBe(3);
  });

  it('applies a retried request once and answers the retry with the first outcome', () => {
    const machine = new ConfigStateMachine();
    machine.applyEntry(entry(1, 'seed', { type: 'set-config', config: webConfig }));
    const add: ConfigCommand = { type: 'add-backend', pool: 'web', backend: { url: 'http://127.0.0.1:9002', id: 'b' } };
    const first = machine.applyEntry(entry(2, 'add-b', add));
    const retry = machine.applyEntry(entry(3, 'add-b', add));
    expect(first).toMatchObject({ duplicate: false, outcome: { ok: true, version: 2, backend: { id: 'b' } } });
    expect(retry).toMatchObject({ duplicate: true, outcome: { ok: true, version: 2 } });
    expect(machine.version).toBe(2);
    expect(machine.state.config.pools['web']!.backends.map((b) => b.id)).toEqual(['a', 'b']);
  });

  it('adds a backup backend, and keeps it one through later weight and drain edits', () => {
    const machine = new ConfigStateMachine();
    machine.applyEntry(entry(1, 'seed', { type: 'set-config', config: webConfig }));
    machine.applyEntry(entry(2, 'add-spare', { type: 'add-backend', pool: 'web', backend: { url: 'http://127.0.0.1:9009', id: 'spare', backup: true } }));
    machine.applyEntry(entry(3, 'weigh-spare', { type: 'update-backend', pool: 'web', id: 'spare', patch: { weight: 3, drain: true } }));
    expect(machine.state.config.pools['web']!.backends.map((b) => [b.id, b.backup, b.weight, b.drain])).toEqual([
      ['a', false, 1, false],
      ['spare', true, 3, true],
    ]);
  });

  it('validates again at apply: an invalid config is refused with every problem', () => {
    const machine = new ConfigStateMachine();
    const effect = machine.applyEntry(entry(1, 'bad', { type: 'set-config', config: { routes: [{ pool: 'missing' }], pools: {} } }));
    expect(effect).toMatchObject({ kind: 'command', outcome: { ok: false, error: { code: 'CONFIG_INVALID' } } });
    if (effect.kind === 'command' && !effect.outcome.ok) expect(effect.outcome.error.details.length).toBeGreaterThan(0);
    expect(machine.version).toBe(0);
  });

  it('refuses a guarded command that would take traffic down, at apply time; unguarded (older) entries apply as before', () => {
    const machine = new ConfigStateMachine();
    machine.applyEntry(entry(1, 'seed', { type: 'set-config', config: webConfig, refuseUnsafe: true }));
    expect(machine.version).toBe(1);
    const guarded = machine.applyEntry(entry(2, 'rm-a', { type: 'remove-backend', pool: 'web', id: 'a', refuseUnsafe: true }));
    expect(guarded).toMatchObject({ kind: 'command', outcome: { ok: false, error: { code: 'UNSAFE_CHANGE' } } });
    expect(machine.version).toBe(1);
    const emptied = machine.applyEntry(entry(3, 'empty', { type: 'set-config', config: { routes: [], pools: {} }, refuseUnsafe: true }));
    expect(emptied).toMatchObject({ outcome: { ok: false, error: { code: 'UNSAFE_CHANGE' } } });
    // An entry from before the field existed (or a forced one) carries none: it applies, as it did when it was written.
    const unguarded = machine.applyEntry(entry(4, 'rm-a-old', { type: 'remove-backend', pool: 'web', id: 'a' }));
    expect(unguarded).toMatchObject({ outcome: { ok: true, version: 4 } });
    expect(machine.state.config.pools['web']!.backends).toEqual([]);
  });

  it('keeps the last N versions with the time, source and request id the proposer stamped, through a snapshot', () => {
    const machine = new ConfigStateMachine(undefined, 3);
    const meta = (n: number) => ({ at: `2026-11-30T00:00:0${n}.000Z`, source: { kind: 'cli' as const, node: `n${n}` } });
    const envelope = (index: number, command: ConfigCommand, withMeta: boolean): Entry => ({
      term: 1,
      index,
      type: 'normal',
      data: encodeEnvelope({ requestId: `r${index}`, command, ...(withMeta ? { meta: meta(index) } : {}) }),
      requestId: `r${index}`,
    });
    machine.applyEntry(envelope(1, { type: 'set-config', config: webConfig }, false));
    for (let i = 2; i <= 5; i++) machine.applyEntry(envelope(i, { type: 'update-backend', pool: 'web', id: 'a', patch: { weight: i } }, true));
    // A refused command makes no version.
    machine.applyEntry(envelope(6, { type: 'remove-backend', pool: 'web', id: 'nope' }, true));
    const history = machine.history();
    expect(history.map((entry) => entry.version)).toEqual([5, 4, 3]);
    expect(history[0]).toMatchObject({ requestId: 'r5', change: 'update backend web/a: weight 5', at: '2026-11-30T00:00:05.000Z', source: { kind: 'cli', node: 'n5' } });
    expect((history[0]!.config.pools['web'] as { backends: { weight: number }[] }).backends[0]!.weight).toBe(5);

    const restored = new ConfigStateMachine(undefined, 2);
    restored.restore(machine.snapshot());
    expect(restored.history().map((entry) => entry.version)).toEqual([5, 4]);
    // An entry from before changes carried their source is recorded as such.
    const older = new ConfigStateMachine();
    older.applyEntry(envelope(1, { type: 'set-config', config: webConfig }, false));
    expect(older.history()[0]).toMatchObject({ version: 1, at: null, source: { kind: 'unknown' } });
  });

  it('skips no-ops and reports malformed entries without throwing', () => {
    const machine = new ConfigStateMachine();
    expect(machine.applyEntry({ term: 2, index: 5, type: 'empty', data: '' })).toEqual({ kind: 'noop' });
    expect(machine.applyEntry({ term: 2, index: 6, type: 'normal', data: '{not json' }).kind).toBe('malformed');
    expect(machine.applyEntry({ term: 2, index: 7, type: 'normal', data: '{"x":1}' }).kind).toBe('malformed');
    expect(machine.version).toBe(0);
  });

  it('tracks members with addresses; promotion keeps the address, remove forgets the member', () => {
    const machine = new ConfigStateMachine();
    machine.applyConfChange({ type: 'add-voter', nodeId: 'n1' });
    machine.applyConfChange({ type: 'add-learner', nodeId: 'n4', address: '127.0.0.1:7004' });
    expect(machine.member('n4')).toEqual({ id: 'n4', address: '127.0.0.1:7004', voter: false });
    machine.applyConfChange({ type: 'add-voter', nodeId: 'n4' });
    expect(machine.member('n4')).toEqual({ id: 'n4', address: '127.0.0.1:7004', voter: true });
    expect(machine.member('n1')).toEqual({ id: 'n1', address: null, voter: true });
    machine.applyConfChange({ type: 'remove', nodeId: 'n4' });
    expect(machine.member('n4')).toBeUndefined();
  });

  it('records the cluster id once and each member\'s incarnation once; only remove and add again changes it', () => {
    const machine = new ConfigStateMachine();
    for (const id of ['n1', 'n2', 'n3']) machine.applyConfChange({ type: 'add-voter', nodeId: id });
    machine.applyEntry(entry(1, 'seed', { type: 'set-config', config: webConfig }));
    const first = machine.applyEntry(entry(2, 'id-1', { type: 'record-identity', clusterId: 'c1c1c1c1', incarnations: { n1: 'a1a1a1a1', n9: 'f9f9f9f9' } }));
    expect(first).toMatchObject({ kind: 'command', outcome: { ok: true, version: 1 } });
    // Recording is no config change.
    expect(machine.version).toBe(1);
    expect(machine.clusterId).toBe('c1c1c1c1');
    expect(machine.member('n1')?.incarnation).toBe('a1a1a1a1');
    expect(machine.member('n9')).toBeUndefined();

    machine.applyEntry(entry(3, 'id-2', { type: 'record-identity', clusterId: 'c2c2c2c2', incarnations: { n1: 'b1b1b1b1', n2: 'a2a2a2a2' } }));
    expect(machine.clusterId).toBe('c1c1c1c1');
    expect(machine.member('n1')?.incarnation).toBe('a1a1a1a1');
    expect(machine.member('n2')?.incarnation).toBe('a2a2a2a2');

    machine.applyConfChange({ type: 'add-learner', nodeId: 'n4', address: '127.0.0.1:7004' });
    machine.applyEntry(entry(4, 'id-3', { type: 'record-identity', incarnations: { n4: 'a4a4a4a4' } }));
    machine.applyConfChange({ type: 'add-voter', nodeId: 'n4' });
    expect(machine.member('n4')).toMatchObject({ voter: true, incarnation: 'a4a4a4a4', address: '127.0.0.1:7004' });

    machine.applyConfChange({ type: 'remove', nodeId: 'n2' });
    machine.applyConfChange({ type: 'add-voter', nodeId: 'n2', address: '127.0.0.1:7002' });
    expect(machine.member('n2')?.incarnation).toBeUndefined();
    machine.applyEntry(entry(5, 'id-4', { type: 'record-identity', incarnations: { n2: 'b2b2b2b2' } }));
    expect(machine.member('n2')?.incarnation).toBe('b2b2b2b2');

    const restored = new ConfigStateMachine();
    restored.restore(machine.snapshot());
    expect(restored.clusterId).toBe('c1c1c1c1');
    expect(restored.members()).toEqual(machine.members());
    // A snapshot from before identities were recorded restores with none.
    const older = JSON.parse(machine.snapshot()) as Record<string, unknown>;
    delete older['clusterId'];
    older['members'] = (older['members'] as Array<Record<string, unknown>>).map(({ incarnation: _dropped, ...rest }) => rest);
    const fromOlder = new ConfigStateMachine();
    fromOlder.restore(JSON.stringify(older));
    expect(fromOlder.clusterId).toBeNull();
    expect(fromOlder.member('n1')?.incarnation).toBeUndefined();
  });

  it('records a removed member with its incarnation and the removal index until it is added again; snapshots carry it', () => {
    const machine = new ConfigStateMachine();
    for (const id of ['n1', 'n2', 'n3']) machine.applyConfChange({ type: 'add-voter', nodeId: id }, 1);
    machine.applyEntry(entry(4, 'id-1', { type: 'record-identity', clusterId: 'c1c1c1c1', incarnations: { n1: 'a1a1a1a1', n2: 'a2a2a2a2', n3: 'a3a3a3a3' } }));
    expect(machine.removedMember('n3')).toBeNull();
    machine.applyConfChange({ type: 'remove', nodeId: 'n3' }, 9);
    expect(machine.removedMember('n3')).toEqual({ id: 'n3', index: 9, incarnation: 'a3a3a3a3' });

    const restored = new ConfigStateMachine();
    restored.restore(machine.snapshot());
    expect(restored.removedMember('n3')).toEqual({ id: 'n3', index: 9, incarnation: 'a3a3a3a3' });
    // A snapshot from before removals were recorded restores with none.
    const older = JSON.parse(machine.snapshot()) as Record<string, unknown>;
    delete older['removed'];
    const fromOlder = new ConfigStateMachine();
    fromOlder.restore(JSON.stringify(older));
    expect(fromOlder.removedMember('n3')).toBeNull();

    // Added again (with a new data dir): no longer a removed member.
    machine.applyConfChange({ type: 'add-learner', nodeId: 'n3', address: '127.0.0.1:7003' }, 12);
    expect(machine.removedMember('n3')).toBeNull();
  });

  it('restores from a snapshot to an identical state that keeps deduplicating', () => {
    const machine = new ConfigStateMachine();
    machine.applyConfChange({ type: 'add-voter', nodeId: 'n1' });
    machine.applyConfChange({ type: 'add-learner', nodeId: 'n2', address: '127.0.0.1:7002' });
    machine.applyEntry(entry(3, 'seed', { type: 'set-config', config: webConfig }));
    machine.applyEntry(entry(4, 'w', { type: 'update-backend', pool: 'web', id: 'a', patch: { weight: 5 } }));
    const data = machine.snapshot();

    const restored = new ConfigStateMachine();
    restored.restore(data);
    expect(restored.snapshot()).toBe(data);
    expect(restored.state).toEqual(machine.state);
    expect(restored.members()).toEqual(machine.members());

    // Both apply the same later entries to the same result, the duplicate included.
    const later = [entry(5, 'w', { type: 'update-backend', pool: 'web', id: 'a', patch: { weight: 9 } }), entry(6, 'x', { type: 'remove-backend', pool: 'web', id: 'a' })];
    for (const e of later) {
      expect(restored.applyEntry(e)).toEqual(machine.applyEntry(e));
    }
    expect(restored.snapshot()).toBe(machine.snapshot());
    expect(restored.state.config.pools['web']!.backends).toEqual([]);
  });

  it('two machines fed the same entries agree byte for byte', () => {
    const commands: ConfigCommand[] = [
      { type: 'set-config', config: webConfig, expectedVersion: 0 },
      { type: 'add-backend', pool: 'web', backend: { url: 'http://127.0.0.1:9003' } },
      { type: 'add-backend', pool: 'nope', backend: { url: 'http://127.0.0.1:9004' } },
      { type: 'update-backend', pool: 'web', id: 'a', patch: { drain: true } },
      { type: 'set-config', config: webConfig, expectedVersion: 2 },
    ];
    const a = new ConfigStateMachine();
    const b = new ConfigStateMachine();
    commands.forEach((command, i) => {
      const e = entry(i + 1, `r${i}`, command);
      expect(a.applyEntry(e)).toEqual(b.applyEntry(e));
    });
    expect(a.snapshot()).toBe(b.snapshot());
  });

  it('refuses a snapshot that is not one of its own', () => {
    expect(() => new ConfigStateMachine().restore('nope')).toThrow(/not JSON/);
    expect(() => new ConfigStateMachine().restore('{"format":9}')).toThrow(/unknown format/);
  });
});
