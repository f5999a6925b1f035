// Installing a leader's snapshot is one atomic durable step: a crash before or after any file operation of it leaves a disk the node starts from.

import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { RawNode } from '../../src/raft/core/index.js';
import { MemoryStorage } from '../../src/raft/core/storage.js';
import type { Entry, HardState, Snapshot } from '../../src/raft/core/types.js';
import { RaftNode, type RaftApplier, type RaftNodeEvent } from '../../src/raft/runtime/node.js';
import { DiskStorage, type PersistedState } from '../../src/raft/runtime/storage.js';
import { RecordType, encodeRecord, segmentFileName } from '../../src/raft/runtime/wal.js';
import { FaultFs, SimulatedCrash, type CrashLoss } from '../../src/raft/sim/fault-fs.js';

const DIR = '/sim/data/n2';
const VOTERS = ['n1', 'n2', 'n3'];

function range(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: `cmd-${i}-${term}` });
  return out;
}

const LEADER_SNAPSHOT: Snapshot = { metadata: { index: 8, term: 3, confState: { voters: VOTERS, learners: [] } }, data: 'state@8' };
const OLD_HARD_STATE: HardState = { term: 1, vote: 'n1', commit: 2 };
const NEW_HARD_STATE: HardState = { term: 3, vote: null, commit: 8 };
const OLD_STATE: PersistedState = { hardState: OLD_HARD_STATE, snapshot: null, entries: range(1, 5, 1) };
const NEW_STATE: PersistedState = { hardState: NEW_HARD_STATE, snapshot: LEADER_SNAPSHOT, entries: [] };

/** Builds the core the way the driver does at start; throws what the node would throw. */
function startCore(state: PersistedState): RawNode {
  const memory = new MemoryStorage();
  if (state.snapshot !== null) memory.applySnapshot(state.snapshot);
  else memory.setConfState({ voters: VOTERS, learners: [] });
  memory.append(state.entries);
  memory.setHardState(state.hardState);
  return new RawNode(
    { id: 'n2', electionTick: 10, heartbeatTick: 1, random: seededRandom(1), applied: state.snapshot?.metadata.index ?? 0 },
    memory,
  );
}

/** The disk: entries 1-5 at term 1, commit 2, everything fsynced. */
async function preparedDisk(): Promise<FaultFs> {
  const fs = new FaultFs();
  const storage = await DiskStorage.open(DIR, 'n2', silentLogger, { fs });
  await storage.save(OLD_HARD_STATE, range(1, 5, 1));
  await storage.close();
  return fs;
}

const LOSSES: ReadonlyArray<{ loss: CrashLoss; seed: number }> = [
  { loss: 'lose-all', seed: 0 },
  { loss: 'keep-all', seed: 0 },
  ...[1, 2, 3, 4, 5, 6].map((seed) => ({ loss: 'random' as const, seed })),
];

/**
 * Runs `install` on `base` with a crash before and after each of its file operations, under every loss
 * model, and checks the restarted disk holds exactly `before` or exactly `after`, and the core starts.
 */
