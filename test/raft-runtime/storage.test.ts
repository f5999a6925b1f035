import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBalancerError } from '../../src/errors.js';
import { memoryLogger, silentLogger } from '../../src/log.js';
import type { Entry, HardState, Snapshot } from '../../src/raft/core/types.js';
import { DiskStorage, LOCK_FILE, PersistedLog } from '../../src/raft/runtime/storage.js';
import { nodeRaftFs, type RaftFs } from '../../src/raft/runtime/raft-fs.js';
import { RecordType, encodeRecord, segmentFileName } from '../../src/raft/runtime/wal.js';
import { buildStorageForChild } from './child-build.js';

function entry(index: number, term: number, data = `cmd-${index}-${term}`): Entry {
  return { index, term, type: 'normal', data };
}

function range(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

function snapshotAt(index: number, term: number, data = `state@${index}`): Snapshot {
  return { metadata: { index, term, confState: { voters: ['n1', 'n2', 'n3'], learners: [] } }, data };
}

async function expectCode(promise: Promise<unknown>, code: 'STORAGE_CORRUPT' | 'STORAGE_LOCKED' | 'STORAGE_NODE_MISMATCH'): Promise<Error> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isBalancerError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

let dir: string;
const open: DiskStorage[] = [];

async function openStorage(nodeId = 'n1', logger = silentLogger): Promise<DiskStorage> {
  const storage = await DiskStorage.open(dir, nodeId, logger);
  open.push(storage);
  return storage;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-storage-'));
});

afterEach(async () => {
  for (const storage of open.splice(0)) await storage.close();
  await rm(dir, { recursive: true, force: true });
});

const segmentPath = (sequence: number): string => join(dir, segmentFileName(sequence));

