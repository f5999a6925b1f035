// How often a cluster node writes applied configs into its balancer.yaml: a lone change at once, a burst's later changes together (the newest), never lost.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import { backendIds, configText, filesBeside, TestCluster, type TestNode } from '../helpers/in-process-cluster.js';

/** Longer than any test here runs: a write deferred by it happens only when the node stops (or restarts). */
const LONG_INTERVAL_MS = 600_000;

describe('the file write-back of applied configs', () => {
  let cluster: TestCluster;
  let handedToFile: number[];

  beforeEach(async () => {
    cluster = new TestCluster(['n1']);
    await cluster.init();
    handedToFile = [];
    const writeBack = ConfigFileSync.prototype.writeBack;
    vi.spyOn(ConfigFileSync.prototype, 'writeBack').mockImplementation(function (this: ConfigFileSync, version, config) {
      handedToFile.push(version);
      return writeBack.call(this, version, config);
    });
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await cluster.close();
  });

  /** n1 seeded from its file, which shows the seed version; then `weights.length` changes of b9101's weight, back to back. */
  async function seededThenBurst(weights: readonly number[]): Promise<{ node: TestNode; seedText: string; seeded: number; last: number }> {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100, 9101]), fileWriteIntervalMs: LONG_INTERVAL_MS });
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const seeded = node.store.version;
    await cluster.until(() => node.store.fileVersion === seeded, 10_000, 'file at the seed version');
    const seedText = await readFile(node.file, 'utf8');
    handedToFile.length = 0;
    let last = 0;
    for (const weight of weights) ({ version: last } = await node.store.updateBackend('web', 'b9101', { weight }));
    return { node, seedText, seeded, last };
  }

  it('writes the changes of a burst together, the newest only, and never leaves the file behind when the node stops', async () => {
    const { node, seedText, seeded, last } = await seededThenBurst([3, 4, 5, 6, 7]);
    // The file was written for the seed a moment ago: the burst waits for the interval instead of five rewrites.
    expect(node.store.fileVersion).toBe(seeded);
    expect(await readFile(node.file, 'utf8')).toBe(seedText);
    expect(handedToFile).toEqual([]);

    await cluster.stop('n1');
    // One write, of the newest config, with the file's comment kept.
    expect(handedToFile).toEqual([last]);
    const text = await readFile(node.file, 'utf8');
    expect(text).toContain('weight: 7');
    expect(text).toContain('# kept comment');
  });

  it('writes a deferred burst once the interval since the write before it has passed', async () => {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100, 9101]), fileWriteIntervalMs: 300 });
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    let last = 0;
    for (const weight of [3, 4, 5]) ({ version: last } = await node.store.updateBackend('web', 'b9101', { weight }));
    await cluster.until(() => node.store.fileVersion === last, 10_000, 'file at the newest version');
    expect(await readFile(node.file, 'utf8')).toContain('weight: 5');
  });

  it('after a crash between a burst and its deferred write, the restarted node writes the newest config at once, taking no edit from the stale file', async () => {
    const { node, seedText, last } = await seededThenBurst([3, 4, 5]);
    // The crash: the process dies before the deferred write (stop's own last write does nothing).
    vi.spyOn(ConfigFileSync.prototype, 'writeBack').mockImplementation(async () => false);
    await cluster.stop('n1');
    expect(await readFile(node.file, 'utf8')).toBe(seedText);
    vi.restoreAllMocks();

    // Same interval: only the first write after a start is not deferred, and this must be it.
    const restarted = await cluster.start('n1', { fileWriteIntervalMs: LONG_INTERVAL_MS });
    await cluster.until(() => restarted.store.fileVersion === last, 10_000, 'file at the newest version after the restart');
    expect(await readFile(restarted.file, 'utf8')).toContain('weight: 5');
    // The file showed an older version, not an edit: nothing proposed from it, nothing set aside.
    expect(restarted.lines.some((l) => l.msg === 'config edit proposed from the file' || String(l.msg).startsWith('the config file was edited'))).toBe(false);
    expect(await filesBeside(restarted.dir, 'balancer.yaml.rejected-')).toEqual([]);
    expect(await filesBeside(restarted.dir, 'balancer.yaml.local-')).toEqual([]);
    expect(restarted.store.version).toBe(last);
  });

  it("records an edit of the node's own file at once, so a second edit right after it is a compare-and-set from the first's version", async () => {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100, 9101]), fileWriteIntervalMs: LONG_INTERVAL_MS });
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const seeded = node.store.version;
    await cluster.until(() => node.store.fileVersion === seeded, 10_000, 'file at the seed version');
    const committed = (): number => node.lines.filter((l) => l.msg === 'config edit committed').length;

    // Two saves of the file in a row, well within the interval since the seed's write-back.
    const first = (await readFile(node.file, 'utf8')).replace('id: b9101 }', 'id: b9101, weight: 3 }');
    await writeFile(node.file, first);
    await cluster.until(() => committed() === 1, 10_000, 'first edit committed');
    await cluster.until(() => node.store.fileVersion === node.store.version, 10_000, 'the first edit recorded as what the file shows');
    await writeFile(node.file, first.replace('weight: 3', 'weight: 4'));
    await cluster.until(() => committed() === 2, 10_000, 'second edit committed');

    expect(node.lines.some((l) => String(l.msg).startsWith('config edit rejected'))).toBe(false);
    expect(await filesBeside(node.dir, 'balancer.yaml.rejected-')).toEqual([]);
    expect(backendIds(node, 'web')).toEqual(['b9100', 'b9101']);
    expect(node.dataPlane.table.pools.get('web')?.pool.backends.find((b) => b.id === 'b9101')?.weight).toBe(4);
  });

  it("an operator's edit of a file whose write is deferred is an edit of an older version: refused, saved beside the file, and the file shows the cluster", async () => {
    const { node, seedText, last } = await seededThenBurst([3, 4]);
    expect(await readFile(node.file, 'utf8')).toBe(seedText);
    // The operator adds a backend to what the file shows (the seed version), not knowing of the two changes since.
    const edited = seedText.replace('      - { url: http://127.0.0.1:9101, id: b9101 }', '      - { url: http://127.0.0.1:9101, id: b9101 }\n      - { url: http://127.0.0.1:9102, id: b9102 }');
    expect(edited).not.toBe(seedText);
    await writeFile(node.file, edited);

    await cluster.until(() => node.lines.some((l) => String(l.msg).startsWith('config edit rejected: the replicated config changed')), 10_000, 'edit refused');
    const saved = await filesBeside(node.dir, 'balancer.yaml.rejected-');
    expect(saved).toHaveLength(1);
    expect(await readFile(join(node.dir, saved[0]!), 'utf8')).toBe(edited);
    // The refusal writes the cluster's config into the file at once, deferred write or not.
    await cluster.until(() => node.store.fileVersion === last, 10_000, 'file at the newest version');
    const text = await readFile(node.file, 'utf8');
    expect(text).toContain('weight: 4');
    expect(text).not.toContain('9102');
    expect(backendIds(node, 'web')).toEqual(['b9100', 'b9101']);
  });
});
