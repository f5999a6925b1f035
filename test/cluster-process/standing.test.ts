// A node knows where it stands, on real processes: one waiting to be added says so (503, not 404), one removed says so and stops
// campaigning, and one removed while it was down learns it from its peers when it restarts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, httpCall, startSeededCluster, type ProcessCluster } from '../helpers/process-cluster.js';
import { runCli } from '../helpers/process.js';
import { eventually, sleep } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

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
    cli: (via, args) => runCli([...args, '--admin', cluster!.node(via).admin, '--token', ADMIN_TOKEN], { timeoutMs: 20_000 }),
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

    // It stops campaigning: over ten election timeouts (300 ms each) its term stays put and the others keep their leader.
    const term = info.term;
    const leaderTerm = (await seeded.cluster.clusterInfo(leader)).term;
    await sleep(3_000);
    expect((await seeded.cluster.clusterInfo(removed)).term).toBe(term);
    expect((await seeded.cluster.clusterInfo(leader)).term).toBe(leaderTerm);
    await seeded.cluster.waitForLeader(survivors.filter((id) => id !== 'n4'));
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
    await seeded.cluster.stop(removed);
    const result = await cli(leader, ['cluster', 'remove', removed]);
    expect(result.code, result.stderr).toBe(0);
    const leaderTerm = (await seeded.cluster.clusterInfo(leader)).term;

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

    // It stops campaigning: over ten election timeouts its term stays put, and the survivors keep their leader and term.
    await sleep(3_000);
    expect((await seeded.cluster.clusterInfo(removed)).term).toBe(info.term);
    expect(await seeded.cluster.waitForLeader(survivors)).toBe(leader);
    expect((await seeded.cluster.clusterInfo(leader)).term).toBe(leaderTerm);
    // Three processes, a stop, a removal and a restart: about 7 s alone, over 15 s with the suite at a load of 20.
  });
});