describe('DiskStorage', () => {
  it('starts empty and round-trips hard state and entries across reopen', async () => {
    const first = await openStorage();
    expect(first.initialState()).toEqual({ hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
    const hs: HardState = { term: 2, vote: 'n2', commit: 3 };
    await first.save({ term: 1, vote: 'n1', commit: 0 }, range(1, 2, 1));
    await first.save(undefined, range(3, 4, 2));
    await first.save(hs, []);
    await first.close();

    const second = await openStorage();
    expect(second.initialState()).toEqual({ hardState: hs, snapshot: null, entries: [...range(1, 2, 1), ...range(3, 4, 2)] });
    expect(second.lastIndex()).toBe(4);
  });

  it('replaces the suffix when entries are appended at or below the last index', async () => {
    const storage = await openStorage();
    await storage.save({ term: 1, vote: 'n1', commit: 2 }, range(1, 6, 1));
    await storage.save({ term: 3, vote: 'n3', commit: 2 }, range(3, 4, 3));
    expect(storage.lastIndex()).toBe(4);
    await storage.close();

    const reopened = await openStorage();
    expect(reopened.initialState().entries).toEqual([...range(1, 2, 1), ...range(3, 4, 3)]);
    // Appending after the replaced suffix continues from index 5, not the old 7.
    await reopened.save(undefined, [entry(5, 3)]);
    await reopened.close();
    expect((await openStorage()).initialState().entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses entries that would leave a gap, without poisoning later writes', async () => {
    const storage = await openStorage();
    await storage.save(undefined, range(1, 2, 1));
    await expect(storage.save(undefined, [entry(5, 1)])).rejects.toThrow(/gap/);
    await storage.save(undefined, [entry(3, 1)]);
    expect(storage.lastIndex()).toBe(3);
  });

  it('saves a snapshot, compacts the WAL to the entries after it, and reopens from both', async () => {
    const storage = await openStorage();
    await storage.save({ term: 1, vote: 'n1', commit: 8 }, range(1, 10, 1));
    await storage.saveSnapshot(snapshotAt(6, 1));
    // The snapshot lives in the new segment's checkpoint; there is no separate snapshot file to keep in step.
    expect((await readdir(dir)).filter((name) => !name.startsWith('LOCK')).sort()).toEqual(['meta.json', segmentFileName(2)]);
    await storage.save({ term: 2, vote: 'n2', commit: 10 }, [entry(11, 2)]);
    await storage.close();

    const reopened = await openStorage();
    expect(reopened.initialState()).toEqual({
      hardState: { term: 2, vote: 'n2', commit: 10 },
      snapshot: snapshotAt(6, 1),
      entries: [...range(7, 10, 1), entry(11, 2)],
    });
    // Entries the snapshot covers are no longer stored.
    expect((await readFile(segmentPath(2), 'utf8')).includes('cmd-3-1')).toBe(false);
    // An older snapshot than the stored one is ignored.
    await reopened.saveSnapshot(snapshotAt(4, 1));
    expect(reopened.currentSnapshot()?.metadata.index).toBe(6);
  });

  it('drops the whole log when a snapshot does not match it (restore from a leader)', async () => {
    const storage = await openStorage();
    await storage.save({ term: 1, vote: 'n1', commit: 2 }, range(1, 5, 1));
    await storage.saveSnapshot(snapshotAt(8, 3));
    await storage.save({ term: 3, vote: null, commit: 8 }, [entry(9, 3)]);
    await storage.close();
    const reopened = await openStorage();
    expect(reopened.initialState().snapshot?.metadata.index).toBe(8);
    expect(reopened.initialState().entries).toEqual([entry(9, 3)]);
  });

  it('drops entries after a snapshot whose term disagrees with the log at its index', async () => {
    const storage = await openStorage();
    await storage.save(undefined, range(1, 6, 1));
    await storage.saveSnapshot(snapshotAt(3, 2));
    expect(storage.lastIndex()).toBe(3);
    await storage.close();
    expect((await openStorage()).initialState().entries).toEqual([]);
  });

  it('drops a torn final record with a warning and keeps working after it', async () => {
    const storage = await openStorage();
    await storage.save({ term: 1, vote: 'n1', commit: 0 }, range(1, 3, 1));
    await storage.save({ term: 1, vote: 'n1', commit: 3 }, range(4, 5, 1));
    await storage.close();
    const { size } = await stat(segmentPath(1));
    await truncate(segmentPath(1), size - 5);

    const logger = memoryLogger('warn');
    const reopened = await openStorage('n1', logger);
    expect(reopened.initialState().entries).toEqual(range(1, 3, 1));
    expect(reopened.initialState().hardState.commit).toBe(0);
    expect(logger.lines.some((line) => String(line['msg']).includes('torn'))).toBe(true);
    // The damage was cut off, so records appended now are not mistaken for data after corruption.
    await reopened.save(undefined, [entry(4, 2)]);
    await reopened.close();
    expect((await openStorage()).initialState().entries).toEqual([...range(1, 3, 1), entry(4, 2)]);
  });

  describe('the last record: a torn write is dropped, damage to a complete record refuses to start', () => {
    /** A segment holding two batches; `damage` edits the file image; returns what reopening says. */
    async function reopenAfter(damage: (image: Buffer, lastRecordAt: number) => Buffer): Promise<{ entries: number[]; warned: string[] } | Error> {
      const storage = await openStorage();
      await storage.save({ term: 1, vote: 'n1', commit: 0 }, range(1, 3, 1));
      const { size: before } = await stat(segmentPath(1));
      // The vote this batch carries was acknowledged once its fsync returned: losing it silently would be unsafe.
      await storage.save({ term: 2, vote: 'n2', commit: 3 }, range(4, 5, 2));
      await storage.close();
      await writeFile(segmentPath(1), damage(await readFile(segmentPath(1)), before));
      const logger = memoryLogger('warn');
      try {
        const reopened = await openStorage('n1', logger);
        return { entries: reopened.initialState().entries.map((e) => e.index), warned: logger.lines.map((line) => String(line['reason'])) };
      } catch (error) {
        return error as Error;
      }
    }

    const flip = (image: Buffer, at: number): Buffer => {
      image[at] = image[at]! ^ 0x04;
      return image;
    };

    it.each([
      ['cut short inside the body', (image: Buffer) => image.subarray(0, image.length - 7), 'short body'],
      ['cut short inside the header', (image: Buffer, at: number) => image.subarray(0, at + 3), 'short header'],
      ['zero-filled from inside the body', (image: Buffer) => Buffer.concat([image.subarray(0, image.length - 20), Buffer.alloc(20)]), 'zero-filled body'],
      ['zero-filled from inside the header', (image: Buffer, at: number) => Buffer.concat([image.subarray(0, at + 5), Buffer.alloc(image.length - at - 5)]), 'zero-filled header'],
      ['all zeros where the record should be', (image: Buffer, at: number) => Buffer.concat([image.subarray(0, at), Buffer.alloc(image.length - at)]), 'zero-filled record'],
    ])('drops a final record %s, with a warning', async (_name, damage, reason) => {
      const result = await reopenAfter(damage);
      expect(result).not.toBeInstanceOf(Error);
      expect(result).toEqual({ entries: [1, 2, 3], warned: [reason] });
    });

    it('drops zeros after the last intact record (the file grew, nothing was written)', async () => {
      const result = await reopenAfter((image) => Buffer.concat([image, Buffer.alloc(4096)]));
      expect(result).toEqual({ entries: [1, 2, 3, 4, 5], warned: ['zero-filled record'] });
    });

    it.each([
      ['a flipped bit in its payload', (image: Buffer) => flip(image, image.length - 10), /CRC mismatch in the last complete record at byte offset (\d+)/],
      ['a flipped bit in its checksum', (image: Buffer, at: number) => flip(image, at + 9), /CRC mismatch in the last complete record at byte offset (\d+)/],
      ['a flipped bit in its length (the record looks longer)', (image: Buffer, at: number) => flip(image, at + 6), /damaged length field in the last record at byte offset (\d+)/],
      ['a flipped bit in its length (the record looks shorter)', (image: Buffer, at: number) => flip(image, at + 7), /at byte offset (\d+)/],
      ['a flipped bit in its magic', (image: Buffer, at: number) => flip(image, at + 1), /bad magic in the last record at byte offset (\d+)/],
      ['garbage written after it', (image: Buffer) => Buffer.concat([image, Buffer.from('BWL1\x00\x00\x00\x10garbage-after-a-crash')]), /at byte offset (\d+)/],
    ])('refuses a complete last record with %s, naming the file and offset', async (_name, damage, message) => {
      let recordAt = -1;
      const result = await reopenAfter((image, at) => {
        recordAt = at;
        return damage(image, at);
      });
      expect(isBalancerError(result, 'STORAGE_CORRUPT'), String(result)).toBe(true);
      const error = result as Error;
      expect(error.message).toContain(segmentPath(1));
      const offset = Number(message.exec(error.message)?.[1]);
      expect(offset === recordAt || offset > recordAt, error.message).toBe(true);
      expect(await readdir(dir)).not.toContain(LOCK_FILE);
    });
  });

  it('refuses to start when a record before the tail is damaged, naming the file and offset', async () => {
    const storage = await openStorage();
    await storage.save({ term: 1, vote: 'n1', commit: 0 }, range(1, 3, 1));
    await storage.save({ term: 1, vote: 'n1', commit: 3 }, range(4, 6, 1));
    await storage.close();
    const image = await readFile(segmentPath(1));
    const at = image.indexOf('cmd-2-1');
    expect(at).toBeGreaterThan(0);
    image[at] = image[at]! ^ 0x20;
    await writeFile(segmentPath(1), image);

    const error = await expectCode(DiskStorage.open(dir, 'n1', silentLogger), 'STORAGE_CORRUPT');
    expect(error.message).toContain(segmentPath(1));
    expect(error.message).toMatch(/offset \d+/);
    expect(error.message).toMatch(/backup|re-add/);
    // A refused open leaves the dir unlocked.
    expect(await readdir(dir)).not.toContain(LOCK_FILE);
  });

  it('refuses a damaged checkpoint, where the snapshot lives', async () => {
    const storage = await openStorage();
    await storage.save(undefined, range(1, 4, 1));
    await storage.saveSnapshot(snapshotAt(3, 1));
    await storage.save({ term: 1, vote: null, commit: 4 }, [entry(5, 1)]);
    await storage.close();
    const image = await readFile(segmentPath(2));
    const at = image.indexOf('state@3');
    image[at] = image[at]! ^ 1;
    await writeFile(segmentPath(2), image);
    await expectCode(DiskStorage.open(dir, 'n1', silentLogger), 'STORAGE_CORRUPT');
  });

  it('refuses a damaged snapshot file in a data dir of the previous format', async () => {
    await writeFile(join(dir, 'meta.json'), JSON.stringify({ format: 1, nodeId: 'n1' }));
    const checkpoint = encodeRecord(RecordType.checkpoint, { format: 1, snapshotIndex: 3, snapshotTerm: 1, hardState: { term: 1, vote: null, commit: 3 }, entries: [entry(4, 1)] });
    await writeFile(segmentPath(2), checkpoint);
    const snapshot = encodeRecord(RecordType.snapshot, snapshotAt(3, 1));
    await writeFile(join(dir, 'snapshot.snap'), snapshot);
    const intact = await openStorage();
    expect(intact.initialState()).toEqual({ hardState: { term: 1, vote: null, commit: 3 }, snapshot: snapshotAt(3, 1), entries: [entry(4, 1)] });
    await open.pop()!.close();

    snapshot[snapshot.length - 3] = snapshot[snapshot.length - 3]! ^ 1;
    await writeFile(join(dir, 'snapshot.snap'), snapshot);
    await expectCode(DiskStorage.open(dir, 'n1', silentLogger), 'STORAGE_CORRUPT');
  });

  it('writes a batch on the calling thread and sends only its fdatasync to the thread pool; a commit-only batch needs neither', async () => {
    const calls: string[] = [];
    const fs: RaftFs = {
      ...nodeRaftFs,
      openAppend: async (path) => {
        const file = await nodeRaftFs.openAppend(path);
        return {
          write: (data, offset, length) => (calls.push('write'), file.write(data, offset, length)),
          writeSync: (data, offset, length) => (calls.push('writeSync'), file.writeSync(data, offset, length)),
          datasync: () => (calls.push('datasync'), file.datasync()),
          sync: () => (calls.push('sync'), file.sync()),
          close: () => file.close(),
        };
      },
    };
    const storage = await DiskStorage.open(dir, 'n1', silentLogger, { fs });
    open.push(storage);
    calls.length = 0;
    await storage.save({ term: 1, vote: 'n1', commit: 0 }, range(1, 2, 1));
    expect(calls).toEqual(['writeSync', 'datasync']);
    calls.length = 0;
    await storage.save({ term: 1, vote: 'n1', commit: 2 }, [], { sync: false });
    expect(calls).toEqual(['writeSync']);
    await storage.close();
    const reopened = await openStorage();
    expect(reopened.initialState().entries).toEqual(range(1, 2, 1));
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: 'n1', commit: 2 });
  });

  it('gives a new data dir an incarnation id and keeps it across reopens', async () => {
    const first = await openStorage();
    const { incarnation } = first.identity;
    expect(incarnation).toMatch(/^[0-9a-f]{32}$/);
    await first.close();
    expect((await openStorage()).identity).toEqual({ nodeId: 'n1', incarnation });
    await rm(dir, { recursive: true, force: true });
    expect((await openStorage()).identity.incarnation).not.toBe(incarnation);
  });

  it('records the node id and refuses a different one', async () => {
    await (await openStorage('n1')).close();
    const error = await expectCode(DiskStorage.open(dir, 'n2', silentLogger), 'STORAGE_NODE_MISMATCH');
    expect(error.message).toContain('"n1"');
    expect(await readdir(dir)).not.toContain(LOCK_FILE);
  });

  it('keeps a second opener in the same process out and lets it in after close', async () => {
    const storage = await openStorage();
    const error = await expectCode(DiskStorage.open(dir, 'n1', silentLogger), 'STORAGE_LOCKED');
    expect(error.message).toContain(String(process.pid));
    await storage.close();
    await (await openStorage()).close();
  });

  it('is locked by a live child process and takes over its lock once it is killed', async () => {
    const buildDir = await mkdtemp(join(tmpdir(), 'balancer-storage-child-'));
    let child: ChildProcess | null = null;
    try {
      const storageModule = await buildStorageForChild(buildDir);
      const script = `
        const { DiskStorage } = await import(${JSON.stringify(pathToFileURL(storageModule).href)});
        const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet; }, enabled: () => false };
        const storage = await DiskStorage.open(${JSON.stringify(dir)}, 'n1', quiet);
        await storage.save({ term: 4, vote: 'n1', commit: 0 }, [{ index: 1, term: 4, type: 'empty', data: '' }]);
        process.stdout.write('ready\\n');
        setInterval(() => {}, 60_000);
      `;
      const running = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      child = running;
      await new Promise<void>((resolve, reject) => {
        running.stdout!.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ready')) resolve();
        });
        running.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
      });

      const error = await expectCode(DiskStorage.open(dir, 'n1', silentLogger), 'STORAGE_LOCKED');
      expect(error.message).toContain(String(running.pid));

      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
      child = null;

      const logger = memoryLogger('warn');
      const storage = await openStorage('n1', logger);
      expect(storage.initialState().hardState.term).toBe(4);
      expect(logger.lines.some((line) => String(line['msg']).includes('stale'))).toBe(true);
      expect((await readFile(join(dir, LOCK_FILE), 'utf8')).trim()).toBe(String(process.pid));
    } finally {
      child?.kill('SIGKILL');
      await rm(buildDir, { recursive: true, force: true });
    }
  });

  it('takes over a lock whose pid is not running', async () => {
    await writeFile(join(dir, LOCK_FILE), '4194304\n');
    const storage = await DiskStorage.open(dir, 'n1', silentLogger, { isProcessAlive: (pid) => pid === process.pid });
    open.push(storage);
    expect((await readFile(join(dir, LOCK_FILE), 'utf8')).trim()).toBe(String(process.pid));
  });
});

