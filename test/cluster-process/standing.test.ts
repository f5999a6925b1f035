// A node knows where it stands, on real processes: one waiting to be added says so (503, not 404), one removed says so and stops
// campaigning, and one removed while it was down learns it from its peers when it restarts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, httpCall, startSeededCluster, sumMetric, type ProcessCluster } from '../helpers/process-cluster.js';
import { runCli } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];
/** The harness's electionTimeout over its heartbeatInterval (300 ms / 50 ms): Raft ticks per election timeout. */
const ELECTION_TICKS = 6;

/** A node's Raft clock (ticks) and the elections it started, from its /metrics. */
async function raftCounts(cluster: ProcessCluster, id: string): Promise<{ ticks: number; elections: number }> {
  const text = await cluster.metrics(id);
  return { ticks: sumMetric(text, 'balancer_raft_ticks_total'), elections: sumMetric(text, 'balancer_raft_elections_started_total') };
}

/** The survivors' leader's term and the elections the survivors started, taken before a node is removed. */
interface SurvivorsMark {
  readonly leaderTerm: number;
  readonly elections: number;
}

async function markSurvivors(cluster: ProcessCluster, survivors: readonly string[], leader: string): Promise<SurvivorsMark> {
  const counts = await Promise.all(survivors.map((id) => raftCounts(cluster, id)));
  return { leaderTerm: (await cluster.clusterInfo(leader)).term, elections: counts.reduce((sum, c) => sum + c.elections, 0) };
}

/**
 * Proves a removed node started no election over five of its longest election timeouts (2 x ELECTION_TICKS each; a node
 * that campaigns starts a round in each), counted on its own Raft clock rather than the wall clock (a stalled process makes a
 * sleep prove nothing), and that its term stayed put.
 * The survivors' term may have moved since `mark` only by elections they started themselves (a leader stalled by load steps
 * down): never because of the removed node.
 */
async function expectNoCampaign(cluster: ProcessCluster, removed: string, survivors: readonly string[], leader: string, mark: SurvivorsMark): Promise<void> {
  const term = (await cluster.clusterInfo(removed)).term;
  const before = await raftCounts(cluster, removed);
  const ticks = 5 * 2 * ELECTION_TICKS;
  await eventually(async () => ((await raftCounts(cluster, removed)).ticks >= before.ticks + ticks ? true : undefined), `${removed}'s Raft clock to run ${ticks} ticks`);
  expect((await raftCounts(cluster, removed)).elections).toBe(before.elections);
  expect((await cluster.clusterInfo(removed)).term).toBe(term);
  const now = await markSurvivors(cluster, survivors, leader);
  expect(now.leaderTerm === mark.leaderTerm || now.elections > mark.elections, `the survivors' term moved ${mark.leaderTerm} -> ${now.leaderTerm} with no election of theirs`).toBe(true);
}

/** A seeded three-process cluster for the enclosing describe, and the CLI run against one of its nodes. */
function seededCluster(): { readonly cluster: ProcessCluster; cli(via: string, args: string[]): ReturnType<typeof runCli> } {
  let cluster: ProcessCluster | undefined;
  let backend: TestBackend | undefined;
  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'a', 'a'));
  });
  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });
  return {
    get cluster() {
      return cluster!;
    },
    cli: (via, args) => runCli([...args, '--admin', cluster!.node(via).admin, '--token', ADMIN_TOKEN]),
  };
}

