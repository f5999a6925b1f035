// YAML edits on any node of an in-process cluster with real files and watchers: propagation, conflicts, invalid edits, no quorum.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backendIds, configText, fileReplicated, filesBeside, TestCluster, type TestNode } from '../helpers/in-process-cluster.js';

const IDS = ['n1', 'n2', 'n3'];

/** The node's file with its web pool's backends replaced by these ports; comments and local sections untouched. */
async function editPorts(node: TestNode, ports: readonly number[]): Promise<string> {
  const text = await readFile(node.file, 'utf8');
  const start = text.indexOf('    backends:\n') + '    backends:\n'.length;
  const end = text.indexOf('\n', text.lastIndexOf('url: http://127.0.0.1:'));
  const edited = text.slice(0, start) + ports.map((p) => `      - { url: http://127.0.0.1:${p}, id: b${p} }`).join('\n') + text.slice(end);
  await writeFile(node.file, edited);
  return edited;
}

describe('YAML edits in a cluster', () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = new TestCluster(IDS);
    await cluster.init();
    // Same pools everywhere: seeding changes no file, so every file shows the seed version.
    await Promise.all(IDS.map((id) => cluster.start(id, { text: configText(id, 'web', [9100]) })));
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    // A hang bound only: three in-process nodes writing their files took over 3 s in a full run at load ~13.
    await cluster.until(() => [...cluster.nodes.values()].every((n) => n.store.fileVersion === n.store.version), 30_000, 'files at the seed version');
  });

  afterEach(async () => {
    await cluster.close();
  });

  it('an edit of a follower\'s file reaches every data plane and every file', async () => {
    const follower = cluster.followers()[0]!;
    await editPorts(follower, [9100, 9101]);
    await cluster.until(() => [...cluster.nodes.values()].every((n) => backendIds(n, 'web').includes('b9101')), 5000, 'edit on every data plane');
    await cluster.until(
      () => [...cluster.nodes.values()].every((n) => n === follower || n.lines.some((l) => l.msg === 'config file rewritten')),
      5000,
      'files rewritten',
    );
    const expected = await fileReplicated(follower.file);
    for (const node of cluster.nodes.values()) {
      expect(await fileReplicated(node.file)).toBe(expected);
      expect(await readFile(node.file, 'utf8')).toContain(`nodeId: ${node.id}`);
      expect(await filesBeside(node.dir, 'balancer.yaml.local-')).toEqual([]);
    }
    expect(follower.lines.some((l) => l.msg === 'config edit committed')).toBe(true);
    // Our own rewrite of the other files was not taken for a new edit.
    for (const node of cluster.nodes.values()) if (node !== follower) expect(node.lines.some((l) => l.msg === 'config edit proposed from the file')).toBe(false);
  });

  it('saves the losing one of two concurrent edits as .rejected- and rewrites its file to the winner', async () => {
    const [a, b] = cluster.followers();
    // Both files show the same version; both edits are compare-and-sets from it, so exactly one can commit.
    const textA = configText(a!.id, 'web', [9100, 9777]);
    const textB = configText(b!.id, 'web', [9100, 9888]);
    const [resultA, resultB] = await Promise.all([a!.store.reloadFromText(textA), b!.store.reloadFromText(textB)]);
    expect([resultA, resultB].sort()).toEqual(['applied', 'rejected']);
    const [winner, loser, winnerPort, loserText] = resultA === 'applied' ? [a!, b!, 9777, textB] : [b!, a!, 9888, textA];
    const loserPort = winnerPort === 9777 ? 9888 : 9777;

    const rejected = await filesBeside(loser.dir, 'balancer.yaml.rejected-');
    expect(rejected).toHaveLength(1);
    expect(await readFile(join(loser.dir, rejected[0]!), 'utf8')).toBe(loserText);
    expect(loser.lines.some((l) => String(l.msg).startsWith('config edit rejected: the replicated config changed'))).toBe(true);
    await cluster.waitForVersion(winner.store.version);
    const loserFile = await readFile(loser.file, 'utf8');
    expect(loserFile).toContain(`127.0.0.1:${winnerPort}`);
    expect(loserFile).not.toContain(`127.0.0.1:${loserPort}`);
    for (const node of cluster.nodes.values()) {
      expect(backendIds(node, 'web')).toContain(`b${winnerPort}`);
      expect(backendIds(node, 'web')).not.toContain(`b${loserPort}`);
    }
  });

  it('logs every problem of an invalid edit as FILE:LINE:COL and proposes nothing', async () => {
    const follower = cluster.followers()[0]!;
    const before = follower.store.version;
    const text = (await readFile(follower.file, 'utf8')).replace('url: http://127.0.0.1:9100', 'url: ftp://nowhere, weight: -1');
    expect(await follower.store.reloadFromText(text)).toBe('invalid');
    const problems = follower.lines.filter((l) => l.level === 'error' && String(l.msg).startsWith(`${follower.file}:`));
    expect(problems.length).toBeGreaterThanOrEqual(2);
    for (const line of problems) expect(String(line.msg)).toMatch(/^.+balancer\.yaml:\d+:\d+: /);
    expect(follower.store.version).toBe(before);
    expect(follower.lines.some((l) => l.msg === 'config edit proposed from the file')).toBe(false);
  });

  it('with no quorum an edit waits, is never applied locally, and commits once the quorum is back', async () => {
    const follower = cluster.followers()[0]!;
    const others = IDS.filter((id) => id !== follower.id);
    await cluster.stop(others[0]!);
    await cluster.stop(others[1]!);
    await editPorts(follower, [9100, 9555]);
    await cluster.until(() => follower.lines.some((l) => String(l.msg).startsWith('config edit waiting for a quorum')), 10_000, 'edit waiting');
    expect(backendIds(follower, 'web')).not.toContain('b9555');

    await cluster.start(others[0]!);
    await cluster.start(others[1]!);
    await cluster.until(() => [...cluster.nodes.values()].every((n) => backendIds(n, 'web').includes('b9555')), 15_000, 'edit committed after healing');
    // Every node can apply the entry before the follower's own proposal call returns (a retry may be in its
    // back-off when the quorum comes back), so the log line is waited for, not expected at once.
    await cluster.until(() => follower.lines.some((l) => l.msg === 'config edit committed'), 10_000, 'commit logged by the proposing follower');
  });

  it('an edit made while the node was stopped is proposed at restart, not overwritten', async () => {
    const follower = cluster.followers()[0]!;
    const id = follower.id;
    await cluster.stop(id);
    await editPorts(follower, [9100, 9555]);
    const restarted = await cluster.start(id);
    await cluster.until(() => [...cluster.nodes.values()].every((n) => backendIds(n, 'web').includes('b9555')), 8000, 'offline edit on every data plane');
    expect(restarted.lines.some((l) => l.msg === 'the config file was edited while this node was stopped: proposing the edit to the cluster')).toBe(true);
    expect(await readFile(restarted.file, 'utf8')).toContain('b9555');
    expect(await filesBeside(restarted.dir, 'balancer.yaml.rejected-')).toEqual([]);
  });

  it('an offline edit that lost to a newer change is saved as .rejected-, and the file shows the cluster', async () => {
    const [stopped, other] = cluster.followers();
    await cluster.stop(stopped!.id);
    await editPorts(stopped!, [9100, 9666]);
    // Meanwhile the cluster moves on: the offline edit's compare-and-set is now stale.
    await editPorts(other!, [9100, 9777]);
    await cluster.until(() => [...cluster.nodes.values()].every((n) => backendIds(n, 'web').includes('b9777')), 5000, 'the newer change everywhere');
    const restarted = await cluster.start(stopped!.id);
    await cluster.until(() => restarted.lines.some((l) => String(l.msg).startsWith('config edit rejected: the replicated config changed')), 8000, 'offline edit refused');
    const saved = await filesBeside(restarted.dir, 'balancer.yaml.rejected-');
    expect(saved.length).toBe(1);
    expect(await readFile(join(restarted.dir, saved[0]!), 'utf8')).toContain('b9666');
    await cluster.until(() => backendIds(restarted, 'web').includes('b9777'), 5000, 'restarted node serving the cluster config');
    await cluster.until(() => restarted.lines.some((l) => l.msg === 'config file rewritten'), 5000, 'file rewritten to the cluster config');
    expect(await readFile(restarted.file, 'utf8')).toContain('b9777');
    for (const node of cluster.nodes.values()) expect(backendIds(node, 'web')).not.toContain('b9666');
  });
});
