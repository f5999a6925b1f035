// Leadership transfer (TimeoutNow, thesis §3.10) and linearizable reads by ReadIndex (thesis §6.4).

import { describe, expect, it } from 'vitest';
import { electedCluster, Network } from './harness.js';

describe('leadership transfer', () => {
  it('hands leadership to an up-to-date follower at once, in the next term', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.raw('a').transferLeader('b');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.raw('b').status()).toMatchObject({ role: 'leader', term: 3 });
    expect(net.raw('a').status()).toMatchObject({ role: 'follower', leader: 'b' });
    expect(net.sent.some((m) => m.type === 'MsgTimeoutNow' && m.to === 'b')).toBe(true);
  });

  it('catches a lagging target up first, then sends TimeoutNow', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `p${i}`);
    net.heal();
    net.raw('a').transferLeader('c');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.raw('c').status().role).toBe('leader');
    expect(net.appliedData('c')).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
  });

  it('drops proposals while a transfer is in progress, and aborts the transfer after an election timeout', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { electionTick: 10 });
    net.isolate('c');
    net.raw('a').transferLeader('c');
    expect(() => net.raw('a').propose('x')).toThrow(expect.objectContaining({ code: 'PROPOSAL_DROPPED' }));
    expect(net.raw('a').status().leadTransferee).toBe('c');
    net.tickAll(10);
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', leadTransferee: null });
    net.propose('a', 'y');
    expect(net.appliedData('b')).toEqual(['y']);
  });

  it('a transfer to a learner or to itself is ignored', () => {
    const net = Network.cluster(['a', 'b'], {}, ['l']);
    net.campaign('a');
    net.raw('a').transferLeader('l');
    net.raw('a').transferLeader('a');
    expect(net.raw('a').status()).toMatchObject({ role: 'leader', leadTransferee: null });
  });

  it('a follower forwards a transfer request to the leader', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.raw('b').transferLeader('b');
    net.drain(net.node('b'));
    net.deliverAll();
    expect(net.raw('b').status().role).toBe('leader');
  });
});

describe('ReadIndex', () => {
  it('the leader answers once a quorum confirms its leadership, with its commit index', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.propose('a', 'x');
    net.dropWhen((m) => m.type === 'MsgHeartbeatResp');
    net.raw('a').readIndex('r1');
    net.drain(net.node('a'));
    net.deliverAll();
    expect(net.node('a').readStates).toEqual([]);
    net.heal();
    net.tickAll(1);
    expect(net.node('a').readStates).toEqual([{ index: net.raw('a').status().commit, requestCtx: 'r1' }]);
  });

  it('a new leader defers reads until its no-op commits', () => {
    const net = Network.cluster(['a', 'b', 'c']);
    // The no-op cannot commit: followers' acknowledgements are lost.
    net.dropWhen((m) => m.type === 'MsgAppResp');
    net.campaign('a');
    expect(net.raw('a').status().role).toBe('leader');
    net.raw('a').readIndex('early');
    net.drain(net.node('a'));
    net.deliverAll();
    net.tickAll(2);
    expect(net.node('a').readStates).toEqual([]);
    net.heal();
    net.tickAll(2);
    const commit = net.raw('a').status().commit;
    expect(net.node('a').readStates).toEqual([{ index: commit, requestCtx: 'early' }]);
    expect(net.node('a').applied.at(-1)).toMatchObject({ type: 'empty', term: net.raw('a').status().term });
  });

  it('a follower forwards the request and receives the read state from the leader', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.propose('a', 'x');
    net.raw('b').readIndex('from-b');
    net.drain(net.node('b'));
    net.deliverAll();
    expect(net.node('b').readStates).toEqual([{ index: net.raw('a').status().commit, requestCtx: 'from-b' }]);
  });

  it('an isolated (deposed) leader never answers a read', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a', { checkQuorum: false });
    net.isolate('a');
    net.raw('a').readIndex('stale');
    net.drain(net.node('a'));
    net.tickAll(30);
    expect(net.node('a').readStates).toEqual([]);
  });

  it('fails at once without a leader', () => {
    const net = Network.cluster(['a', 'b', 'c']);
    expect(() => net.raw('b').readIndex('x')).toThrow(expect.objectContaining({ code: 'NO_LEADER' }));
  });
});
