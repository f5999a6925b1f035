// Partitions through the TCP relays: the minority cannot commit (503 within seconds), the majority can, and all converge after healing.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestBackend } from '../helpers/backend.js';
import { startSeededCluster, ProcessCluster } from '../helpers/process-cluster.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

function webPool(backendId: string, url: string): unknown {
  return { routes: [], pools: { web: { backends: [{ url, id: backendId }] } } };
}

describe('a partitioned three-process cluster', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'only', 'seed'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  it('leaves an isolated leader unable to commit while the majority commits, then converges', async () => {
    const isolated = await cluster.waitForLeader(ids);
    const majority = ids.filter((id) => id !== isolated);
    const start = await cluster.config(isolated);
    cluster.partition([isolated], majority);

    const newLeader = await cluster.waitForLeader(majority);
    expect(majority).toContain(newLeader);

    // The minority side: a write answers 503 (before the client's 15 s deadline) and never takes effect.
    const minorityWrite = await cluster.api(isolated, 'PUT', '/api/v1/config', {
      body: webPool('minority', backend.url),
      headers: { 'if-match': `"${start.version}"` },
      timeoutMs: 15_000,
    });
    expect(minorityWrite.status, minorityWrite.body).toBe(503);
    // A linearizable read cannot be served there either.
    expect((await cluster.api(isolated, 'GET', '/api/v1/config', { timeoutMs: 15_000 })).status).toBe(503);

    // The majority side commits.
    const majorityWrite = await cluster.api(majority[0]!, 'PUT', '/api/v1/config', {
      body: webPool('majority', backend.url),
      headers: { 'if-match': `"${start.version}"` },
    });
    expect(majorityWrite.status, majorityWrite.body).toBe(200);
    const version = majorityWrite.json<{ version: number }>().version;

    cluster.healAll();
    await cluster.waitForLeader(ids);
    const views = await cluster.waitForVersion(ids, version);
    for (const view of views) {
      expect(view.version).toBe(version);
      expect(view.pools['web']!.backends.map((b) => b.id)).toEqual(['majority']);
    }
    await eventually(
      async () => ((await cluster.fileConfig(isolated)).pools['web']?.backends[0]?.id === 'majority' ? true : undefined),
      'the isolated node to rewrite its file',
    );
    console.log(`[partition] minority write answered 503; majority committed version ${version}; all converged`);
  });

  it('survives a one-way cut: a leader that cannot send is replaced, and catches up once healed', async () => {
    const mute = await cluster.waitForLeader(ids);
    const others = ids.filter((id) => id !== mute);
    // mute's messages are dropped in flight; it still hears the others.
    for (const other of others) cluster.relay(mute, other).blackhole();
    const replacement = await cluster.waitForLeader(others);
    expect(replacement).not.toBe(mute);
    const current = await cluster.config(replacement);
    const put = await cluster.api(replacement, 'PUT', '/api/v1/config', { body: webPool('one-way', backend.url), headers: { 'if-match': `"${current.version}"` } });
    expect(put.status, put.body).toBe(200);
    const version = put.json<{ version: number }>().version;
    cluster.healAll();
    await cluster.waitForLeader(ids);
    const views = await cluster.waitForVersion(ids, version);
    for (const view of views) expect(view.pools['web']!.backends.map((b) => b.id)).toEqual(['one-way']);
  });
});