async function crashAtEveryOperation(
  base: FaultFs,
  install: (storage: DiskStorage) => Promise<void>,
  before: PersistedState,
  after: PersistedState,
): Promise<{ before: number; after: number; operations: number }> {
  const opts = (fs: FaultFs) => ({ fs, isProcessAlive: () => false });
  // A dry run counts the operations of open() and of the install.
  const dry = base.afterCrash('lose-all');
  const storage = await DiskStorage.open(DIR, 'n2', silentLogger, opts(dry));
  const openOps = dry.operationCount;
  await install(storage);
  const operations = dry.operationCount - openOps;
  await storage.close();

  const outcomes = { before: 0, after: 0, operations };
  for (let op = openOps; op < openOps + operations; op++) {
    for (const when of ['crash-before', 'crash-after'] as const) {
      for (const { loss, seed } of LOSSES) {
        const where = `${when} operation ${op - openOps} of the install, ${loss} ${seed}`;
        const disk = base.afterCrash('lose-all', { decide: (o) => (o.index === op ? when : undefined), random: seededRandom(seed) });
        const installing = await DiskStorage.open(DIR, 'n2', silentLogger, opts(disk));
        const error = await install(installing).then(() => null, (e: unknown) => e);
        expect(error, where).toBeInstanceOf(SimulatedCrash);

        const reopened = await DiskStorage.open(DIR, 'n2', silentLogger, opts(disk.afterCrash(loss)));
        const state = reopened.initialState();
        await reopened.close();
        if (state.snapshot?.metadata.index === after.snapshot?.metadata.index) {
          expect(state, where).toEqual(after);
          outcomes.after++;
        } else {
          expect(state, where).toEqual(before);
          outcomes.before++;
        }
        expect(() => startCore(state), where).not.toThrow();
      }
    }
  }
  return outcomes;
}

describe('snapshot install under crashes (DiskStorage on a simulated disk)', () => {
  it('leaves the old log or the whole leader snapshot with its hard state, whatever operation the crash hits', async () => {
    const outcomes = await crashAtEveryOperation(
      await preparedDisk(),
      (storage) => storage.saveSnapshot(LEADER_SNAPSHOT, NEW_HARD_STATE, []),
      OLD_STATE,
      NEW_STATE,
    );
    expect(outcomes.operations).toBeGreaterThanOrEqual(6);
    // The crash points straddle the commit point: both outcomes happen.
    expect(outcomes.before).toBeGreaterThan(0);
    expect(outcomes.after).toBeGreaterThan(0);
  });

  it('does the same for a local compaction', async () => {
    const fs = new FaultFs();
    const storage = await DiskStorage.open(DIR, 'n2', silentLogger, { fs });
    const hardState: HardState = { term: 1, vote: 'n1', commit: 5 };
    await storage.save(hardState, range(1, 5, 1));
    await storage.close();
    const local: Snapshot = { metadata: { index: 4, term: 1, confState: { voters: VOTERS, learners: [] } }, data: 'state@4' };
    const outcomes = await crashAtEveryOperation(
      fs,
      (s) => s.saveSnapshot(local),
      { hardState, snapshot: null, entries: range(1, 5, 1) },
      { hardState, snapshot: local, entries: range(5, 5, 1) },
    );
    expect(outcomes.before).toBeGreaterThan(0);
    expect(outcomes.after).toBeGreaterThan(0);
  });

  it('keeps the entries a Ready carries after its snapshot in the same step', async () => {
    const fs = await preparedDisk();
    const storage = await DiskStorage.open(DIR, 'n2', silentLogger, { fs });
    await storage.saveSnapshot(LEADER_SNAPSHOT, NEW_HARD_STATE, range(9, 10, 3));
    await storage.close();
    const reopened = await DiskStorage.open(DIR, 'n2', silentLogger, { fs });
    expect(reopened.initialState()).toEqual({ ...NEW_STATE, entries: range(9, 10, 3) });
    await reopened.close();
  });
});

describe('a data dir left by the two-step install (snapshot file renamed, segment not)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  it('starts with commit raised to the snapshot index instead of refusing with STORAGE_CORRUPT', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'balancer-legacy-install-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await mkdir(dir, { recursive: true });
    // Format 1: the snapshot in snapshot.snap; the segment's checkpoint and hard state from before the install.
    await writeFile(join(dir, 'meta.json'), JSON.stringify({ format: 1, nodeId: 'n2' }) + '\n');
    const checkpoint = encodeRecord(RecordType.checkpoint, { format: 1, snapshotIndex: 0, snapshotTerm: 0, hardState: { term: 0, vote: null, commit: 0 }, entries: [] });
    const batch = encodeRecord(RecordType.batch, { hardState: OLD_HARD_STATE, entries: range(1, 5, 1) });
    await writeFile(join(dir, segmentFileName(1)), Buffer.concat([checkpoint, batch]));
    await writeFile(join(dir, 'snapshot.snap'), encodeRecord(RecordType.snapshot, LEADER_SNAPSHOT));

    const storage = await DiskStorage.open(dir, 'n2', silentLogger);
    const state = storage.initialState();
    await storage.close();
    expect(state.snapshot?.metadata.index).toBe(8);
    expect(state.entries).toEqual([]);
    expect(state.hardState).toEqual({ term: 1, vote: 'n1', commit: 8 });
    expect(() => startCore(state)).not.toThrow();
  });
});

