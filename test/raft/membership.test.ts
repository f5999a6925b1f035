// Single-server membership changes, learners and promotion, and a leader that removes itself.

import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../src/raft/core/storage.js';
import type { ConfChange, Message } from '../../src/raft/core/types.js';
import { electedCluster, Network, type NodeOverrides } from './harness.js';

function change(net: Network, leader: string, cc: ConfChange): void {
  net.raw(leader).proposeConfChange(cc);
  net.drain(net.node(leader));
  net.deliverAll();
}

function join(net: Network, id: string, overrides: NodeOverrides = {}): void {
  net.add(id, new MemoryStorage(), overrides);
}

describe('membership changes', () => {
  it('adds a voter that catches up from the log and then counts toward the quorum', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.propose('a', 'before');
    join(net, 'd');
    change(net, 'a', { type: 'add-voter', nodeId: 'd', address: 'd:7000' });
    net.tickAll(3);
    expect(net.raw('a').status().confState.voters).toEqual(['a', 'b', 'c', 'd']);
    expect(net.raw('d').status().confState.voters).toEqual(['a', 'b', 'c', 'd']);
    expect(net.log('d')).toEqual(net.log('a'));
    // Quorum is now 3 of 4: with b and c unreachable nothing commits.
    net.isolate('b');
    net.isolate('c');
    const commit = net.raw('a').status().commit;
    net.propose('a', 'after');
    expect(net.raw('a').status().commit).toBe(commit);
  });

  it('removes a voter: its messages no longer count and the quorum shrinks', () => {
    const net = electedCluster(['a', 'b', 'c', 'd'], 'a');
    change(net, 'a', { type: 'remove', nodeId: 'd' });
    net.tickAll(2);
    expect(net.raw('a').status().confState.voters).toEqual(['a', 'b', 'c']);
    expect(net.raw('a').status().progress?.['d']).toBeUndefined();
    net.isolate('c');
    net.propose('a', 'x'); // a + b is a majority of 3
    expect(net.appliedData('b')).toEqual(['x']);
  });

  it('allows only one pending change: the next is refused until the first is applied', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('b');
    net.isolate('c');
    net.raw('a').proposeConfChange({ type: 'add-learner', nodeId: 'x' });
    expect(() => net.raw('a').proposeConfChange({ type: 'add-learner', nodeId: 'y' })).toThrow(
      expect.objectContaining({ code: 'MEMBERSHIP_CHANGE_PENDING' }),
    );
    net.heal();
    net.drain(net.node('a'));
    net.deliverAll();
    net.tickAll(2);
    expect(net.raw('a').status().confState.learners).toEqual(['x']);
    expect(() => net.raw('a').proposeConfChange({ type: 'add-learner', nodeId: 'y' })).not.toThrow();
  });

  it('a new leader refuses changes until it has committed an entry of its own term', () => {
    const net = Network.cluster(['a', 'b', 'c']);
    net.dropWhen((m) => m.type === 'MsgAppResp');
    net.campaign('a');
    expect(net.raw('a').status().role).toBe('leader');
    expect(() => net.raw('a').proposeConfChange({ type: 'remove', nodeId: 'c' })).toThrow(/has not yet committed an entry in term/);
    net.heal();
    net.tickAll(2);
    expect(() => net.raw('a').proposeConfChange({ type: 'remove', nodeId: 'c' })).not.toThrow();
  });

  it('refuses to remove the only voter', () => {
    const net = Network.cluster(['a']);
    net.campaign('a');
    net.tickAll(1);
    expect(() => net.raw('a').proposeConfChange({ type: 'remove', nodeId: 'a' })).toThrow(/only voter/);
  });

  it('a leader that removes itself steps down and hands over to a caught-up voter', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    change(net, 'a', { type: 'remove', nodeId: 'a' });
    net.tickAll(1);
    expect(net.raw('a').status().role).toBe('follower');
    const leader = net.leader();
    expect(leader).toBeDefined();
    expect(['b', 'c']).toContain(leader!.id);
    expect(leader!.raw.status().confState.voters).toEqual(['b', 'c']);
    // The removed node cannot campaign any more.
    net.isolate('a');
    net.tickAll(50);
    expect(net.raw('a').status().role).toBe('follower');
  });

  it('a node added after the latest snapshot installs that snapshot, then learns its own membership from the log', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    for (let i = 0; i < 6; i++) net.propose('a', `p${i}`);
    const a = net.node('a');
    const at = a.applied.at(-1)!.index;
    a.storage.createSnapshot(at, a.confState, 'state');
    a.storage.compact(at);
    join(net, 'n');
    change(net, 'a', { type: 'add-learner', nodeId: 'n' });
    net.tickAll(4);
    const n = net.node('n');
    expect(n.readies.find((r) => r.snapshot !== undefined)?.snapshot?.metadata.confState.learners).toEqual([]);
    expect(n.confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['n'] });
    expect(n.raw.status().commit).toBe(net.raw('a').status().commit);
  });
});

