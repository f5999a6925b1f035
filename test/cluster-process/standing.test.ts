// A node knows where it stands, on real processes: one waiting to be added says so (503, not 404), one removed says so and stops
// campaigning, and one removed while it was down learns it from its peers when it restarts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, httpCall, sleep, startSeededCluster, until, type ProcessCluster } from '../helpers/cluster-harness.js';
import { runCli } from '../helpers/process.js';

const ids = ['n1', 'n2', 'n3'];

describe('where a node stands in its cluster', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'a', 'a'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  const cli = (via: string, args: string[]) => runCli([...args, '--admin', cluster.node(via).admin, '--token', ADMIN_TOKEN], { timeoutMs: 20_000 });

  it('a node started with cluster.join answers 503 "waiting to be added" until it is added, then serves', async () => {
    const joiner = await cluster.addNodeSlot('n4');
    await cluster.start('n4', { join: true });
    const proxied = await httpCall(`${cluster.node('n4').proxy}/`);
    expect(proxied.status).toBe(503);
    expect(proxied.json<{ error: { code: string; message: string } }>().error).toMatchObject({ code: 'NOT_SERVING', message: expect.stringContaining('waiting to be added to the cluster') });
    const readyz = await httpCall(`${cluster.node('n4').admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('waiting to be added to the cluster');
    const status = await cli('n4', ['cluster', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('waiting to be added');

    const leader = await cluster.waitForLeader(ids);
    const added = await cli(leader, ['cluster', 'add', 'n4', `127.0.0.1:${joiner.raftPort}`, '--learner']);
    expect(added.code, added.stderr).toBe(0);
    await until(async () => ((await httpCall(`${cluster.node('n4').admin}/readyz`)).status === 200 ? true : undefined), 'n4 to be ready');
    expect(await cluster.servedBy('n4')).toBe('a');
  });

  it('a removed node says so in its log, status, CLI and /readyz, and stops campaigning', async () => {
    const leader = await cluster.waitForLeader(ids);
    const removed = ids.find((id) => id !== leader)!;
    const survivors = ['n4', ...ids.filter((id) => id !== removed)];
    const result = await cli(leader, ['cluster', 'remove', removed]);
    expect(result.code, result.stderr).toBe(0);
    const run = cluster.node(removed).current;
    await run.waitFor((line) => String(line['msg']).startsWith('this node was removed from the cluster'), `${removed} to learn it was removed`, 20_000);
    const readyz = await httpCall(`${cluster.node(removed).admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('removed from the cluster');
    const status = await cli(removed, ['cluster', 'status']);
    expect(status.stdout).toContain('REMOVED from the cluster');
    const info = await cluster.clusterInfo(removed);
    expect(info).toMatchObject({ membership: 'removed' });

    // It stops campaigning: over ten election timeouts (300 ms each) its term stays put and the others keep their leader.
    const term = info.term;
    const leaderTerm = (await cluster.clusterInfo(leader)).term;
    await sleep(3_000);
    expect((await cluster.clusterInfo(removed)).term).toBe(term);
    expect((await cluster.clusterInfo(leader)).term).toBe(leaderTerm);
    await cluster.waitForLeader(survivors.filter((id) => id !== 'n4'));
  });
});

describe('a node removed while it was down', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'a', 'a'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  const cli = (via: string, args: string[]) => runCli([...args, '--admin', cluster.node(via).admin, '--token', ADMIN_TOKEN], { timeoutMs: 20_000 });

  it('learns it from its peers when it restarts, and says so in log, status, CLI and /readyz like a node removed while up', async () => {
    const leader = await cluster.waitForLeader(ids);
    const removed = ids.find((id) => id !== leader)!;
    const survivors = ids.filter((id) => id !== removed);
    // The cluster records every member's data dir incarnation once its leader has seen them all.
    await until(async () => ((await cluster.clusterInfo(leader)).members.every((m) => typeof (m as { incarnation?: string | null }).incarnation === 'string') ? true : undefined), 'incarnations recorded', 30_000);
    await cluster.stop(removed);
    const result = await cli(leader, ['cluster', 'remove', removed]);
    expect(result.code, result.stderr).toBe(0);
    const leaderTerm = (await cluster.clusterInfo(leader)).term;

    // Its own log still lists it as a member: only the peers can tell it.
    await cluster.start(removed);
    const run = cluster.node(removed).current;
    const line = await run.waitFor((l) => String(l['msg']).startsWith('this node was removed from the cluster'), `${removed} to learn it was removed`, 20_000);
    expect(line).toMatchObject({ while: 'down', detail: expect.stringContaining(`node "${removed}" was removed from the cluster at log index`) });
    const readyz = await httpCall(`${cluster.node(removed).admin}/readyz`);
    expect(readyz.status).toBe(503);
    expect(readyz.body).toContain('removed from the cluster while this node was down');
    const status = await cli(removed, ['cluster', 'status']);
    expect(status.stdout).toContain('REMOVED from the cluster');
    const info = await cluster.clusterInfo(removed);
    expect(info).toMatchObject({ membership: 'removed' });

    // It stops campaigning: over ten election timeouts its term stays put, and the survivors keep their leader and term.
    await sleep(3_000);
    expect((await cluster.clusterInfo(removed)).term).toBe(info.term);
    expect(await cluster.waitForLeader(survivors)).toBe(leader);
    expect((await cluster.clusterInfo(leader)).term).toBe(leaderTerm);
    // Three processes, a stop, a removal and a restart: about 7 s alone, over 15 s with the suite at a load of 20.
  }, 90_000);
});
