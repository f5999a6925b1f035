// PreVote and CheckQuorum (Raft thesis §9.6, §6.2): partitioned, removed and isolated nodes.

import { describe, expect, it } from 'vitest';
import { electedCluster, Network } from './harness.js';

describe('PreVote', () => {
  it('a partitioned node does not inflate its term, so rejoining does not depose the leader', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    const term = net.raw('a').status().term;
    net.isolate('c');
    net.tickAll(100);
    expect(net.raw('c').status().term).toBe(term);
    expect(net.raw('c').status().role).toBe('pre-candidate');
    net.heal();
    net.tickAll(5);
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', term });
    expect(net.raw('c').status()).toMatchObject({ role: 'follower', leader: 'a', term });
  });

  it('without pre-vote the same partition forces an election on rejoin (what pre-vote prevents)', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { preVote: false, checkQuorum: false });
    const term = net.raw('a').status().term;
    net.isolate('c');
    net.tickAll(100);
    expect(net.raw('c').status().term).toBeGreaterThan(term + 3);
    net.heal();
    net.tickAll(30);
    expect(net.leader()!.raw.status().term).toBeGreaterThan(term);
  });

  it('a pre-vote changes neither the voter\'s term nor its vote', () => {
    const net = Network.cluster(['a', 'b', 'c']);
    net.raw('b').step({ type: 'MsgPreVote', from: 'a', to: 'b', term: 2, index: 3, logTerm: 1 });
    net.drain(net.node('b'));
    expect(net.raw('b').status()).toMatchObject({ term: 1, vote: null });
    expect(net.takeQueued()).toEqual([{ type: 'MsgPreVoteResp', from: 'b', to: 'a', term: 2 }]);
  });

  it('a pre-candidate with a stale log is refused and never becomes a candidate', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('c');
    net.propose('a', 'x');
    net.heal();
    net.isolate('a'); // b (up to date) and c (stale) can talk; the leader is gone
    // c campaigns first: refused by b (b's log is longer), so c stays at its term.
    const term = net.raw('c').status().term;
    net.campaign('c');
    expect(net.raw('c').status()).toMatchObject({ role: 'pre-candidate', term });
    net.tickAll(40);
    expect(net.leader()!.id).not.toBe('c');
  });
});

describe('CheckQuorum and the leader lease', () => {
  it('an isolated leader steps down within one election timeout', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { electionTick: 10 });
    net.isolate('a');
    let ticks = 0;
    while (net.raw('a').status().role === 'leader' && ticks < 100) {
      net.tick('a');
      ticks++;
    }
    expect(ticks).toBeLessThanOrEqual(20);
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', leader: null });
  });

  it('a leader that hears from a quorum keeps leading', () => {
    const net = electedCluster(['a', 'b', 'c', 'd', 'e'], 'a');
    net.isolate('d');
    net.isolate('e');
    net.tickAll(50);
    expect(net.raw('a').status().role).toBe('leader');
  });

  it('followers within the lease ignore vote requests, even from a higher term', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    const b = net.node('b');
    b.raw.step({ type: 'MsgVote', from: 'c', to: 'b', term: 9, index: 100, logTerm: 9 });
    net.drain(b);
    expect(b.raw.status()).toMatchObject({ term: 2, leader: 'a', vote: 'a' });
    expect(net.takeQueued()).toEqual([]);
  });

  it('a removed node that never learned of its removal cannot disrupt the cluster', () => {
    const net = electedCluster(['a', 'b', 'c', 'd'], 'a');
    net.isolate('d');
    net.raw('a').proposeConfChange({ type: 'remove', nodeId: 'd' });
    net.drain(net.node('a'));
    net.deliverAll();
    net.tickAll(3);
    expect(net.raw('a').status().confState.voters).toEqual(['a', 'b', 'c']);
    const term = net.raw('a').status().term;
    net.heal();
    // d still thinks it is a voter and campaigns repeatedly; nobody must follow it.
    net.tickAll(100);
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', term });
    expect(net.raw('b').status().term).toBe(term);
  });

  it('a stale leader that rejoins learns the new term from a follower\'s reply and steps down', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { checkQuorum: false });
    net.isolate('a');
    net.tickAll(40); // b or c wins term 3 while a still believes it leads term 2
    const leader = net.leader();
    expect(leader!.id).not.toBe('a');
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', term: 2 });
    net.heal();
    net.tickAll(3);
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', leader: leader!.id });
  });
});
