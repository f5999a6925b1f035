// Raft §5.3-§5.4: log replication, the consistency check, Figure 7 and Figure 8, fast backtracking,
// flow control, and stale messages that must never truncate.

import { describe, expect, it } from 'vitest';
import { LogInvariantError, RaftLog } from '../../src/raft/core/log.js';
import { MemoryStorage } from '../../src/raft/core/storage.js';
import type { Message } from '../../src/raft/core/types.js';
import { electedCluster, entry, Network, storageWithLog } from './harness.js';

const noPreVote = { preVote: false, checkQuorum: false } as const;
const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

describe('Figure 7: a new leader brings every kind of follower log in line', () => {
  const followers: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  for (const [name, terms] of Object.entries(followers)) {
    it(`follower (${name}) ends with the leader's log, extra entries removed, missing ones added`, () => {
      const voters = ['L', 'F', 'N'];
      const net = Network.fromStorages(
        { L: storageWithLog(leaderLog, voters, 7), F: storageWithLog(terms, voters, 7), N: storageWithLog(leaderLog, voters, 7) },
        noPreVote,
      );
      net.campaign('L');
      expect(net.raw('L').status()).toMatchObject({ role: 'leader', term: 8 });
      net.tickAll(3);
      expect(net.terms('F')).toEqual([...leaderLog, 8]);
      expect(net.log('F')).toEqual(net.log('L'));
      expect(net.raw('F').status().commit).toBe(11);
    });
  }
});

describe('Figure 8: only entries of the current term commit by counting replicas', () => {
  it('(c) a leader does not commit an old-term entry stored on a majority while its own entry is not', () => {
    const voters = ['s1', 's2', 's3', 's4', 's5'];
    const net = Network.fromStorages(
      {
        s1: storageWithLog([1, 2], voters, 3),
        s2: storageWithLog([1, 2], voters, 3),
        s3: storageWithLog([1], voters, 3),
        s4: storageWithLog([1], voters, 3),
        s5: storageWithLog([1, 3], voters, 3),
      },
      { ...noPreVote, maxEntriesPerMsg: 1 },
    );
    // Acknowledgements of the new term's entry (index 3) are lost: the leader only learns that 2@2 is replicated.
    net.dropWhen((m) => m.type === 'MsgAppResp' && m.reject !== true && (m.index ?? 0) >= 3);
    net.campaign('s1');
    expect(net.raw('s1').status()).toMatchObject({ role: 'leader', term: 4 });
    net.tickAll(3);
    const progress = net.raw('s1').status().progress!;
    const holding2 = voters.filter((id) => (progress[id]?.match ?? 0) >= 2);
    expect(holding2.length).toBeGreaterThanOrEqual(3);
    expect(net.raw('s1').status().commit).toBe(0);
    expect(net.node('s1').applied.some((e) => e.index === 2)).toBe(false);
    net.heal();
    net.tickAll(2);
    expect(net.raw('s1').status().commit).toBe(3);
  });

  it('(d) which is why: a later leader may legally overwrite that entry', () => {
    // The state after (c) when s1 crashes: 2@2 on s1, s2, s3 but never committed; s5 holds 2@3.
    const voters = ['s1', 's2', 's3', 's4', 's5'];
    const net = Network.fromStorages(
      {
        s2: storageWithLog([1, 2], voters, 4),
        s3: storageWithLog([1, 2], voters, 4),
        s4: storageWithLog([1], voters, 4),
        s5: storageWithLog([1, 3], voters, 4),
      },
      noPreVote,
    );
    net.campaign('s5');
    expect(net.raw('s5').status()).toMatchObject({ role: 'leader', term: 5 });
    net.tickAll(3);
    for (const id of ['s2', 's3', 's4', 's5']) expect(net.terms(id)).toEqual([1, 3, 5]);
  });

  it('(e) once an entry of its own term is on a majority, the earlier entries commit with it', () => {
    const voters = ['s1', 's2', 's3', 's4', 's5'];
    const net = Network.fromStorages(
      {
        s1: storageWithLog([1, 2], voters, 3),
        s2: storageWithLog([1, 2], voters, 3),
        s3: storageWithLog([1], voters, 3),
        s4: storageWithLog([1], voters, 3),
        s5: storageWithLog([1, 3], voters, 3),
      },
      noPreVote,
    );
    net.campaign('s1');
    net.tickAll(2);
    expect(net.raw('s1').status().commit).toBe(3);
    expect(net.terms('s5')).toEqual([1, 2, 4]);
  });
});

