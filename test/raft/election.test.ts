// Raft §5.2 and §5.4.1: leader election, one vote per term, the vote restriction, stale terms.

import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/clock.js';
import { RawNode } from '../../src/raft/core/raw-node.js';
import { MemoryStorage } from '../../src/raft/core/storage.js';
import type { Message } from '../../src/raft/core/types.js';
import { electedCluster, Network, storageWithLog } from './harness.js';

const noPreVote = { preVote: false, checkQuorum: false } as const;

describe('leader election (§5.2)', () => {
  it('a candidate with votes from a majority becomes leader and others follow it', () => {
    const net = Network.cluster(['a', 'b', 'c'], noPreVote);
    net.campaign('a');
    expect(net.raw('a').status().role).toBe('leader');
    expect(net.raw('a').status().term).toBe(2);
    expect(net.raw('b').status()).toMatchObject({ role: 'follower', leader: 'a', term: 2, vote: 'a' });
  });

  it('wins with a bare majority of five when two nodes are down, and cannot win with one vote in three', () => {
    const five = Network.cluster(['a', 'b', 'c', 'd', 'e'], noPreVote);
    five.remove('d');
    five.remove('e');
    five.campaign('a');
    expect(five.raw('a').status().role).toBe('leader');

    const three = Network.cluster(['a', 'b', 'c'], noPreVote);
    three.remove('b');
    three.remove('c');
    three.campaign('a');
    expect(three.raw('a').status().role).toBe('candidate');
  });

  it('a follower that hears nothing campaigns after a randomized timeout in [electionTick, 2*electionTick)', () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const raw = new RawNode({ id: 'a', voters: ['a', 'b', 'c'], random: seededRandom(seed), electionTick: 10, ...noPreVote }, new MemoryStorage());
      let ticks = 0;
      while (raw.status().role === 'follower' && ticks < 100) {
        raw.tick();
        ticks++;
        // Apply the bootstrap membership entries: a node with unapplied conf changes does not campaign.
        if (raw.hasReady()) {
          raw.ready();
          raw.advance();
        }
      }
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(ticks).toBeLessThan(20);
      seen.add(ticks);
    }
    // Randomization actually spreads timeouts, which is what breaks split votes.
    expect(seen.size).toBeGreaterThan(4);
  });

  it('a follower hearing heartbeats never campaigns', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.tickAll(100);
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', term: 2 });
    expect(net.raw('b').status().term).toBe(2);
  });

  it('a split vote resolves: eventually one leader is elected', () => {
    const net = Network.cluster(['a', 'b', 'c', 'd'], noPreVote);
    // a and b campaign simultaneously in term 2: each gets at most half.
    net.raw('a').campaign();
    net.raw('b').campaign();
    net.drain(net.node('a'));
    net.drain(net.node('b'));
    net.deliverAll();
    const leaders = [...net.nodes.values()].filter((n) => n.raw.status().role === 'leader');
    expect(leaders.length).toBeLessThanOrEqual(1);
    net.tickAll(60);
    const after = [...net.nodes.values()].filter((n) => n.raw.status().role === 'leader');
    expect(after).toHaveLength(1);
  });

  it('grants at most one vote per term, even to a second candidate with a better log', () => {
    const net = Network.cluster(['a', 'b', 'c'], noPreVote);
    net.raw('b').step({ type: 'MsgVote', from: 'a', to: 'b', term: 5, index: 3, logTerm: 1 });
    net.drain(net.node('b'));
    net.raw('b').step({ type: 'MsgVote', from: 'c', to: 'b', term: 5, index: 9, logTerm: 4 });
    net.drain(net.node('b'));
    const responses = net.takeQueued().filter((m) => m.type === 'MsgVoteResp');
    expect(responses.map((m) => [m.to, m.reject === true])).toEqual([
      ['a', false],
      ['c', true],
    ]);
    // A repeated request from the same candidate is granted again (the vote is idempotent).
    net.raw('b').step({ type: 'MsgVote', from: 'a', to: 'b', term: 5, index: 3, logTerm: 1 });
    net.drain(net.node('b'));
    expect(net.takeQueued().find((m) => m.type === 'MsgVoteResp')?.reject).toBeUndefined();
  });

  it('persists the vote before the grant leaves: the Ready that carries the grant carries the vote', () => {
    const net = Network.cluster(['a', 'b', 'c'], noPreVote);
    const b = net.node('b');
    b.readies.length = 0;
    b.raw.step({ type: 'MsgVote', from: 'a', to: 'b', term: 2, index: 3, logTerm: 1 });
    net.drain(b);
    const grant = b.readies.find((r) => r.messages.some((m) => m.type === 'MsgVoteResp'));
    expect(grant?.hardState).toMatchObject({ term: 2, vote: 'a' });
    expect(grant?.mustSync).toBe(true);
    // And it survives a crash: after restart b refuses another candidate in term 2.
    const restarted = net.restart('b', noPreVote);
    expect(restarted.raw.status()).toMatchObject({ term: 2, vote: 'a' });
    restarted.raw.step({ type: 'MsgVote', from: 'c', to: 'b', term: 2, index: 3, logTerm: 1 });
    net.drain(restarted);
    expect(net.takeQueued().find((m) => m.type === 'MsgVoteResp' && m.to === 'c')?.reject).toBe(true);
  });

  it('a candidate persists its own term and self-vote before asking for votes', () => {
    const net = Network.cluster(['a', 'b', 'c'], noPreVote);
    const a = net.node('a');
    a.readies.length = 0;
    a.raw.campaign();
    net.drain(a);
    const asking = a.readies.find((r) => r.messages.some((m) => m.type === 'MsgVote'));
    expect(asking?.hardState).toMatchObject({ term: 2, vote: 'a' });
  });
});

