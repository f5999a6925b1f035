// When a write through the cluster store is answered: once the data plane serves the change, before the file is rewritten.

import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import { configText, TestCluster } from '../helpers/in-process-cluster.js';

describe('a write through the cluster store', () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = new TestCluster(['n1']);
    await cluster.init();
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await cluster.close();
  });

  it('is answered once the data plane serves it, without waiting for the config file write-back to start', async () => {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100, 9101]) });
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const handedToFile: number[] = [];
    const writeBack = ConfigFileSync.prototype.writeBack;
    vi.spyOn(ConfigFileSync.prototype, 'writeBack').mockImplementation(function (this: ConfigFileSync, version, config) {
      handedToFile.push(version);
      return writeBack.call(this, version, config);
    });

    const { version } = await node.store.updateBackend('web', 'b9101', { weight: 7 });

    // The answer came with the change served...
    expect(node.dataPlane.table.version).toBe(version);
    // ...and before the write-back of that version began: its synchronous rewrite no longer sits in front of the answer.
    expect(handedToFile).not.toContain(version);
    // The file follows right after.
    await cluster.until(() => handedToFile.includes(version), 2000, 'write-back handed the new version');
    await cluster.until(() => node.store.fileVersion === version, 5000, 'file rewritten');
    expect(await readFile(node.file, 'utf8')).toContain('weight: 7');
  });

  it('still hands the last applied config to the file when the store stops right after applying it', async () => {
    const node = await cluster.start('n1', { text: configText('n1', 'web', [9100, 9101]) });
    await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const { version } = await node.store.updateBackend('web', 'b9101', { weight: 5 });
    await cluster.stop('n1');
    expect(await readFile(node.file, 'utf8')).toContain('weight: 5');
    expect(version).toBeGreaterThan(1);
  });
});
