// Three in-process nodes on real disks and loopback transports: bootstrap, seeding, writes and reads through followers, transfer, loss of quorum, restart.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BalancerError } from '../../src/errors.js';
import { backendIds, configText, fileReplicated, filesBeside, TestCluster } from '../helpers/in-process-cluster.js';

const IDS = ['n1', 'n2', 'n3'];

describe('a three-node cluster', () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = new TestCluster(IDS);
    await cluster.init();
  });

  afterEach(async () => {
    await cluster.close();
  });

  async function startThree(): Promise<void> {
    // Every file differs, so whichever node leads first seeds its own pools and the others keep a copy.
    await Promise.all(IDS.map((id, i) => cluster.start(id, { text: configText(id, 'web', [9100 + i]) })));
  }

  it('elects one leader, seeds the config from the leader\'s file, and every node serves and writes it', async () => {
    await startThree();
    const leader = await cluster.waitForLeader();
    expect(cluster.followers()).toHaveLength(2);
    await cluster.waitForVersion(1);
    const version = leader.store.version;
    const leaderIndex = IDS.indexOf(leader.id);
    for (const node of cluster.nodes.values()) {
      expect(node.store.version).toBe(version);
      expect(backendIds(node, 'web')).toEqual([`b${9100 + leaderIndex}`]);
      expect(node.store.readiness.ready).toBe(true);
    }
    await cluster.until(() => leader.lines.some((l) => l.msg === 'config seeded from the local file' && l['version'] === version), 2000, 'seed log line');
    expect(leader.lines.some((l) => l.msg === 'raft leader elected')).toBe(true);

    // Files catch up: the followers' routes/pools are rewritten (comment kept) after keeping a copy of the original.
    await cluster.until(() => cluster.followers().every((f) => f.lines.some((l) => l.msg === 'config file rewritten')), 5000, 'file rewrites');
    const expected = await fileReplicated(leader.file);
    for (const follower of cluster.followers()) {
      expect(await fileReplicated(follower.file)).toBe(expected);
      expect(await readFile(follower.file, 'utf8')).toContain('# kept comment');
      const copies = await filesBeside(follower.dir, 'balancer.yaml.local-');
      expect(copies).toHaveLength(1);
      const index = IDS.indexOf(follower.id);
      expect(await readFile(join(follower.dir, copies[0]!), 'utf8')).toBe(configText(follower.id, 'web', [9100 + index]));
    }
    expect(await filesBeside(leader.dir, 'balancer.yaml.local-')).toEqual([]);

    // Metrics follow the node's state.
    await cluster.until(() => leader.raftMetrics.isLeader && leader.raftMetrics.applied >= version, 2000, 'leader metrics');
    expect(leader.raftMetrics.term).toBeGreaterThan(0);
    expect(leader.raftMetrics.commit).toBeGreaterThanOrEqual(version);
    expect(leader.raftMetrics.leaderChanges).toBeGreaterThanOrEqual(1);
    expect(leader.raftMetrics.proposals).toContain('committed');
    await cluster.until(() => [...cluster.nodes.values()].every((n) => [...n.raftMetrics.reachable.values()].filter(Boolean).length === 2), 3000, 'peers reachable');
  });

  it('carries a write through a follower to every node, and a follower reads it linearizably', async () => {
    await startThree();
    const leader = await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const follower = cluster.followers()[0]!;
    const pool = 'web';

    const added = await follower.store.addBackend(pool, { url: 'http://127.0.0.1:9200', id: 'extra' });
    expect(added.backend).toEqual({ id: 'extra', url: 'http://127.0.0.1:9200', weight: 1 });
    // Resolved only once applied on the follower itself.
    expect(backendIds(follower, 'web')).toContain('extra');
    await cluster.waitForVersion(added.version);
    for (const node of cluster.nodes.values()) expect(backendIds(node, 'web')).toContain('extra');

    const other = cluster.followers().find((n) => n.id !== follower.id)!;
    const read = await other.store.getConfig();
    expect(read.version).toBe(added.version);
    expect(JSON.stringify(read.config.pools)).toContain('http://127.0.0.1:9200');

    // Compare-and-set through the API: a stale If-Match is refused with VERSION_MISMATCH.
    await expect(other.store.putConfig(read.config, { ifMatch: added.version - 1 })).rejects.toMatchObject({ code: 'VERSION_MISMATCH' });
    const put = await other.store.putConfig({ routes: [], pools: { api: { backends: [{ url: 'http://127.0.0.1:9300' }] } } }, { ifMatch: added.version });
    await cluster.waitForVersion(put.version);
    for (const node of cluster.nodes.values()) expect([...node.dataPlane.table.pools.keys()]).toEqual(['api']);
    await expect(follower.store.putConfig({ routes: [{ pool: 'nope' }], pools: {} }, {})).rejects.toMatchObject({ code: 'CONFIG_INVALID' });

    const status = leader.store.cluster();
    expect(status.members.map((m) => m.id).sort()).toEqual(IDS);
    expect(status.members.every((m) => m.voter && m.matchIndex !== null)).toBe(true);
    expect(follower.store.cluster().members.every((m) => m.matchIndex === null)).toBe(true);
  });

  it('moves leadership on request, from a follower', async () => {
    await startThree();
    const leader = await cluster.waitForLeader();
    const [asker, target] = cluster.followers();
    const status = await asker!.store.transferLeader(target!.id);
    expect(status.leader).toBe(target!.id);
    await cluster.until(() => cluster.leader()?.id === target!.id && leader.store.cluster().leader === target!.id, 3000, 'transfer seen by the old leader');
    await expect(asker!.store.transferLeader('nobody')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });

  it('answers 503-class errors (after the write timeout, not never) once two of three nodes are gone', async () => {
    await startThree();
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const survivor = cluster.followers()[0]!;
    for (const id of IDS) if (id !== survivor.id) await cluster.stop(id);
    // Only the write deadline (5 s) produces these codes; a write that hung would run into the test timeout instead.
    const error = await survivor.store.addBackend('web', { url: 'http://127.0.0.1:9400' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BalancerError);
    expect(['NO_LEADER', 'PROPOSAL_TIMEOUT']).toContain((error as BalancerError).code);
    const readError = await survivor.store.getConfig().catch((e: unknown) => e);
    expect(['NO_LEADER', 'PROPOSAL_TIMEOUT']).toContain((readError as BalancerError).code);
    // Nothing was applied locally.
    expect(backendIds(survivor, 'web').some((id) => id.includes('9400'))).toBe(false);
    // Losing quorum is a control-plane failure: the survivor keeps serving its last config and stays ready.
    await cluster.until(() => survivor.store.cluster().leader === null, 3000, 'survivor to know no leader');
    expect(survivor.store.readiness.notReady()).toEqual([]);
    expect(backendIds(survivor, 'web').length).toBeGreaterThan(0);
  });

  it('restarts a node from its data dir and catches it up', async () => {
    await startThree();
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const down = cluster.followers()[0]!;
    const downId = down.id;
    await cluster.stop(downId);
    const leader = await cluster.waitForLeader();
    const change = await leader.store.addBackend('web', { url: 'http://127.0.0.1:9500', id: 'while-down' });

    const back = await cluster.start(downId);
    // The committed prefix is replayed from disk at once; the rest comes from the leader.
    await cluster.waitForVersion(change.version, 5000, [downId]);
    expect(backendIds(back, 'web')).toContain('while-down');
    expect(back.lines.some((l) => l.msg === 'raft node opened' && l['start'] === 'restart')).toBe(true);
    await cluster.until(() => back.lines.some((l) => l.msg === 'config file rewritten' && l['version'] === change.version), 5000, 'restarted file rewritten');
    expect(await fileReplicated(back.file)).toBe(await fileReplicated(leader.file));
    expect(existsSync(join(back.dataDir, 'LOCK'))).toBe(true);
  });
});
