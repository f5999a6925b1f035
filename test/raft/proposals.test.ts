// Proposals: forwarding from followers, fast failure without a leader, and request-id dedupe at apply time.

import { describe, expect, it } from 'vitest';
import { isBalancerError } from '../../src/errors.js';
import { RequestDedupe } from '../../src/raft/core/dedupe.js';
import { RegisterMachine } from '../../src/raft/sim/register.js';
import { electedCluster, Network } from './harness.js';

describe('proposals', () => {
  it('a proposal at a follower is forwarded to the leader and applied everywhere', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.propose('c', 'from-c');
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['from-c']);
    expect(net.sent.some((m) => m.type === 'MsgProp' && m.from === 'c' && m.to === 'a')).toBe(true);
  });

  it('fails at once with NO_LEADER when no leader is known', () => {
    const net = Network.cluster(['a', 'b', 'c']);
    let caught: unknown;
    try {
      net.raw('a').propose('x');
    } catch (error) {
      caught = error;
    }
    expect(isBalancerError(caught, 'NO_LEADER')).toBe(true);
  });

  it('a candidate refuses proposals (NO_LEADER)', () => {
    const net = Network.cluster(['a', 'b', 'c'], { preVote: false });
    net.isolate('a');
    net.campaign('a');
    expect(() => net.raw('a').propose('x')).toThrow(expect.objectContaining({ code: 'NO_LEADER' }));
  });

  it('a membership change proposed at a follower fails with NOT_LEADER naming the leader', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    expect(() => net.raw('b').proposeConfChange({ type: 'add-learner', nodeId: 'z' })).toThrow(/the leader is a/);
  });

  it('a proposal forwarded to a leader that cannot take it is dropped there, not thrown across the network', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.isolate('c');
    net.raw('a').transferLeader('c'); // a refuses proposals while transferring
    net.heal();
    net.cut('a', 'c');
    expect(() => net.propose('b', 'x')).not.toThrow();
    expect(net.appliedData('a')).toEqual([]);
  });

  it('the committed entry carries the request id', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    net.propose('b', 'payload', 'req-1');
    expect(net.node('c').applied.at(-1)).toMatchObject({ data: 'payload', requestId: 'req-1' });
  });
});

describe('request-id dedupe', () => {
  it('a retried proposal that lands in the log twice is applied once, and the retry gets the first result', () => {
    const net = electedCluster(['a', 'b', 'c'], 'a');
    const command = JSON.stringify({ op: 'cas', expect: null, value: 'v1' });
    net.propose('b', command, 'req-1');
    net.propose('c', command, 'req-1'); // the client timed out and retried elsewhere
    net.propose('a', JSON.stringify({ op: 'cas', expect: 'v1', value: 'v2' }), 'req-2');
    for (const id of ['a', 'b', 'c']) {
      const entries = net.node(id).applied.filter((e) => e.type === 'normal');
      expect(entries.map((e) => e.requestId)).toEqual(['req-1', 'req-1', 'req-2']);
      const machine = new RegisterMachine();
      const results = entries.map((e) => machine.apply(e));
      // Without dedupe the second req-1 would fail its CAS and req-2 would still run; with it the
      // duplicate answers 'ok' again and changes nothing.
      expect(results).toEqual(['ok', 'ok', 'ok']);
      expect(machine.value).toBe('v2');
      expect(machine.applied).toBe(2);
    }
  });

  it('the table survives snapshots and evicts the oldest ids deterministically', () => {
    const dedupe = new RequestDedupe(2);
    dedupe.record('a', 'ok');
    dedupe.record('b', 'fail');
    dedupe.record('c', 'ok');
    expect(dedupe.lookup('a')).toBeUndefined();
    const restored = RequestDedupe.fromJSON(JSON.parse(JSON.stringify(dedupe.toJSON())));
    expect(restored.lookup('b')).toBe('fail');
    expect(restored.lookup('c')).toBe('ok');
    expect(restored.size()).toBe(2);
    expect(dedupe.lookup(undefined)).toBeUndefined();
  });

  it('a register restored from a snapshot still recognises applied request ids', () => {
    const machine = new RegisterMachine();
    machine.apply({ index: 1, term: 1, type: 'normal', data: JSON.stringify({ op: 'write', value: 'v1' }), requestId: 'w1' });
    const copy = RegisterMachine.restore(machine.serialize());
    expect(copy.apply({ index: 2, term: 1, type: 'normal', data: JSON.stringify({ op: 'write', value: 'v9' }), requestId: 'w1' })).toBe('ok');
    expect(copy.value).toBe('v1');
  });
});