describe('snapshot install under crashes (a RaftNode receiving MsgSnap)', () => {
  const applier = (log: string[]): RaftApplier => ({
    restoreSnapshot: (snapshot) => log.push(`restore ${snapshot.metadata.index}`),
    applyEntry: (entry) => log.push(`apply ${entry.index}`),
    applyConfChange: () => {},
    snapshotData: () => 'state',
    memberAddress: () => null,
  });

  async function startNode(fs: FaultFs, log: string[]): Promise<RaftNode> {
    return RaftNode.start({
      nodeId: 'n2',
      listen: '127.0.0.1:0',
      peers: { n1: '127.0.0.1:1', n2: '127.0.0.1:0', n3: '127.0.0.1:1' },
      secret: 'crash-test-secret',
      dataDir: DIR,
      electionTimeoutMs: 60_000,
      heartbeatIntervalMs: 10_000,
      applier: applier(log),
      logger: silentLogger,
      metrics: noopMetrics.raft,
      storage: { fs, isProcessAlive: () => false },
    });
  }

  function settled(node: RaftNode, index: number): Promise<RaftNodeEvent['type']> {
    return new Promise((resolve) => {
      const off = node.on((event) => {
        if (event.type === 'failed' || (event.type === 'applied' && event.index >= index)) {
          off();
          resolve(event.type);
        }
      });
    });
  }

  it('restarts on the old log or the snapshot after a crash at every operation of the install', async () => {
    const base = await preparedDisk();
    // Counting run: everything the node does from start until the snapshot is applied.
    const dry = base.afterCrash('lose-all');
    const counted = await startNode(dry, []);
    const before = dry.operationCount;
    const done = settled(counted, 8);
    deliver(counted, snapMessage());
    expect(await done).toBe('applied');
    const installOps = dry.operationCount - before;
    await counted.stop();

    const outcomes = { old: 0, new: 0 };
    for (let op = before; op < before + installOps; op++) {
      for (const when of ['crash-before', 'crash-after'] as const) {
        for (const loss of ['lose-all', 'keep-all'] as const) {
          const where = `${when} operation ${op - before} of the install, ${loss}`;
          const disk = base.afterCrash('lose-all', { decide: (o) => (o.index === op ? when : undefined) });
          const node = await startNode(disk, []);
          const outcome = settled(node, 8);
          deliver(node, snapMessage());
          expect(await outcome, where).toBe('failed');
          await node.stop().catch(() => undefined);

          const log: string[] = [];
          const restarted = await startNode(disk.afterCrash(loss), log);
          const status = restarted.basicStatus();
          await restarted.stop();
          if (log.includes('restore 8')) {
            expect(status, where).toMatchObject({ commit: 8, lastIndex: 8 });
            outcomes.new++;
          } else {
            expect(status, where).toMatchObject({ commit: 2, lastIndex: 5 });
            outcomes.old++;
          }
        }
      }
    }
    expect(outcomes.old).toBeGreaterThan(0);
    expect(outcomes.new).toBeGreaterThan(0);
  });
});

function snapMessage() {
  return { type: 'MsgSnap' as const, from: 'n1', to: 'n2', term: 3, snapshot: LEADER_SNAPSHOT };
}

function deliver(node: RaftNode, message: ReturnType<typeof snapMessage>): void {
  (node as unknown as { onPeerMessage(m: unknown): void }).onPeerMessage(message);
}
