// What a write-back hashes: only a text it has not seen (the one it writes), and the checksums of its record.

import { createHash as realCreateHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import { memoryLogger } from '../../src/log.js';
import { ONE_BACKEND_FILE as FILE, withWeight } from '../helpers/one-backend-file.js';
import { readSlotRecord } from '../../src/slot-record.js';

// Every sha256 the code under test sets up, counted (the real hash still runs).
const hashes = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return {
    ...original,
    createHash: (...args: Parameters<typeof original.createHash>) => {
      hashes.count++;
      return original.createHash(...args);
    },
  };
});


const sha256 = (text: string): string => realCreateHash('sha256').update(text).digest('hex');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'config-file-hashes-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('hashes per write-back', () => {
  it('a write-back into the text this node last recorded hashes only what it writes (the file and its sections), and records the right hashes', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    const sync = await ConfigFileSync.open({ file, dataDir: dir, logger: memoryLogger('warn'), noteOwnWrite: () => undefined });
    await sync.noteShown(1, FILE, withWeight(1));
    for (const weight of [2, 3, 4]) {
      hashes.count = 0;
      expect(await sync.writeBack(weight, withWeight(weight))).toBe(true);
      // For the record: the new text's hash, its routes and pools' hash, and the checksums of the record's two writes
      // (naming the text before the file is replaced, then recording it). The file read back before the rewrite is
      // known by its text, not hashed again.
      expect(hashes.count).toBe(4);
    }
    const text = await readFile(file, 'utf8');
    expect(text).toContain('id: web-1, weight: 4 }');
    const record = await readSlotRecord(join(dir, 'config-file.state'));
    if (record.kind !== 'record') throw new Error('no record');
    expect(JSON.parse(record.text)).toMatchObject({ version: 4, hash: sha256(text) });
    expect(sync.isLastSynced(text)).toBe(true);
    expect(sync.isLastSynced(`${text}# edited\n`)).toBe(false);
    // A later start knows the text by its recorded hash.
    const reopened = await ConfigFileSync.open({ file, dataDir: dir, logger: memoryLogger('warn'), noteOwnWrite: () => undefined });
    expect(reopened.isLastSynced(text)).toBe(true);
    expect(reopened.isOfflineEdit(`${text}# edited\n`)).toBe(true);
  });
});