describe('PersistedLog and replay agree', () => {
  type Op =
    | { kind: 'append'; back: number; count: number; term: number }
    | { kind: 'hard'; commit: number }
    | { kind: 'snapshot'; back: number; termDelta: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('append' as const), back: fc.nat(4), count: fc.integer({ min: 0, max: 4 }), term: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('hard' as const), commit: fc.nat(20) }),
    fc.record({ kind: fc.constant('snapshot' as const), back: fc.nat(3), termDelta: fc.integer({ min: 0, max: 1 }) }),
  );

  it('reopening after any sequence of saves and snapshots gives the live state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
        await rm(dir, { recursive: true, force: true });
        const storage = await DiskStorage.open(dir, 'n1', silentLogger);
        const model = new PersistedLog();
        let snapshot: Snapshot | null = null;
        try {
          for (const step of ops) {
            if (step.kind === 'append') {
              const start = Math.max(model.snapshotIndex + 1, model.lastIndex() + 1 - step.back);
              const entries = step.count === 0 ? [] : range(start, start + step.count - 1, step.term);
              await storage.save(undefined, entries);
              model.append(entries);
            } else if (step.kind === 'hard') {
              const hs = { term: 1, vote: 'n1', commit: step.commit };
              await storage.save(hs, []);
              model.hardState = hs;
            } else {
              const index = model.lastIndex() + 1 - step.back;
              if (index <= model.snapshotIndex) continue;
              const term = (model.termAt(index) ?? 1) + step.termDelta;
              const snap = snapshotAt(index, term);
              await storage.saveSnapshot(snap);
              model.applySnapshot(index, term);
              snapshot = snap;
            }
          }
        } finally {
          await storage.close();
        }
        const reopened = await DiskStorage.open(dir, 'n1', silentLogger);
        try {
          expect(reopened.initialState()).toEqual({ hardState: model.hardState, snapshot, entries: model.entries });
        } finally {
          await reopened.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