describe('where a node stands in its cluster', () => {
  const seeded = seededCluster();
  const cli = seeded.cli;

  it('a node started with cluster.join answers 503 "waiting to be added" until it is added, then serves', async () => {
    const joiner = await seeded.cluster.addNodeSlot('n4');
    await seeded.cluster.start('n4', { join: true });
    const proxied = await httpCall(`${seeded.cluster.node('n4').proxy}/`);
    expect(proxied.status).toBe(503);
    expect(proxied.json<{ error: { code: string; message: string } }>().error).toMatchObject({ code: 'NOT_SERVING', message: expect.stringContaining('waiting to be added to the cluster') });
    const readyz = await httpCall(`${seeded.cluster.node('n4').admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('waiting to be added to the cluster');
    const status = await cli('n4', ['cluster', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('waiting to be added');

    const leader = await seeded.cluster.waitForLeader(ids);
    const added = await cli(leader, ['cluster', 'add', 'n4', `127.0.0.1:${joiner.raftPort}`, '--learner']);
    expect(added.code, added.stderr).toBe(0);
    await eventually(async () => ((await httpCall(`${seeded.cluster.node('n4').admin}/readyz`)).status === 200 ? true : undefined), 'n4 to be ready');
    expect(await seeded.cluster.servedBy('n4')).toBe('a');
  });

  it('a removed node says so in its log, status, CLI and /readyz, and stops campaigning', async () => {
    const leader = await seeded.cluster.waitForLeader(ids);
    const removed = ids.find((id) => id !== leader)!;
    const survivors = ['n4', ...ids.filter((id) => id !== removed)];
    const voters = survivors.filter((id) => id !== 'n4');
    const mark = await markSurvivors(seeded.cluster, voters, leader);
    const result = await cli(leader, ['cluster', 'remove', removed]);
    expect(result.code, result.stderr).toBe(0);
    const run = seeded.cluster.node(removed).current;
    await run.waitFor((line) => String(line['msg']).startsWith('this node was removed from the cluster'), `${removed} to learn it was removed`, 20_000);
    const readyz = await httpCall(`${seeded.cluster.node(removed).admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('removed from the cluster');
    const status = await cli(removed, ['cluster', 'status']);
    expect(status.stdout).toContain('REMOVED from the cluster');
    const info = await seeded.cluster.clusterInfo(removed);
    expect(info).toMatchObject({ membership: 'removed' });

    // It stops campaigning, and the others keep a leader.
    await expectNoCampaign(seeded.cluster, removed, voters, leader, mark);
    await seeded.cluster.waitForLeader(voters);
  });
});

describe('a node removed while it was down', () => {
  const seeded = seededCluster();
  const cli = seeded.cli;

  it('learns it from its peers when it restarts, and says so in log, status, CLI and /readyz like a node removed while up', async () => {
    const leader = await seeded.cluster.waitForLeader(ids);
    const removed = ids.find((id) => id !== leader)!;
    const survivors = ids.filter((id) => id !== removed);
    // The cluster records every member's data dir incarnation once its leader has seen them all.
    await eventually(async () => ((await seeded.cluster.clusterInfo(leader)).members.every((m) => typeof (m as { incarnation?: string | null }).incarnation === 'string') ? true : undefined), 'incarnations recorded', 30_000);
    const mark = await markSurvivors(seeded.cluster, survivors, leader);
    await seeded.cluster.stop(removed);
    const result = await cli(leader, ['cluster', 'remove', removed]);
    expect(result.code, result.stderr).toBe(0);

    // Its own log still lists it as a member: only the peers can tell it.
    await seeded.cluster.start(removed);
    const run = seeded.cluster.node(removed).current;
    const line = await run.waitFor((l) => String(l['msg']).startsWith('this node was removed from the cluster'), `${removed} to learn it was removed`, 20_000);
    expect(line).toMatchObject({ while: 'down', detail: expect.stringContaining(`node "${removed}" was removed from the cluster at log index`) });
    const readyz = await httpCall(`${seeded.cluster.node(removed).admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('removed from the cluster while this node was down');
    const status = await cli(removed, ['cluster', 'status']);
    expect(status.stdout).toContain('REMOVED from the cluster');
    const info = await seeded.cluster.clusterInfo(removed);
    expect(info).toMatchObject({ membership: 'removed' });

    // It stops campaigning, and the survivors keep a leader.
    await expectNoCampaign(seeded.cluster, removed, survivors, leader, mark);
    await seeded.cluster.waitForLeader(survivors);
    // Three processes, a stop, a removal and a restart: about 7 s alone, over 15 s with the suite at a load of 20.
  });
});