describe('vote restriction (§5.4.1)', () => {
  // voter's log: terms [1, 1, 2] (last term 2, last index 3)
  const cases: Array<[string, number, number, boolean]> = [
    ['higher last term, shorter log', 3, 1, true],
    ['same last term, longer log', 2, 4, true],
    ['same last term, same length', 2, 3, true],
    ['same last term, shorter log', 2, 2, false],
    ['lower last term, longer log', 1, 9, false],
  ];
  for (const [name, logTerm, index, granted] of cases) {
    it(`${granted ? 'grants' : 'refuses'} a candidate with ${name}`, () => {
      const net = Network.fromStorages({ v: storageWithLog([1, 1, 2], ['v', 'x', 'y'], 2) }, noPreVote);
      net.raw('v').step({ type: 'MsgVote', from: 'x', to: 'v', term: 3, index, logTerm });
      net.drain(net.node('v'));
      const resp = net.takeQueued().find((m) => m.type === 'MsgVoteResp');
      expect(resp?.reject === true).toBe(!granted);
      // The term moves either way: a higher term always demotes.
      expect(net.raw('v').status().term).toBe(3);
    });
  }

  it('a node with a stale log cannot be elected; an up-to-date one can', () => {
    const net = Network.fromStorages(
      {
        a: storageWithLog([1], ['a', 'b', 'c'], 2),
        b: storageWithLog([1, 2], ['a', 'b', 'c'], 2),
        c: storageWithLog([1, 2], ['a', 'b', 'c'], 2),
      },
      noPreVote,
    );
    net.campaign('a');
    expect(net.raw('a').status().role).not.toBe('leader');
    net.campaign('b');
    expect(net.raw('b').status().role).toBe('leader');
  });
});