describe('learners', () => {
  it('replicate the log but never vote, campaign, or count for the quorum', () => {
    const net = Network.cluster(['a', 'b', 'c'], {}, ['l']);
    net.campaign('a');
    net.propose('a', 'x');
    expect(net.appliedData('l')).toEqual(['x']);
    expect(net.sent.some((m) => m.to === 'l' && (m.type === 'MsgVote' || m.type === 'MsgPreVote'))).toBe(false);
    // a and the learner alone are not a quorum.
    net.isolate('b');
    net.isolate('c');
    const commit = net.raw('a').status().commit;
    net.propose('a', 'y');
    expect(net.raw('a').status().commit).toBe(commit);
    // The learner is sent nothing the voters have not committed (its acknowledgement may wait for its next due tick).
    net.tick('l', 5);
    net.deliverAll();
    expect(net.raw('a').status().progress?.['l']?.match).toBe(commit);
    expect(net.appliedData('l')).toEqual(['x']);
    // A learner left alone never campaigns.
    net.isolate('l');
    net.tickAll(60);
    expect(net.raw('l').status().role).toBe('follower');
    expect(net.sent.some((m) => m.from === 'l' && (m.type === 'MsgVote' || m.type === 'MsgPreVote'))).toBe(false);
  });

  it('get heartbeats at their own slower beat, and every new entry and commit at once', () => {
    const net = Network.cluster(['a', 'b', 'c'], { electionTick: 10 }, ['l']);
    net.campaign('a');
    // The election's appends stand in for each member's first beat (see 'skip the beat of a member...'); count after it.
    net.tickAll(5);
    const sentBefore = net.sent.length;
    net.tickAll(20);
    const beats = net.sent.slice(sentBefore).filter((m) => m.type === 'MsgHeartbeat');
    expect(beats.filter((m) => m.to === 'b')).toHaveLength(20);
    // Half an election timeout (5 ticks) apart: 4 in 20 ticks instead of 20.
    expect(beats.filter((m) => m.to === 'l')).toHaveLength(4);
    // A proposal reaches the learner, applied, as soon as it commits, without waiting for its next heartbeat.
    net.propose('a', 'x');
    expect(net.appliedData('l')).toEqual(['x']);
    // A read confirms leadership with the voters alone.
    const beforeRead = net.sent.length;
    net.raw('a').readIndex('r1');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.sent.slice(beforeRead).filter((m) => m.type === 'MsgHeartbeat').map((m) => m.to).sort()).toEqual(['b', 'c']);
    expect(net.node('a').readStates.map((r) => r.requestCtx)).toContain('r1');
  });

  it('skip the beat of a member that was sent an append since its last beat, but not a beat carrying a read index', () => {
    const net = Network.cluster(['a', 'b', 'c'], { electionTick: 10 }, ['l']);
    net.campaign('a');
    net.tickAll(5); // every member has had its first beat (the learner's comes every 5 ticks)
    const beatsTo = (from: number): string[] => net.sent.slice(from).filter((m) => m.type === 'MsgHeartbeat').map((m) => m.to).sort();
    let mark = net.sent.length;
    net.propose('a', 'x');
    expect(net.appliedData('l')).toEqual(['x']);
    net.tick('a');
    net.deliverAll();
    // b and c got the entry and its commit since their last beat: no beat this tick; the next one beats them again.
    expect(beatsTo(mark)).toEqual([]);
    mark = net.sent.length;
    net.tick('a');
    net.deliverAll();
    expect(beatsTo(mark)).toEqual(['b', 'c']);
    // The learner got its entry within its 5-tick beat: that beat is skipped too, the one after is sent.
    mark = net.sent.length;
    net.tickAll(10);
    expect(beatsTo(mark).filter((to) => to === 'l')).toHaveLength(1);
    // A read index right after an append still beats every voter: each answer confirms the leadership.
    net.propose('a', 'y');
    mark = net.sent.length;
    net.raw('a').readIndex('r1');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(beatsTo(mark)).toEqual(['b', 'c']);
    expect(net.node('a').readStates.map((r) => r.requestCtx)).toContain('r1');
  });

  it('are sent entries only once committed, with the commit index, and persist and apply them in one step', () => {
    const net = Network.cluster(['a', 'b', 'c'], {}, ['l']);
    net.campaign('a');
    net.tickAll(10); // the learner has caught up and is replicating
    const learner = net.node('l');
    const readiesBefore = learner.readies.length;
    const a = net.node('a');
    a.raw.propose('x');
    net.drain(a);
    // The proposal goes to the voters alone; the learner is not woken.
    const proposalMessages = net.takeQueued();
    expect(proposalMessages.filter((m) => m.type === 'MsgApp' && (m.entries ?? []).length > 0).map((m) => m.to).sort()).toEqual(['b', 'c']);
    expect(proposalMessages.some((m) => m.to === 'l')).toBe(false);
    const index = a.raw.status().lastIndex;
    // The voters' acknowledgements commit it; then the learner gets the entry and the commit together.
    net.send(...proposalMessages);
    const toLearner = net.sent.filter((m) => m.to === 'l' && m.type === 'MsgApp' && (m.entries ?? []).some((e) => e.index === index));
    expect(toLearner).toHaveLength(1);
    expect(toLearner[0]!.commit).toBeGreaterThanOrEqual(index);
    expect(net.appliedData('l')).toEqual(['x']);
    // One Ready persisted the entry and applied it.
    const readies = learner.readies.slice(readiesBefore).filter((r) => r.entries.length > 0 || r.committedEntries.length > 0);
    expect(readies).toHaveLength(1);
    expect(readies[0]!.entries.map((e) => e.index)).toEqual([index]);
    expect(readies[0]!.committedEntries.map((e) => e.index)).toEqual([index]);
  });

  it('acknowledge appends at most once per learner beat: the first at once, the newest at the next due tick or ahead of a heartbeat answer; rejections and the success after them at once', () => {
    const net = Network.cluster(['a', 'b', 'c'], { electionTick: 10 }, ['l']);
    net.campaign('a');
    net.tickAll(10); // the learner has caught up, and has acknowledged nothing for a whole learner beat (5 ticks)
    const a = net.node('a');
    const fromL = (mark: number): Message[] => net.sent.slice(mark).filter((m) => m.from === 'l');
    const progress = (id: string) => a.raw.status().progress?.[id];
    let mark = net.sent.length;
    net.propose('a', 'x');
    const x = a.raw.status().lastIndex;
    // After a quiet beat the first acknowledgement goes at once.
    expect(fromL(mark).map((m) => [m.type, m.index])).toEqual([['MsgAppResp', x]]);
    expect(progress('l')?.match).toBe(x);
    mark = net.sent.length;
    net.propose('a', 'y');
    net.propose('a', 'z');
    const z = a.raw.status().lastIndex;
    // Later ones are held; the entries still apply at once, and the voters answer every append at once.
    expect(net.appliedData('l')).toEqual(['x', 'y', 'z']);
    expect(fromL(mark)).toEqual([]);
    expect(progress('l')?.match).toBe(x);
    expect(progress('b')?.match).toBe(z);
    expect(progress('c')?.match).toBe(z);
    net.tick('l', 4);
    net.deliverAll();
    expect(fromL(mark)).toEqual([]);
    // At the due tick only the newest goes.
    net.tick('l');
    net.deliverAll();
    expect(fromL(mark).map((m) => [m.type, m.index])).toEqual([['MsgAppResp', z]]);
    expect(progress('l')?.match).toBe(z);
    // A held acknowledgement goes ahead of the learner's heartbeat answer.
    mark = net.sent.length;
    net.propose('a', 'w');
    const w = a.raw.status().lastIndex;
    expect(fromL(mark)).toEqual([]);
    const term = a.raw.status().term;
    net.send({ type: 'MsgHeartbeat', from: 'a', to: 'l', term, commit: w });
    expect(fromL(mark).map((m) => [m.type, m.index])).toEqual([
      ['MsgAppResp', w],
      ['MsgHeartbeatResp', undefined],
    ]);
    expect(progress('l')?.match).toBe(w);
    // A rejection goes at once, and so does the success that answers the leader's probe after it.
    mark = net.sent.length;
    net.send({ type: 'MsgApp', from: 'a', to: 'l', term, index: w + 5, logTerm: term, entries: [], commit: w });
    const answers = fromL(mark);
    expect(answers.map((m) => [m.type, m.reject === true])).toEqual([
      ['MsgAppResp', true],
      ['MsgAppResp', false],
    ]);
    expect(answers[1]!.index).toBe(w);
    expect(progress('l')?.match).toBe(w);
  });

  it('a learner promoted to voter answers at once, its held acknowledgement first', () => {
    const net = Network.cluster(['a', 'b'], { electionTick: 10 }, ['l']);
    net.campaign('a');
    net.tickAll(10);
    net.propose('a', 'x'); // acknowledged at once: the learner's next one in this beat is held
    const mark = net.sent.length;
    change(net, 'a', { type: 'add-voter', nodeId: 'l' });
    expect(net.raw('l').status().confState.voters).toContain('l');
    const last = net.raw('a').status().lastIndex;
    expect(net.raw('a').status().progress?.['l']?.match).toBe(last);
    expect(net.sent.slice(mark).some((m) => m.from === 'l' && m.type === 'MsgAppResp')).toBe(true);
    net.isolate('b');
    net.propose('a', 'with-l');
    expect(net.appliedData('a').at(-1)).toBe('with-l'); // a + l = 2 of 3, without a tick
  });

  it('a learner promoted to voter then counts and can be elected', () => {
    const net = Network.cluster(['a', 'b'], {}, ['l']);
    net.campaign('a');
    change(net, 'a', { type: 'add-voter', nodeId: 'l' });
    net.tickAll(2);
    expect(net.raw('l').status().confState).toEqual({ voters: ['a', 'b', 'l'], learners: [] });
    net.isolate('b');
    net.propose('a', 'with-l');
    expect(net.appliedData('a')).toEqual(['with-l']); // a + l = 2 of 3
    net.raw('a').transferLeader('l');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.raw('l').status().role).toBe('leader');
  });

  it('a new member joins as a learner, catches up, and is promoted', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    for (let i = 0; i < 10; i++) net.propose('a', `p${i}`);
    join(net, 'n');
    change(net, 'a', { type: 'add-learner', nodeId: 'n' });
    net.tickAll(3);
    expect(net.appliedData('n')).toHaveLength(10);
    change(net, 'a', { type: 'add-voter', nodeId: 'n' });
    net.tickAll(2);
    expect(net.raw('a').status().confState.voters).toContain('n');
    expect(net.raw('a').status().progress?.['n']?.learner).toBe(false);
  });
});
