// Membership on real disks and transports: a learner joins by snapshot and is promoted; three voters carry ten learners.

import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backendIds, configText, TestCluster } from '../helpers/in-process-cluster.js';

const VOTERS = ['n1', 'n2', 'n3'];

describe('cluster membership', () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = new TestCluster(VOTERS);
    await cluster.init();
  });

  afterEach(async () => {
    await cluster.close();
  });

  it('adds a joining node as a learner, catches it up by snapshot, then promotes it', async () => {
    // A low snapshotEvery compacts the log, so the newcomer can only catch up from a snapshot.
    await Promise.all(VOTERS.map((id) => cluster.start(id, { text: configText(id, 'web', [9100]), snapshotEvery: 2 })));
    const leader = await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    let version = 0;
    for (let i = 0; i < 4; i++) version = (await leader.store.addBackend('web', { url: `http://127.0.0.1:${9200 + i}` })).version;
    await cluster.until(() => leader.lines.some((l) => l.msg === 'raft snapshot taken'), 3000, 'a snapshot on the leader');

    const joiner = await cluster.start('n4', { text: configText('n4', 'local-only', [9900]), join: true, announce: false });
    expect(joiner.lines.some((l) => l.msg === 'raft node opened' && l['start'] === 'join')).toBe(true);
    // Joined but not added: it knows no leader, serves nothing and never campaigns.
    expect(joiner.store.readiness.ready).toBe(false);

    const follower = cluster.followers().find((n) => n.id !== 'n4')!;
    const added = await follower.store.addMember('n4', cluster.addresses['n4']!, true);
    expect(added.members.find((m) => m.id === 'n4')).toMatchObject({ voter: false, address: cluster.addresses['n4'] });
    await cluster.waitForVersion(version, 5000, ['n4']);
    expect(joiner.lines.some((l) => l.msg === 'raft snapshot restored')).toBe(true);
    expect(backendIds(joiner, 'web')).toHaveLength(5);
    // Its own addition comes after the snapshot (which may predate it) in the log.
    await cluster.until(() => joiner.store.cluster().role === 'learner', 3000, 'n4 sees itself as a learner');
    await cluster.until(() => joiner.lines.some((l) => l.msg === 'config file rewritten'), 3000, 'joiner file rewritten');
    // Its file named other pools: like any node whose file differed, it kept a copy, once, before the first rewrite
    // (the write-back runs after the apply, so this is only certain once the file was rewritten).
    const copies = joiner.lines.filter((l) => l.msg === 'the cluster config differs from this node\'s file: kept a copy of the file before rewriting it');
    expect(copies).toHaveLength(1);
    expect(await readFile(String(copies[0]!['copy']), 'utf8')).toContain('local-only');

    // A learner's write goes through the leader like anyone's.
    const fromLearner = await joiner.store.addBackend('web', { url: 'http://127.0.0.1:9300', id: 'via-learner' });
    await cluster.waitForVersion(fromLearner.version);

    const promoted = await leader.store.addMember('n4', cluster.addresses['n4']!, false);
    expect(promoted.members.find((m) => m.id === 'n4')?.voter).toBe(true);
    await cluster.until(() => joiner.store.cluster().role === 'follower', 3000, 'n4 a voting follower');
    expect(leader.store.cluster().members.filter((m) => m.voter)).toHaveLength(4);

    // Adding it again is a no-op; removing it works from any node.
    await leader.store.addMember('n4', cluster.addresses['n4']!, false);
    const removed = await follower.store.removeMember('n4');
    expect(removed.members.map((m) => m.id)).not.toContain('n4');
    await expect(leader.store.removeMember('n4')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses a member whose id or address the config file would refuse, before asking the cluster', async () => {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100]) });
    for (const address of ['bad_host:7004', '[not-an-ip]:7004', 'n4.internal:0', 'n4.internal']) {
      await expect(node.store.addMember('n4', address, true)).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining(`address: must`) });
    }
    await expect(node.store.addMember('n/4', '127.0.0.1:7004', true)).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('id: must contain only') });
  });

  it('runs three voters and ten learners that all serve the committed config', async () => {
    await Promise.all(VOTERS.map((id) => cluster.start(id, { text: configText(id, 'web', [9100]) })));
    const leader = await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const learners = Array.from({ length: 10 }, (_, i) => `l${i + 1}`);
    await Promise.all(learners.map((id) => cluster.start(id, { text: configText(id, 'web', [9999]), join: true, announce: false })));
    for (const id of learners) await leader.store.addMember(id, cluster.addresses[id]!, true);

    const change = await cluster.node('l7').store.addBackend('web', { url: 'http://127.0.0.1:9400', id: 'fleet' });
    await cluster.waitForVersion(change.version, 8000);
    for (const node of cluster.nodes.values()) {
      expect(backendIds(node, 'web')).toEqual(['b9100', 'fleet']);
    }
    const status = leader.store.cluster();
    expect(status.members.filter((m) => m.voter).map((m) => m.id).sort()).toEqual(VOTERS);
    expect(status.members.filter((m) => !m.voter)).toHaveLength(10);
    expect(learners.every((id) => cluster.node(id).store.cluster().role === 'learner')).toBe(true);

    // Connections grow linearly: voters link to each other, the leader to every learner, each learner to its leader
    // only (dialled when the first message goes), so 3x2 + 10 + 10 = 26 outbound streams instead of 13x12 = 156.
    for (const id of learners) {
      await cluster.until(() => [...cluster.node(id).raftMetrics.reachable.keys()].join() === leader.id, 5000, `${id} linked to its leader only`);
    }
    expect([...leader.raftMetrics.reachable.keys()].sort()).toEqual([...VOTERS.filter((id) => id !== leader.id), ...learners].sort());
    for (const id of VOTERS.filter((v) => v !== leader.id)) expect([...cluster.node(id).raftMetrics.reachable.keys()].sort()).toEqual(VOTERS.filter((v) => v !== id));
    const learnerView = cluster.node('l3').store.cluster().members;
    expect(learnerView.filter((m) => m.reachable === null).map((m) => m.id).sort()).toEqual([...VOTERS.filter((id) => id !== leader.id), ...learners.filter((id) => id !== 'l3')].sort());

    // Learners never vote: losing two voters stops commits however many learners remain.
    const others = VOTERS.filter((id) => id !== leader.id);
    await cluster.stop(others[0]!);
    await cluster.stop(others[1]!);
    await expect(cluster.node('l1').store.addBackend('web', { url: 'http://127.0.0.1:9401' })).rejects.toMatchObject({
      code: expect.stringMatching(/^(NO_LEADER|PROPOSAL_TIMEOUT)$/),
    });
    expect(backendIds(cluster.node('l1'), 'web')).toEqual(['b9100', 'fleet']);
  });
});