describe('terms (§5.1)', () => {
  it('a leader that sees a higher term steps down to follower', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.raw('a').step({ type: 'MsgHeartbeat', from: 'c', to: 'a', term: 9, commit: 0 });
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', term: 9, leader: 'c' });
  });

  it('a candidate that receives AppendEntries from a leader of its term steps down', () => {
    const net = Network.cluster(['a', 'b', 'c'], noPreVote);
    net.isolate('a');
    net.campaign('a');
    expect(net.raw('a').status()).toMatchObject({ role: 'candidate', term: 2 });
    net.heal();
    net.raw('a').step({ type: 'MsgApp', from: 'b', to: 'a', term: 2, index: 3, logTerm: 1, entries: [], commit: 3 });
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', term: 2, leader: 'b' });
  });

  it('messages from stale terms are ignored: no state change, and a stale leader is told the term', () => {
    // With pre-vote or check-quorum on, the reply is what makes a stale leader step down.
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.raw('a').transferLeader('b');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.raw('b').status()).toMatchObject({ role: 'leader', term: 3 });
    const before = net.log('c');
    net.raw('c').step({
      type: 'MsgApp',
      from: 'a',
      to: 'c',
      term: 2,
      index: 4,
      logTerm: 2,
      entries: [{ term: 2, index: 5, type: 'normal', data: 'stale' }],
      commit: 5,
    });
    net.drain(net.node('c'));
    expect(net.log('c')).toEqual(before);
    expect(net.raw('c').status()).toMatchObject({ term: 3, leader: 'b' });
    const replies = net.takeQueued().filter((m: Message) => m.to === 'a');
    expect(replies).toEqual([{ type: 'MsgAppResp', from: 'c', to: 'a', term: 3 }]);
    // Stale vote requests are ignored too.
    net.raw('c').step({ type: 'MsgVote', from: 'a', to: 'c', term: 2, index: 99, logTerm: 2 });
    net.drain(net.node('c'));
    expect(net.takeQueued()).toEqual([]);
  });

  it('a candidate rejected by a majority returns to follower without waiting for its timeout', () => {
    const net = Network.fromStorages(
      {
        a: storageWithLog([1], ['a', 'b', 'c'], 2),
        b: storageWithLog([1, 2], ['a', 'b', 'c'], 2),
        c: storageWithLog([1, 2], ['a', 'b', 'c'], 2),
      },
      noPreVote,
    );
    net.campaign('a');
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', term: 3, leader: null });
  });

  it('a restarted node keeps its term: terms never go back', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.campaign('b');
    const restarted = net.restart('c', noPreVote);
    expect(restarted.raw.status().term).toBe(3);
  });
});

describe('elections started (the count behind balancer_raft_elections_started_total)', () => {
  it('counts each round of a node that cannot win, pre-vote rounds included, though its term never moves', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { preVote: true, checkQuorum: true, electionTick: 10 });
    expect(net.raw('b').electionsStarted()).toBe(0);
    const term = net.raw('b').status().term;
    net.isolate('b');
    // 100 ticks without a leader: a round at least every 2 * electionTick ticks, at most one per electionTick.
    net.tick('b', 100);
    expect(net.raw('b').status()).toMatchObject({ role: 'pre-candidate', term });
    expect(net.raw('b').electionsStarted()).toBeGreaterThanOrEqual(100 / 20 - 1);
    expect(net.raw('b').electionsStarted()).toBeLessThanOrEqual(100 / 10);
  });

  it('counts nothing on followers that hear their leader, nor on a learner that hears nobody', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    const leaderElections = net.raw('a').electionsStarted();
    net.tickAll(100);
    expect(net.raw('b').electionsStarted()).toBe(0);
    expect(net.raw('c').electionsStarted()).toBe(0);
    expect(net.raw('a').electionsStarted()).toBe(leaderElections);

    const learner = Network.cluster(['a', 'b'], noPreVote, ['l']);
    learner.isolate('l');
    learner.tick('l', 100);
    expect(learner.raw('l').electionsStarted()).toBe(0);
  });

  it('counts a transfer\'s round on the node asked to take over', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', noPreVote);
    net.raw('a').transferLeader('b');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.raw('b').status()).toMatchObject({ role: 'leader' });
    expect(net.raw('b').electionsStarted()).toBe(1);
  });
});
