// The data dir's record of the config file: a two-slot record written in place, whole after a crash at any point, read from older data dirs' config-file.json.

import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import { memoryLogger } from '../../src/log.js';
import { readSlotRecord, SLOT_BYTES, SlotRecordWriter } from '../../src/slot-record.js';

const FILE = ['# a node whose file matched the cluster', 'listen: 127.0.0.1:0', 'pools:', '  api:', '    backends: [{ url: http://127.0.0.1:9002, id: api-1 }]', ''].join('\n');

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'config-file-record-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function writer(path: string): Promise<SlotRecordWriter> {
  return new SlotRecordWriter(path, await readSlotRecord(path));
}

describe('two-slot record', () => {
  it('reads back the newest record, alternating slots, rewriting the same file in place', async () => {
    const path = join(dir, 'record');
    expect(await readSlotRecord(path)).toEqual({ kind: 'absent' });
    const w = await writer(path);
    await w.write('first');
    const inode = (await stat(path)).ino;
    await w.write('second');
    await w.write('third');
    expect(await readSlotRecord(path)).toEqual({ kind: 'record', text: 'third', sequence: 3, slot: 0 });
    expect((await stat(path)).ino).toBe(inode);
    expect((await stat(path)).size).toBe(2 * SLOT_BYTES);
    // A writer made on the existing file goes on from its newest record, into the other slot.
    const again = await writer(path);
    await again.write('fourth');
    expect(await readSlotRecord(path)).toEqual({ kind: 'record', text: 'fourth', sequence: 4, slot: 1 });
    expect(await readdir(dir)).toEqual(['record']);
  });

  it('after a crash at any point of an update reads the old record or the new one in full, never a mix', async () => {
    const path = join(dir, 'record');
    const w = await writer(path);
    // Long enough to span several disk sectors.
    const oldText = JSON.stringify({ version: 41, localCopy: `/etc/balancer/${'o'.repeat(1500)}` });
    const newText = JSON.stringify({ version: 42, localCopy: `/etc/balancer/${'n'.repeat(1700)}` });
    await w.write('older');
    await w.write(oldText);
    const before = await readFile(path);
    await w.write(newText);
    const after = await readFile(path);
    const changed: number[] = [];
    for (let i = 0; i < after.length; i++) if (before[i] !== after[i]) changed.push(i);
    // Only the slot being written changes; the newest record before the update is in the other one.
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((i) => Math.floor(i / SLOT_BYTES) === Math.floor(changed[0]! / SLOT_BYTES))).toBe(true);
    const readWith = async (bytes: Buffer): Promise<string> => {
      await writeFile(path, bytes);
      const read = await readSlotRecord(path);
      if (read.kind !== 'record') throw new Error(`unreadable after a torn write: ${JSON.stringify(read)}`);
      return read.text;
    };
    // Torn writes: every prefix of the update reached the disk, and every set of whole 512-byte sectors of it.
    const first = changed[0]!;
    const last = changed.at(-1)!;
    for (let reached = first; reached <= last + 1; reached += 37) {
      const torn = Buffer.from(before);
      after.copy(torn, first, first, reached);
      expect(await readWith(torn)).toBe(oldText);
    }
    const sectors = [...new Set(changed.map((i) => Math.floor(i / 512)))];
    expect(sectors.length).toBeGreaterThan(2);
    for (let mask = 0; mask < 2 ** sectors.length; mask++) {
      const torn = Buffer.from(before);
      sectors.forEach((sector, bit) => {
        if ((mask & (1 << bit)) !== 0) after.copy(torn, sector * 512, sector * 512, (sector + 1) * 512);
      });
      expect(await readWith(torn)).toBe(mask === 2 ** sectors.length - 1 ? newText : oldText);
    }
  });

  it('a record written without a sync is read back, and the next write goes to its slot, never over the newest synced one', async () => {
    const path = join(dir, 'record');
    const w = await writer(path);
    await w.write('first');
    await w.write('synced');
    await w.write('not synced', { durable: false });
    expect(await readSlotRecord(path)).toMatchObject({ kind: 'record', text: 'not synced', sequence: 3 });
    const synced = await readFile(path);
    const syncedSlot = synced.subarray(SLOT_BYTES, 2 * SLOT_BYTES).toString('latin1').includes('\nsynced') ? 1 : 0;
    await w.write('next');
    // An OS crash tearing this write leaves the synced record: the slot it is in was not written.
    const after = await readFile(path);
    expect(after.subarray(syncedSlot * SLOT_BYTES, (syncedSlot + 1) * SLOT_BYTES)).toEqual(synced.subarray(syncedSlot * SLOT_BYTES, (syncedSlot + 1) * SLOT_BYTES));
    expect(await readSlotRecord(path)).toMatchObject({ kind: 'record', text: 'next', sequence: 4 });
  });

  it('a file with no whole record is unreadable, and the next write starts it afresh', async () => {
    const path = join(dir, 'record');
    await writeFile(path, Buffer.alloc(2 * SLOT_BYTES, 0x41));
    const read = await readSlotRecord(path);
    expect(read.kind).toBe('unreadable');
    const w = new SlotRecordWriter(path, read);
    await w.write('fresh');
    expect(await readSlotRecord(path)).toEqual({ kind: 'record', text: 'fresh', sequence: 1, slot: 0 });
  });

  it('refuses a record larger than a slot, keeping the one on disk', async () => {
    const path = join(dir, 'record');
    const w = await writer(path);
    await w.write('kept');
    await expect(w.write('x'.repeat(SLOT_BYTES))).rejects.toThrow(/does not fit/);
    expect(await readSlotRecord(path)).toMatchObject({ kind: 'record', text: 'kept' });
  });
});

