// A node stopped in the middle of its file write-back finds at the next start its own write, never an operator's edit.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import { memoryLogger } from '../../src/log.js';
import { ONE_BACKEND_FILE as FILE, withWeight } from '../helpers/one-backend-file.js';

/** Where the next replace of the config file stops, as a kill there would: before the file changes, or right after. */
const stopAt: { when: 'before' | 'after' | null; file: string } = { when: null, file: '' };

vi.mock('../../src/atomic-write.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/atomic-write.js')>();
  return {
    ...real,
    replaceFile: async (path: string, data: string | Uint8Array): Promise<void> => {
      if (path !== stopAt.file || stopAt.when === null) return real.replaceFile(path, data);
      const when = stopAt.when;
      stopAt.when = null;
      if (when === 'after') await real.replaceFile(path, data);
      // Nothing of the write-back after this point runs, as if the process had been killed here.
      throw new Error(`stopped ${when} the replace`);
    },
  };
});


describe('ConfigFileSync stopped during a write-back', () => {
  let dir: string;
  let file: string;
  const open = (): Promise<ConfigFileSync> => ConfigFileSync.open({ file, dataDir: dir, logger: memoryLogger('error'), noteOwnWrite: () => undefined });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-file-crash-'));
    file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    stopAt.file = file;
    const sync = await open();
    await sync.noteShown(1, FILE);
    expect(await sync.writeBack(2, withWeight(2))).toBe(true);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('right after the file was replaced: the next start knows the new text as its own, at the version it wrote', async () => {
    const running = await open();
    const before = await readFile(file, 'utf8');
    stopAt.when = 'after';
    expect(await running.writeBack(3, withWeight(3))).toBe(false);
    const text = await readFile(file, 'utf8');
    expect(text).not.toBe(before);
    const restarted = await open();
    expect(restarted.isOfflineEdit(text)).toBe(false);
    expect(restarted.version).toBe(3);
    // An operator's edit of that text is still one.
    expect(restarted.isOfflineEdit(`${text}# edited while stopped\n`)).toBe(true);
  });

  it('before the file was replaced: the next start finds the old text, still at its old version', async () => {
    const running = await open();
    const before = await readFile(file, 'utf8');
    stopAt.when = 'before';
    expect(await running.writeBack(3, withWeight(3))).toBe(false);
    expect(await readFile(file, 'utf8')).toBe(before);
    const restarted = await open();
    expect(restarted.isOfflineEdit(before)).toBe(false);
    expect(restarted.version).toBe(2);
    // The write that never happened is forgotten: a later start does not take its text for this node's either.
    const again = await open();
    expect(again.version).toBe(2);
  });
});
