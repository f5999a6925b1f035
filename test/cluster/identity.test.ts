// Data dir identity: a member whose data dir was wiped is refused under its old id until an operator removes and re-adds it.

import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { backendIds, configText, TestCluster, type TestNode } from '../helpers/in-process-cluster.js';

const IDS = ['n1', 'n2', 'n3'];
let cluster: TestCluster;

afterEach(async () => {
  await cluster.close();
});

function recordedEverywhere(nodes: readonly TestNode[]): boolean {
  return nodes.every((node) => {
    const status = node.store.cluster();
    return typeof status.clusterId === 'string' && status.members.length === 3 && status.members.every((m) => typeof m.incarnation === 'string');
  });
}

describe('data dir identity', () => {
  it('records the cluster id and every member\'s incarnation; a wiped member is refused until removed and added again', async () => {
    cluster = new TestCluster(IDS);
    await cluster.init();
    await Promise.all(IDS.map((id, i) => cluster.start(id, { text: configText(id, 'web', [9100 + i]) })));
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    await cluster.until(() => recordedEverywhere([...cluster.nodes.values()]), 5000, 'identities recorded on every node');
    const before = cluster.node('n1').store.cluster();
    const clusterId = before.clusterId;
    const oldIncarnation = before.members.find((m) => m.id === 'n3')!.incarnation;
    // Every node agrees on what was recorded.
    for (const node of cluster.nodes.values()) expect(node.store.cluster().members).toEqual(expect.arrayContaining(before.members.map((m) => expect.objectContaining({ id: m.id, incarnation: m.incarnation }))));

    // n3 loses its disk and is started again under its old id, as if nothing happened (it bootstraps a fresh log).
    const victim = cluster.node('n3');
    await cluster.stop('n3');
    await rm(victim.dataDir, { recursive: true, force: true });
    const wiped = await cluster.start('n3');
    const refusedBy = (id: string) =>
      cluster.node(id).lines.find((l) => l.msg === 'rejected peer traffic' && l['reason'] === 'unknown_incarnation' && l['peer'] === 'n3');
    await cluster.until(() => refusedBy('n1') !== undefined && refusedBy('n2') !== undefined, 5000, 'n1 and n2 to refuse the wiped n3');
    expect(String(refusedBy('n1')!['detail'])).toMatch(/data dir was wiped.*balancer cluster remove n3.*cluster\.join: true.*balancer cluster add n3/);
    expect(cluster.node('n1').raftMetrics.rejected).toContain('unknown_incarnation');
    await cluster.until(() => wiped.lines.some((l) => l.msg === 'a raft peer refuses this node'), 5000, 'the wiped node to log the refusal');

    // It gets no say: the other two keep committing, and it never learns the config or a leader.
    await cluster.until(() => ['n1', 'n2'].some((id) => cluster.node(id).store.cluster().role === 'leader'), 5000, 'a leader among n1 and n2');
    const leader = cluster.leader()!;
    expect(leader.id).not.toBe('n3');
    const change = await leader.store.addBackend('web', { url: 'http://127.0.0.1:9200', id: 'while-refused' });
    await cluster.waitForVersion(change.version, 5000, ['n1', 'n2']);
    expect(wiped.store.version).toBe(0);
    expect(wiped.store.cluster().leader).toBeNull();
    expect(wiped.store.readiness.ready).toBe(false);

    // The way back: remove it, start it empty as a joining node, add it again.
    await leader.store.removeMember('n3');
    await cluster.stop('n3');
    await rm(victim.dataDir, { recursive: true, force: true });
    const rejoined = await cluster.start('n3', { join: true });
    await cluster.until(() => ['n1', 'n2'].some((id) => cluster.node(id).store.cluster().role === 'leader'), 5000, 'a leader among n1 and n2');
    await cluster.leader()!.store.addMember('n3', cluster.addresses['n3']!, false);
    await cluster.waitForVersion(change.version, 5000, ['n3']);
    expect(backendIds(rejoined, 'web')).toContain('while-refused');
    await cluster.until(() => recordedEverywhere([...cluster.nodes.values()]), 5000, 'the new incarnation recorded');
    const after = cluster.node('n1').store.cluster();
    expect(after.clusterId).toBe(clusterId);
    expect(rejoined.store.cluster().clusterId).toBe(clusterId);
    const newIncarnation = after.members.find((m) => m.id === 'n3')!.incarnation;
    expect(newIncarnation).not.toBe(oldIncarnation);
    expect(newIncarnation).toBe(rejoined.store.raft.identity.incarnation);
  });
});