describe('ConfigFileSync: the data dir record', () => {
  const open = (file: string, dataDir: string): Promise<ConfigFileSync> =>
    ConfigFileSync.open({ file, dataDir, logger: memoryLogger('warn'), noteOwnWrite: () => undefined });

  it('keeps the version the file showed across restarts in config-file.state, updated in place', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    const first = await open(file, dir);
    await first.noteShown(3, FILE);
    const inode = (await stat(join(dir, 'config-file.state'))).ino;
    await first.noteShown(4, FILE);
    expect((await stat(join(dir, 'config-file.state'))).ino).toBe(inode);
    const restarted = await open(file, dir);
    expect(restarted.version).toBe(4);
    expect(restarted.isLastSynced(FILE)).toBe(true);
    expect(restarted.isOfflineEdit(FILE + '# edited while stopped\n')).toBe(true);
  });

  it('reads an older data dir\'s config-file.json, and replaces it with config-file.state at the next record', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    const legacy = join(dir, 'config-file.json');
    await writeFile(legacy, JSON.stringify({ version: 7, hash: sha256(FILE), replicatedHash: null, localCopy: '/x/balancer.yaml.local-1' }) + '\n');
    const sync = await open(file, dir);
    expect(sync.version).toBe(7);
    expect(sync.isLastSynced(FILE)).toBe(true);
    expect(sync.isOfflineEdit(FILE)).toBe(false);
    await sync.noteShown(8, FILE);
    expect((await readdir(dir)).sort()).toEqual(['balancer.yaml', 'config-file.state']);
    const restarted = await open(file, dir);
    expect(restarted.version).toBe(8);
    const record = await readSlotRecord(join(dir, 'config-file.state'));
    expect(record.kind === 'record' && JSON.parse(record.text)).toMatchObject({ version: 8, localCopy: '/x/balancer.yaml.local-1' });
  });

  it('falls back to config-file.json when config-file.state holds no whole record', async () => {
    const file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    await writeFile(join(dir, 'config-file.state'), Buffer.alloc(100, 0x20));
    await writeFile(join(dir, 'config-file.json'), JSON.stringify({ version: 5, hash: sha256(FILE) }));
    const logger = memoryLogger('warn');
    const sync = await ConfigFileSync.open({ file, dataDir: dir, logger, noteOwnWrite: () => undefined });
    expect(sync.version).toBe(5);
    expect(logger.lines.some((line) => String(line['msg']).includes('cannot be read'))).toBe(true);
  });
});
