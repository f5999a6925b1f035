// Three real balancer processes: agreement, a follower's YAML edit reaching every file and data plane, leader kill -9, catch-up, full restart.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { eventually } from '../helpers/wait.js';

function poolYaml(backends: readonly TestBackend[]): string {
  return ['pools:', '  web:', '    backends:', ...backends.map((b) => `      - { url: ${b.url}, id: ${b.name} }`)].join('\n');
}

/** Until every listed node's proxy sends GET / to `name`. */
async function dataPlanesServe(cluster: ProcessCluster, ids: readonly string[], name: string): Promise<void> {
  await eventually(
    async () => ((await Promise.all(ids.map((id) => cluster.servedBy(id)))).every((served) => served === name) ? true : undefined),
    `every proxy of ${ids.join(', ')} to route to ${name}`,
  );
}

async function filesShow(cluster: ProcessCluster, ids: readonly string[], backendId: string): Promise<void> {
  await eventually(
    async () => {
      const files = await Promise.all(ids.map((id) => cluster.fileConfig(id)));
      return files.every((file) => file.pools['web']?.backends.map((b) => b.id).join(',') === backendId) ? true : undefined;
    },
    `every file of ${ids.join(', ')} to list only ${backendId}`,
  );
}

describe('a three-process cluster', () => {
  let cluster: ProcessCluster;
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;
  const ids = ['n1', 'n2', 'n3'];

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startBackend('a'), startBackend('b'), startBackend('c')]);
    cluster = await ProcessCluster.create({ replicated: poolYaml([a]) });
    await cluster.startAll();
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await Promise.all([a, b, c].map((backend) => backend?.close()));
  });

  it('comes up, agrees on one leader and serves the seeded config on every proxy', async () => {
    const leader = await cluster.waitForLeader(ids);
    expect(ids).toContain(leader);
    const views = await cluster.waitForVersion(ids, 1);
    expect(new Set(views.map((view) => view.version)).size).toBe(1);
    for (const view of views) expect(view.pools['web']!.backends.map((backend) => backend.id)).toEqual(['a']);
    await dataPlanesServe(cluster, ids, 'a');
  });

  it("carries an edit of a follower's YAML file to every file and every data plane", async () => {
    const leader = await cluster.waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    const before = (await cluster.config(leader)).version;
    const file = cluster.node(follower).file;
    const text = await readFile(file, 'utf8');
    expect(text).toContain(a.url);
    await writeFile(file, text.replace(a.url, b.url).replace('id: a', 'id: b'));
    const views = await cluster.waitForVersion(ids, before + 1);
    for (const view of views) expect(view.pools['web']!.backends.map((backend) => backend.id)).toEqual(['b']);
    await filesShow(cluster, ids, 'b');
    await dataPlanesServe(cluster, ids, 'b');
    // The local sections and comments of every file survive the rewrite.
    for (const id of ids) {
      const rewritten = (await cluster.fileConfig(id)).text;
      expect(rewritten).toContain(`# ${id}: written by the test harness`);
      expect(rewritten).toContain(`nodeId: ${id}`);
    }
  });

  it('elects a new leader after kill -9 of the leader, and admin edits keep working', async () => {
    const oldLeader = await cluster.waitForLeader(ids);
    const survivors = ids.filter((id) => id !== oldLeader);
    await cluster.kill(oldLeader);
    const newLeader = await cluster.waitForLeader(survivors);
    expect(newLeader).not.toBe(oldLeader);
    // Through the follower that survived, so the write is forwarded to the new leader.
    const via = survivors.find((id) => id !== newLeader)!;
    const current = await cluster.config(via);
    const put = await cluster.api(via, 'PUT', '/api/v1/config', {
      body: { routes: [], pools: { web: { backends: [{ url: c.url, id: 'c' }] } } },
      headers: { 'if-match': `"${current.version}"` },
    });
    expect(put.status, put.body).toBe(200);
    const version = put.json<{ version: number }>().version;
    expect(version).toBeGreaterThan(current.version);
    await cluster.waitForVersion(survivors, version);
    await dataPlanesServe(cluster, survivors, 'c');

    // The old leader comes back with its data dir and catches up: file and data plane.
    await cluster.start(oldLeader);
    const [view] = await cluster.waitForVersion([oldLeader], version);
    expect(view!.pools['web']!.backends.map((backend) => backend.id)).toEqual(['c']);
    await filesShow(cluster, [oldLeader], 'c');
    await dataPlanesServe(cluster, [oldLeader], 'c');
    const log = cluster.node(oldLeader).current.lines;
    expect(log.find((line) => line['msg'] === 'raft node opened')?.['start']).toBe('restart');
  });

  it('keeps the config through a full cluster restart', async () => {
    const leader = await cluster.waitForLeader(ids);
    const before = await cluster.config(leader);
    await Promise.all(ids.map((id) => cluster.stop(id)));
    await cluster.startAll();
    await cluster.waitForLeader(ids);
    const views = await cluster.waitForVersion(ids, before.version);
    for (const view of views) {
      expect(view.version).toBe(before.version);
      expect(view.pools).toEqual(before.pools);
    }
    await dataPlanesServe(cluster, ids, 'c');
    // Nobody re-seeded from its file: the restarted log already held the config.
    for (const id of ids) expect(cluster.node(id).current.lines.some((line) => line['msg'] === 'config seeded from the local file')).toBe(false);
  });
});
