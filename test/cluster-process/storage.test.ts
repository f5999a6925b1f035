// Damaged data dirs with real processes: a torn WAL tail is dropped and the node catches up; a flipped byte before the tail refuses to start; a wiped dir is refused under its old id.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestBackend } from '../helpers/backend.js';
import { startSeededCluster, ProcessCluster, sumMetric } from '../helpers/process-cluster.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];
const MAGIC = Buffer.from('BWL1', 'latin1');

async function liveSegment(dataDir: string): Promise<string> {
  const segments = (await readdir(dataDir)).filter((name) => /^wal-\d+\.log$/.test(name)).sort();
  const last = segments[segments.length - 1];
  if (last === undefined) throw new Error(`no WAL segment in ${dataDir}`);
  return join(dataDir, last);
}

/** Byte offsets where WAL records start (the record magic). */
function recordOffsets(image: Buffer): number[] {
  const offsets: number[] = [];
  for (let at = image.indexOf(MAGIC); at !== -1 && offsets.length < 100_000; at = image.indexOf(MAGIC, at + 1)) offsets.push(at);
  return offsets;
}

describe('damaged Raft data dirs', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;
  let weight = 1;

  async function edit(via: string): Promise<number> {
    const current = await cluster.config(via);
    weight++;
    const put = await cluster.api(via, 'PUT', '/api/v1/config', {
      body: { routes: [], pools: { web: { backends: [{ url: backend.url, id: 'web-1', weight }] } } },
      headers: { 'if-match': `"${current.version}"` },
    });
    expect(put.status, put.body).toBe(200);
    return put.json<{ version: number }>().version;
  }

  /** Three edits reach a follower, which is then killed -9; returns it with the WAL segment it was writing. */
  async function killFollowerAfterEdits(): Promise<{ leader: string; victim: string; segment: string }> {
    const leader = await cluster.waitForLeader(ids);
    const victim = ids.find((id) => id !== leader)!;
    for (let i = 0; i < 3; i++) await edit(leader);
    await cluster.waitForVersion([victim], (await cluster.config(leader)).version);
    await cluster.kill(victim);
    return { leader, victim, segment: await liveSegment(cluster.node(victim).dataDir) };
  }

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'web-1', 'web-1'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  it('drops a torn last record after kill -9, starts, and catches up', async () => {
    const { leader, victim, segment } = await killFollowerAfterEdits();
    // A crash in the middle of writing the next record: its first bytes reached the file, its fsync never
    // returned, so nobody heard of it. (Cutting into a record the node had acknowledged would be lost state,
    // which a node must not paper over: see the lost-log fail-stop.)
    const image = await readFile(segment);
    const last = recordOffsets(image).at(-1)!;
    await appendFile(segment, image.subarray(last, image.length - 5));
    // The cluster moves on while the victim is down.
    const version = await edit(leader);

    await cluster.start(victim);
    const run = cluster.node(victim).current;
    const warning = await run.waitFor((line) => String(line['msg']).startsWith('dropping a torn record at the end of the raft WAL'), 'the torn-tail warning', 5_000);
    expect(Number(warning['droppedBytes'])).toBeGreaterThan(0);
    const [view] = await cluster.waitForVersion([victim], version);
    expect(view!.pools['web']!.backends[0]!.weight).toBe(weight);
  });

  it('refuses to start when a record before the tail is damaged, with a message naming the file', async () => {
    const { leader, victim, segment } = await killFollowerAfterEdits();
    const image = await readFile(segment);
    const offsets = recordOffsets(image);
    expect(offsets.length).toBeGreaterThanOrEqual(3);
    // Inside the payload of a record with intact records after it.
    const target = offsets[offsets.length - 2]! + 14;
    image[target] = image[target]! ^ 0x20;
    await writeFile(segment, image);

    const refused = await cluster.start(victim, { expectFailure: true });
    expect(refused).toBeNull();
    const run = cluster.node(victim).current;
    expect(await run.exited).toBe(1);
    const output = run.lines.map((line) => String(line['msg'])).join('\n');
    expect(output).toContain('is corrupt');
    expect(output).toContain(segment);
    expect(output).toContain('Refusing to start');

    // The remedy the message gives: remove the member, wipe its data dir, start it as a joining node and add it again.
    const removed = await cluster.api(leader, 'DELETE', `/api/v1/cluster/members/${victim}`);
    expect(removed.status, removed.body).toBe(200);
    await rm(cluster.node(victim).dataDir, { recursive: true, force: true });
    const version = await edit(leader);
    await cluster.start(victim, { join: true, freshFile: true });
    const added = await cluster.api(leader, 'POST', '/api/v1/cluster/members', { body: { id: victim, address: `127.0.0.1:${cluster.node(victim).raftPort}` } });
    expect(added.status, added.body).toBe(200);
    const [view] = await cluster.waitForVersion([victim], version);
    expect(view!.pools['web']!.backends[0]!.weight).toBe(weight);
  });

  it('refuses a member whose data dir was wiped and which restarted under its old id, until it is removed and added again', async () => {
    const leader = await cluster.waitForLeader(ids);
    // The leader records every member's data dir incarnation once it has heard them.
    await eventually(async () => {
      const info = (await cluster.clusterInfo(leader)) as unknown as { members: Array<{ incarnation?: string | null }> };
      return info.members.length === 3 && info.members.every((m) => typeof m.incarnation === 'string') ? true : undefined;
    }, 'incarnations recorded');
    const victim = ids.find((id) => id !== leader)!;
    const others = ids.filter((id) => id !== victim);
    await cluster.kill(victim);
    await rm(cluster.node(victim).dataDir, { recursive: true, force: true });
    const refusals = async () => Promise.all(others.map(async (id) => sumMetric(await cluster.metrics(id), 'balancer_raft_peer_messages_rejected_total{reason="unknown_incarnation"}')));
    expect(await refusals()).toEqual([0, 0]);

    // Started again as if nothing happened: same id, same file, an empty data dir.
    await cluster.start(victim);
    await eventually(async () => ((await refusals()).every((count) => count > 0) ? true : undefined), 'both members to refuse the wiped node');
    const run = cluster.node(victim).current;
    await run.waitFor((line) => line['msg'] === 'a raft peer refuses this node', 'the refusal in the wiped node\'s log', 5_000);
    const refusal = others.flatMap((id) => cluster.node(id).current.lines).find((line) => line['reason'] === 'unknown_incarnation');
    expect(String(refusal?.['detail'])).toMatch(/balancer cluster remove .*balancer cluster add/);
    // It has no say: the others commit without it, and it serves no config of the cluster's.
    const version = await edit(leader);
    await cluster.waitForVersion(others, version);
    expect((await cluster.api(victim, 'GET', '/api/v1/config', { timeoutMs: 10_000 })).status).toBe(503);

    const removed = await cluster.api(leader, 'DELETE', `/api/v1/cluster/members/${victim}`);
    expect(removed.status, removed.body).toBe(200);
    await cluster.kill(victim);
    await rm(cluster.node(victim).dataDir, { recursive: true, force: true });
    await cluster.start(victim, { join: true });
    const added = await cluster.api(leader, 'POST', '/api/v1/cluster/members', { body: { id: victim, address: `127.0.0.1:${cluster.node(victim).raftPort}` } });
    expect(added.status, added.body).toBe(200);
    const [view] = await cluster.waitForVersion([victim], version);
    expect(view!.pools['web']!.backends[0]!.weight).toBe(weight);
  });
});
