// Snapshots and compaction: MemoryStorage, InstallSnapshot to a lagging follower, restart from disk state.

import { describe, expect, it } from 'vitest';
import { isStorageError, MemoryStorage } from '../../src/raft/core/storage.js';
import { electedCluster, entry, Network } from './harness.js';

function snapshotAndCompact(net: Network, id: string, data: string): number {
  const node = net.node(id);
  const applied = node.applied.at(-1)!.index;
  node.storage.createSnapshot(applied, node.confState, data);
  node.storage.compact(applied);
  return applied;
}

describe('MemoryStorage', () => {
  it('appends, replaces a conflicting suffix, compacts and snapshots', () => {
    const storage = new MemoryStorage();
    storage.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    storage.append([entry(3, 2), entry(4, 2)]);
    expect(storage.entries(1, 5).map((e) => e.term)).toEqual([1, 1, 2, 2]);
    storage.createSnapshot(3, { voters: ['a'], learners: [] }, 'state@3');
    storage.compact(3);
    expect(storage.firstIndex()).toBe(4);
    expect(storage.term(3)).toBe(2); // the boundary term stays readable for the consistency check
    expect(() => storage.entries(3, 5)).toThrow(expect.objectContaining({ kind: 'compacted' }));
    expect(() => storage.term(2)).toThrow(expect.objectContaining({ kind: 'compacted' }));
    expect(() => storage.entries(4, 9)).toThrow(expect.objectContaining({ kind: 'unavailable' }));
    // Entries before the compaction point in an append are skipped, not re-added.
    storage.append([entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 3)]);
    expect(storage.lastIndex()).toBe(5);
    expect(storage.snapshot().metadata).toEqual({ index: 3, term: 2, confState: { voters: ['a'], learners: [] } });
  });

  it('limits entries by size but always returns at least one', () => {
    const storage = new MemoryStorage();
    storage.append([entry(1, 1, 'x'.repeat(100)), entry(2, 1, 'y'.repeat(100)), entry(3, 1, 'z')]);
    expect(storage.entries(1, 4, 10)).toHaveLength(1);
    expect(storage.entries(1, 4, 240)).toHaveLength(2); // each entry costs its data plus 16
    expect(storage.entries(1, 4, 249)).toHaveLength(3);
  });

  it('refuses an older snapshot', () => {
    const storage = new MemoryStorage();
    storage.applySnapshot({ metadata: { index: 10, term: 3, confState: { voters: ['a'], learners: [] } }, data: '' });
    let caught: unknown;
    try {
      storage.applySnapshot({ metadata: { index: 5, term: 2, confState: { voters: ['a'], learners: [] } }, data: '' });
    } catch (error) {
      caught = error;
    }
    expect(isStorageError(caught, 'snapshot-out-of-date')).toBe(true);
    expect(storage.firstIndex()).toBe(11);
  });
});

describe('InstallSnapshot', () => {
  it('a follower behind the leader\'s compacted log receives a snapshot, then the entries after it', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `p${i}`);
    const snapIndex = snapshotAndCompact(net, 'a', 'machine-state');
    net.propose('a', 'after-snapshot');
    net.heal();
    net.tickAll(5);
    const c = net.node('c');
    const installed = c.readies.find((r) => r.snapshot !== undefined)?.snapshot;
    expect(installed?.metadata.index).toBe(snapIndex);
    expect(installed?.data).toBe('machine-state');
    expect(c.storage.firstIndex()).toBe(snapIndex + 1);
    expect(net.appliedData('c')).toEqual(['after-snapshot']);
    expect(c.raw.status().commit).toBe(net.raw('a').status().commit);
    expect(c.confState.voters).toEqual(['a', 'b', 'c']);
    expect(net.sent.filter((m) => m.type === 'MsgSnap')).toHaveLength(1);
  });

  it('a stale snapshot (not beyond the follower\'s commit) is ignored', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    for (let i = 0; i < 5; i++) net.propose('a', `p${i}`);
    const before = net.log('b');
    net.raw('b').step({
      type: 'MsgSnap', from: 'a', to: 'b', term: 2,
      snapshot: { metadata: { index: 3, term: 1, confState: { voters: ['a', 'b', 'c'], learners: [] } }, data: 'old' },
    });
    net.drain(net.node('b'));
    expect(net.log('b')).toEqual(before);
    expect(net.node('b').readies.some((r) => r.snapshot !== undefined)).toBe(false);
  });

  it('the leader retries a snapshot whose delivery was reported failed', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `p${i}`);
    snapshotAndCompact(net, 'a', 's');
    net.heal();
    net.dropWhen((m) => m.type === 'MsgSnap');
    net.tickAll(2);
    expect(net.raw('a').status().progress?.['c']?.state).toBe('snapshot');
    net.raw('a').reportSnapshot('c', false);
    net.heal();
    net.tickAll(4);
    expect(net.raw('c').status().commit).toBe(net.raw('a').status().commit);
  });
});

describe('restart from persisted state', () => {
  it('a node restarts from snapshot + log + hard state, keeps term/vote/commit and replays membership', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.raw('a').proposeConfChange({ type: 'add-learner', nodeId: 'l' });
    net.drain(net.node('a'));
    net.deliverAll();
    for (let i = 0; i < 4; i++) net.propose('a', `p${i}`);
    snapshotAndCompact(net, 'b', 'b-state');
    net.propose('a', 'tail');
    const before = net.raw('b').status();
    const b = net.restart('b');
    const after = b.raw.status();
    expect(after).toMatchObject({ term: before.term, vote: before.vote, commit: before.commit, lastIndex: before.lastIndex });
    expect(after.confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['l'] });
    // Entries after the snapshot are delivered again for the state machine to re-apply.
    expect(b.applied.map((e) => e.data)).toEqual(['tail']);
    net.tickAll(3);
    expect(net.raw('a').status().role).toBe('leader');
  });

  it('a restarted node never applies past what was committed and persisted', () => {
    const storage = new MemoryStorage();
    storage.setConfState({ voters: ['a', 'b'], learners: [] });
    storage.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    storage.setHardState({ term: 1, vote: 'a', commit: 2 });
    const net = Network.fromStorages({ a: storage });
    expect(net.node('a').applied.map((e) => e.index)).toEqual([1, 2]);
    expect(net.raw('a').status()).toMatchObject({ term: 1, vote: 'a', commit: 2 });
  });
});
