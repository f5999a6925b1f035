// Config history and rollback on three real processes: every node keeps the same history (file, API, CLI), diff, and a rollback through the CLI.

import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, startSeededCluster, type ProcessCluster } from '../helpers/process-cluster.js';
import { runCli } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

interface Summary {
  version: number;
  at: string | null;
  requestId: string;
  change: string;
  clientRequestId?: string;
  source: { kind: string; node?: string; file?: string; via?: string; rollbackOf?: number };
}

describe('config history and rollback of a three-process cluster', () => {
  let cluster: ProcessCluster;
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend: a } = await startSeededCluster(ids, 'a', 'a'));
    [b, c] = await Promise.all([startBackend('b'), startBackend('c')]);
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await Promise.all([a, b, c].map((backend) => backend?.close()));
  });

  const cli = (via: string, args: string[]) => runCli([...args, '--admin', cluster.node(via).admin, '--token', ADMIN_TOKEN]);

  async function history(id: string): Promise<{ current: number; versions: Summary[] }> {
    const res = await cluster.api(id, 'GET', '/api/v1/config/history');
    expect(res.status, res.body).toBe(200);
    return res.json<{ current: number; versions: Summary[] }>();
  }

  // Six CLI runs, each a node process start: slow on a loaded machine.
  it('records a file edit, an API call and a CLI command alike on every node, and rolls back to the seed through the CLI', async () => {
    const leader = await cluster.waitForLeader(ids);
    const [fileNode, cliNode] = ids.filter((id) => id !== leader) as [string, string];
    const seed = (await cluster.config(leader)).version;

    // 1. A follower's file gains backend b.
    const file = cluster.node(fileNode).file;
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace(`      - { url: ${a.url}, id: a }`, `      - { url: ${a.url}, id: a }\n      - { url: ${b.url}, id: b }`));
    const afterFile = (await cluster.waitForVersion(ids, seed + 1))[0]!.version;
    // 2. The admin API on the leader, with the caller's own request id.
    const patched = await cluster.api(leader, 'PATCH', '/api/v1/pools/web/backends/b', { body: { weight: 3 }, headers: { 'x-request-id': 'deploy-17' } });
    expect(patched.status, patched.body).toBe(200);
    const patchRequestId = patched.headers['x-request-id'];
    const afterApi = patched.json<{ version: number }>().version;
    // 3. The CLI on the third node.
    const added = await cli(cliNode, ['backends', 'add', 'web', c.url, '--id', 'c']);
    expect(added.code, added.stderr).toBe(0);
    const afterCli = (await cluster.config(cliNode)).version;
    await cluster.waitForVersion(ids, afterCli);

    const histories = await Promise.all(ids.map((id) => history(id)));
    for (const h of histories) expect(h).toEqual(histories[0]);
    const [latest, api, edit, seeded] = histories[0]!.versions;
    expect(histories[0]!.current).toBe(afterCli);
    expect(latest).toMatchObject({ version: afterCli, change: 'add backend web/c', source: { kind: 'cli', node: cliNode } });
    expect(api).toMatchObject({ version: afterApi, change: 'update backend web/b: weight 3', source: { kind: 'api', node: leader }, clientRequestId: 'deploy-17', requestId: patchRequestId });
    expect(edit).toMatchObject({ version: afterFile, change: 'set config', source: { kind: 'file', node: fileNode, file } });
    expect(seeded).toMatchObject({ version: seed, source: { kind: 'seed', node: leader } });
    for (const entry of [latest!, api!, edit!, seeded!]) expect(Date.parse(entry.at!)).toBeGreaterThan(Date.parse('2026-01-01'));

    const table = await cli(fileNode, ['config', 'history']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`v${afterCli} \\*\\s+\\S+ \\S+\\s+CLI on ${cliNode}\\s+add backend web/c`));

    const diff = await cli(leader, ['config', 'diff', String(seed), String(afterCli)]);
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).toContain(`--- v${seed}\n+++ v${afterCli}\n`);
    expect(diff.stdout).toContain(`+      - { url: ${b.url}, weight: 3, id: b }`);
    expect(diff.stdout).toContain(`+      - { url: ${c.url}, id: c }`);

    // A stale compare-and-set is refused; the CLI's rollback reads the current version itself.
    const stale = await cluster.api(fileNode, 'POST', '/api/v1/config/rollback', { body: { version: seed }, headers: { 'if-match': `"${afterFile}"` } });
    expect(stale.status).toBe(412);
    const rolled = await cli(fileNode, ['config', 'rollback', String(seed)]);
    expect(rolled.code, rolled.stderr).toBe(0);
    const views = await cluster.waitForVersion(ids, afterCli + 1);
    for (const view of views) expect(view.pools['web']!.backends.map((backend) => backend.id)).toEqual(['a']);
    await eventually(async () => ((await Promise.all(ids.map((id) => cluster.fileConfig(id)))).every((f) => f.pools['web']?.backends.length === 1) ? true : undefined), 'every file to show the rollback');
    for (const id of ids) expect(await cluster.servedBy(id)).toBe('a');
    const after = await history(cliNode);
    expect(after.versions[0]).toMatchObject({ change: 'set config', source: { kind: 'rollback', node: fileNode, via: 'cli', rollbackOf: seed } });
  });

  it('a restarted node has the same history, rebuilt from its log', async () => {
    const leader = await cluster.waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    const before = await history(leader);
    await cluster.restart(follower);
    await cluster.waitForVersion([follower], before.current);
    expect(await history(follower)).toEqual(before);
  });
});