describe('AppendEntries consistency check (§5.3)', () => {
  it('rejects when the previous entry does not match and accepts when it does', () => {
    const net = Network.fromStorages({ f: storageWithLog([1, 1, 2], ['f', 'l'], 2) }, noPreVote);
    const app = (index: number, logTerm: number): Message => ({
      type: 'MsgApp', from: 'l', to: 'f', term: 3, index, logTerm, entries: [entry(index + 1, 3)], commit: 0,
    });
    net.raw('f').step(app(3, 1));
    net.drain(net.node('f'));
    expect(net.takeQueued()[0]).toMatchObject({ type: 'MsgAppResp', reject: true, index: 3, rejectHint: 2, logTerm: 1 });
    net.raw('f').step(app(5, 2));
    net.drain(net.node('f'));
    expect(net.takeQueued()[0]).toMatchObject({ type: 'MsgAppResp', reject: true, index: 5, rejectHint: 3, logTerm: 2 });
    net.raw('f').step(app(3, 2));
    net.drain(net.node('f'));
    expect(net.takeQueued()[0]).toMatchObject({ type: 'MsgAppResp', index: 4 });
    expect(net.terms('f')).toEqual([1, 1, 2, 3]);
  });

  it('a stale or reordered MsgApp carrying a prefix never truncates later entries', () => {
    const net = Network.fromStorages({ f: storageWithLog([1], ['f', 'l'], 2) }, noPreVote);
    const full: Message = {
      type: 'MsgApp', from: 'l', to: 'f', term: 2, index: 1, logTerm: 1,
      entries: [entry(2, 2), entry(3, 2), entry(4, 2)], commit: 0,
    };
    const older: Message = { ...full, entries: [entry(2, 2)] };
    net.raw('f').step(full);
    net.raw('f').step(older);
    net.raw('f').step(full); // duplicate
    net.drain(net.node('f'));
    expect(net.terms('f')).toEqual([1, 2, 2, 2]);
    const acks = net.takeQueued().map((m) => m.index);
    // The older message acknowledges only what it vouches for (2), not our last index.
    expect(acks).toEqual([4, 2, 4]);
  });

  it('a conflicting entry below the commit index is a fatal invariant violation, never a truncation', () => {
    const storage = new MemoryStorage();
    storage.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    const log = new RaftLog(storage);
    log.commitTo(2);
    expect(() => log.maybeAppend(1, 1, 3, [entry(2, 5)])).toThrow(LogInvariantError);
    expect(log.maybeAppend(2, 1, 3, [entry(3, 5)])).toBe(3); // uncommitted conflict: truncated and replaced
    expect(log.term(3)).toBe(5);
  });

  it('the follower commit index follows the leader (heartbeats never commit beyond the follower match)', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.propose('a', 'x');
    expect(net.raw('b').status().commit).toBe(net.raw('a').status().commit);
    expect(net.appliedData('b')).toEqual(['x']);
    const heartbeats = net.sent.filter((m) => m.type === 'MsgHeartbeat');
    net.tickAll(2);
    for (const hb of net.sent.filter((m) => m.type === 'MsgHeartbeat').slice(heartbeats.length)) {
      expect(hb.commit).toBeLessThanOrEqual(net.raw(hb.to).status().lastIndex);
    }
  });
});

describe('fast backtracking by term hints', () => {
  it('repairs a follower 50 entries behind with a divergent tail in one rejected round per term', () => {
    const leader = [...Array(10).fill(1), ...[3, 4, 5, 6, 7].flatMap((t) => Array(10).fill(t))] as number[];
    const follower = [...Array(10).fill(1), ...Array(5).fill(2)] as number[];
    const voters = ['L', 'F', 'N'];
    const net = Network.fromStorages(
      { L: storageWithLog(leader, voters, 7), F: storageWithLog(follower, voters, 7), N: storageWithLog(leader, voters, 7) },
      { ...noPreVote, maxEntriesPerMsg: 100 },
    );
    net.campaign('L');
    expect(net.raw('L').status().role).toBe('leader');
    expect(net.log('F')).toEqual(net.log('L'));
    const firstAccept = net.sent.findIndex((m) => m.type === 'MsgAppResp' && m.from === 'F' && m.reject !== true);
    const toF = net.sent.slice(0, firstAccept).filter((m) => m.type === 'MsgApp' && m.to === 'F');
    const rejections = net.sent.filter((m) => m.type === 'MsgAppResp' && m.from === 'F' && m.reject === true);
    // One probe rejected (the hint skips the whole divergent term 2 and the leader skips terms 3..7),
    // then one MsgApp carrying all 51 entries: two rounds. One entry per round trip would take 50.
    expect(rejections).toHaveLength(1);
    expect(toF).toHaveLength(2);
    expect(toF[1]).toMatchObject({ index: 10, logTerm: 1 });
    expect(toF[1]!.entries).toHaveLength(51);
  });

  it('findConflictByTerm skips back past every entry of a newer term', () => {
    const storage = new MemoryStorage();
    storage.append([1, 1, 2, 2, 2, 4, 4].map((t, i) => entry(i + 1, t)));
    const log = new RaftLog(storage);
    expect(log.findConflictByTerm(7, 3)).toEqual([5, 2]);
    expect(log.findConflictByTerm(7, 1)).toEqual([2, 1]);
    expect(log.findConflictByTerm(7, 4)).toEqual([7, 4]);
    expect(log.findConflictByTerm(4, 0)).toEqual([0, 0]);
    expect(log.findConflictByTerm(20, 9)).toEqual([7, 4]);
  });
});

describe('flow control', () => {
  it('caps entries per message and MsgApp batches in flight, resuming as acknowledgements arrive', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { ...noPreVote, maxEntriesPerMsg: 2, maxInflightMsgs: 3 });
    net.dropWhen((m) => m.type === 'MsgAppResp' && m.from === 'b');
    const before = net.sent.length;
    for (let i = 0; i < 20; i++) net.propose('a', `p${i}`);
    // Empty MsgApps that only carry a new commit index are not in the window; batches of entries are.
    const toB = net.sent.slice(before).filter((m) => m.type === 'MsgApp' && m.to === 'b' && (m.entries ?? []).length > 0);
    expect(toB).toHaveLength(3);
    for (const m of toB) expect((m.entries ?? []).length).toBeLessThanOrEqual(2);
    expect(net.raw('a').status().progress?.['b']).toMatchObject({ state: 'replicate' });
    // c keeps up, so commits continue without b.
    expect(net.raw('a').status().commit).toBe(net.raw('a').status().lastIndex);
    net.heal();
    net.tickAll(15);
    expect(net.appliedData('b')).toEqual(Array.from({ length: 20 }, (_, i) => `p${i}`));
  });

  it('a follower in probe state gets one MsgApp per heartbeat until it answers', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.isolate('b');
    for (let i = 0; i < 5; i++) net.propose('a', `p${i}`);
    net.raw('a').reportUnreachable('b');
    const before = net.sent.length;
    for (let i = 0; i < 5; i++) net.propose('a', `q${i}`);
    const toB = net.sent.slice(before).filter((m) => m.type === 'MsgApp' && m.to === 'b');
    expect(toB.length).toBeLessThanOrEqual(1);
  });
});

describe('commit notices', () => {
  it('a voter that acknowledged everything takes a commit notice without answering it; one with entries unacknowledged answers', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    const before = net.sent.length;
    net.propose('a', 'x');
    const sent = net.sent.slice(before);
    // b's acknowledgement commits x while c's is still on its way: b is told it needs no answer, c is not.
    const notices = sent.filter((m) => m.type === 'MsgApp' && (m.entries ?? []).length === 0);
    expect(notices.map((m) => [m.to, m.commitOnly === true])).toEqual([
      ['b', true],
      ['c', false],
    ]);
    expect(sent.filter((m) => m.type === 'MsgAppResp').map((m) => m.from)).toEqual(['b', 'c', 'c']);
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['x']);
    expect(net.raw('b').status().commit).toBe(net.raw('a').status().commit);
  });

  it('a member whose log does not match a commit notice still rejects it, so the leader finds where they part', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.propose('a', 'x');
    const { term, lastIndex } = net.raw('b').status();
    const before = net.sent.length;
    net.send({ type: 'MsgApp', from: 'a', to: 'b', term, index: lastIndex + 5, logTerm: term, entries: [], commit: lastIndex, commitOnly: true });
    expect(net.sent.slice(before).find((m) => m.from === 'b')).toMatchObject({ type: 'MsgAppResp', to: 'a', reject: true });
  });

});
