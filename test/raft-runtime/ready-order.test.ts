// The order in which the Raft node carries out a Ready: what waits for the disk and what does not.
// Real nodes on loopback and real data dirs; each node's storage is wrapped so a test can hold its writes.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import type { Entry, HardState, Message, Snapshot } from '../../src/raft/core/types.js';
import { RaftNode, type RaftApplier } from '../../src/raft/runtime/node.js';
import { DiskStorage, type RaftStorage, type SaveOptions } from '../../src/raft/runtime/storage.js';
import { PeerTransport } from '../../src/raft/runtime/transport.js';
import { eventually } from '../helpers/wait.js';
import { RecordingMetrics } from './helpers.js';

const HEARTBEAT_MS = 20;
const ELECTION_MS = 200;

interface SaveCall {
  readonly entries: number;
  readonly commit: number | undefined;
  readonly sync: boolean;
}

/** DiskStorage that records every save and holds the ones a test picks until it releases them. */
class GatedStorage implements RaftStorage {
  readonly saves: SaveCall[] = [];
  private hold: ((call: SaveCall) => boolean) | null = null;
  private readonly held: Array<() => void> = [];

  constructor(private readonly inner: DiskStorage) {}

  get identity() {
    return this.inner.identity;
  }

  get heldCount(): number {
    return this.held.length;
  }

  initialState() {
    return this.inner.initialState();
  }

  holdWhere(predicate: (call: SaveCall) => boolean): void {
    this.hold = predicate;
  }

  release(): void {
    this.hold = null;
    for (const run of this.held.splice(0)) run();
  }

  async save(hardState: HardState | undefined, entries: readonly Entry[], options?: SaveOptions): Promise<void> {
    const call: SaveCall = { entries: entries.length, commit: hardState?.commit, sync: options?.sync !== false };
    this.saves.push(call);
    if (this.hold?.(call) === true) {
      await new Promise<void>((resolve) => this.held.push(resolve));
    }
    await this.inner.save(hardState, entries, options);
  }

  saveSnapshot(snapshot: Snapshot, hardState?: HardState, entries?: readonly Entry[]): Promise<void> {
    return this.inner.saveSnapshot(snapshot, hardState, entries);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Records the data of every normal entry applied, and the membership addresses conf changes carry. */
class RecordingApplier implements RaftApplier {
  readonly applied: string[] = [];
  private readonly addresses = new Map<string, string>();

  restoreSnapshot(): void {}
  applyEntry(entry: Entry): void {
    if (entry.data !== '') this.applied.push(entry.data);
  }
  applyConfChange(_entry: Entry, change: { nodeId: string; address?: string }): void {
    if (change.address !== undefined) this.addresses.set(change.nodeId, change.address);
  }
  snapshotData(): string {
    return '{}';
  }
  memberAddress(id: string): string | null {
    return this.addresses.get(id) ?? null;
  }
}

interface Started {
  readonly node: RaftNode;
  readonly storage: GatedStorage;
  readonly applier: RecordingApplier;
  /** Every message the node handed its transport, in order. */
  readonly sent: Message[];
}

/** Whether `m` carries a normal entry with this data. */
function carries(m: Message, data: string): boolean {
  return (m.entries ?? []).some((entry) => entry.data === data);
}

describe('Raft node Ready order', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  async function start(id: string, peers: Record<string, string>, joining = false): Promise<Started> {
    const dir = await mkdtemp(join(tmpdir(), `balancer-ready-order-${id}-`));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const applier = new RecordingApplier();
    const sent: Message[] = [];
    let storage: GatedStorage | null = null;
    const node = await RaftNode.start({
      nodeId: id,
      listen: '127.0.0.1:0',
      peers,
      secret: 'ready-order-secret',
      dataDir: dir,
      electionTimeoutMs: ELECTION_MS,
      heartbeatIntervalMs: HEARTBEAT_MS,
      ...(joining ? { join: true } : {}),
      applier,
      logger: silentLogger,
      metrics: new RecordingMetrics(),
      openStorage: async (path, nodeId, logger, options) => {
        storage = new GatedStorage(await DiskStorage.open(path, nodeId, logger, options));
        return storage;
      },
      transport: (options) => {
        const transport = new PeerTransport(options);
        const send = transport.send.bind(transport);
        transport.send = (messages) => {
          sent.push(...messages);
          send(messages);
        };
        return transport;
      },
    });
    cleanups.push(async () => {
      storage?.release();
      await node.stop();
    });
    return { node, storage: storage!, applier, sent };
  }

  /** No event says when another process's message arrived: poll, bounded. */
  const until = (check: () => boolean, what: string): Promise<boolean> => eventually(check, what, 5000, 5);

  /** Two voters that agree on a leader, and a first entry the follower applied (so both ends are warm). */
  async function twoVotersWarmedUp(): Promise<{ leader: Started; follower: Started }> {
    const a = await start('n1', { n1: '127.0.0.1:0', n2: '127.0.0.1:1' });
    const b = await start('n2', { n1: `127.0.0.1:${a.node.port}`, n2: '127.0.0.1:0' });
    a.node.setConfiguredPeers({ n1: '127.0.0.1:0', n2: `127.0.0.1:${b.node.port}` });
    await until(() => a.node.leaderId !== null && a.node.leaderId === b.node.leaderId, 'a leader both agree on');
    const [leader, follower] = a.node.leaderId === 'n1' ? [a, b] : [b, a];
    leader.node.propose('warm-up', 'r0');
    await until(() => follower.applier.applied.includes('warm-up'), 'the follower to apply the warm-up entry');
    return { leader, follower };
  }

  it('a learner applies entries the voters committed while its own copy is still being written, and acknowledges them only once written', async () => {
    const leader = await start('n1', { n1: '127.0.0.1:0' });
    await until(() => leader.node.leaderId === 'n1', 'n1 to lead');
    const learner = await start('l1', { n1: `127.0.0.1:${leader.node.port}` }, true);
    leader.node.proposeConfChange({ type: 'add-learner', nodeId: 'l1', address: `127.0.0.1:${learner.node.port}` });
    await until(() => learner.node.status().confState.learners.includes('l1'), 'l1 to apply its own membership');
    leader.node.propose('first', 'r1');
    await until(() => learner.applier.applied.includes('first'), 'l1 to apply the first entry');
    const matched = (): number => leader.node.status().progress?.['l1']?.match ?? 0;
    await until(() => matched() >= learner.node.applied, 'the leader to hear l1 acknowledge the first entry');

    // Hold the learner's next write of entries: the fsync of its copy has not returned.
    learner.storage.holdWhere((call) => call.entries > 0);
    const matchBefore = matched();
    leader.node.propose('second', 'r2');
    await until(() => learner.storage.heldCount === 1, "l1's write of the second entry");
    await until(() => learner.applier.applied.includes('second'), 'l1 to apply the second entry while its write is held');
    // Its acknowledgement waits for the disk: the leader still has l1 where it was.
    expect(matched()).toBe(matchBefore);

    learner.storage.release();
    await until(() => matched() > matchBefore, 'the leader to hear l1 acknowledge the second entry once written');
  });

  it('a leader tells a follower of a commit and applies it without waiting for the commit index to be written, which is not fsynced', async () => {
    const { leader, follower } = await twoVotersWarmedUp();

    // Hold every write on the leader that carries no entries: the commit index it is about to learn.
    leader.storage.holdWhere((call) => call.entries === 0);
    const savesBefore = leader.storage.saves.length;
    leader.node.propose('change', 'r1');
    await until(() => leader.applier.applied.includes('change'), 'the leader to apply the change');
    await until(() => follower.applier.applied.includes('change'), 'the follower to apply the change');
    const commitWrites = leader.storage.saves.slice(savesBefore).filter((call) => call.entries === 0 && call.commit !== undefined);
    expect(commitWrites.length).toBeGreaterThan(0);
    expect(commitWrites.every((call) => !call.sync)).toBe(true);
    // The entry itself was synced before it was sent.
    expect(leader.storage.saves.slice(savesBefore).filter((call) => call.entries > 0).every((call) => call.sync)).toBe(true);
    leader.storage.release();
  });

  it('a leader sends its appends while its own copy is being written, and nothing acts on their commit until it is written', async () => {
    const { leader, follower } = await twoVotersWarmedUp();

    // Hold the leader's next write of entries: its own copy of the change is not on disk yet.
    leader.storage.holdWhere((call) => call.entries > 0);
    const followerSaves = follower.storage.saves.length;
    leader.node.propose('change', 'r1');
    await until(() => leader.storage.heldCount === 1, "the leader's write of the change");
    // Its append left before the write (the send comes first, in the same turn).
    expect(leader.sent.some((m) => m.type === 'MsgApp' && m.to === follower.node.id && carries(m, 'change'))).toBe(true);
    await until(() => follower.storage.saves.slice(followerSaves).some((call) => call.entries > 0), 'the follower to write the change');
    const index = leader.node.basicStatus().lastIndex;
    await until(() => (leader.node.status().progress?.[follower.node.id]?.match ?? 0) >= index, 'the leader to hear the follower acknowledge it');
    // Two of two copies are acknowledged or counted, but the leader's is not written: nobody applies it, nobody hears of it.
    expect(leader.applier.applied).not.toContain('change');
    expect(follower.applier.applied).not.toContain('change');
    expect(follower.node.basicStatus().commit).toBeLessThan(index);
    expect(leader.sent.some((m) => (m.commit ?? 0) >= index)).toBe(false);
    leader.storage.release();
    await until(() => leader.applier.applied.includes('change') && follower.applier.applied.includes('change'), 'both to apply the change once written');
  });

  it("a lone voter's learners hear of its entry only once the voter wrote it: the voter alone commits it", async () => {
    const leader = await start('n1', { n1: '127.0.0.1:0' });
    await until(() => leader.node.leaderId === 'n1', 'n1 to lead');
    const learner = await start('l1', { n1: `127.0.0.1:${leader.node.port}` }, true);
    leader.node.proposeConfChange({ type: 'add-learner', nodeId: 'l1', address: `127.0.0.1:${learner.node.port}` });
    await until(() => learner.node.status().confState.learners.includes('l1'), 'l1 to apply its own membership');
    leader.node.propose('first', 'r1');
    await until(() => learner.applier.applied.includes('first'), 'l1 to apply the first entry');

    leader.storage.holdWhere((call) => call.entries > 0);
    leader.node.propose('second', 'r2');
    await until(() => leader.storage.heldCount === 1, "n1's write of the second entry");
    // Committed in memory the moment it was appended, but its only copy is not written: not sent, not applied.
    expect(leader.sent.some((m) => carries(m, 'second'))).toBe(false);
    expect(leader.applier.applied).not.toContain('second');
    leader.storage.release();
    await until(() => learner.applier.applied.includes('second'), 'l1 to apply the second entry once n1 wrote it');
  });

  it('a lone voter applies its own entry only once it is written: nobody else holds it', async () => {
    const leader = await start('n1', { n1: '127.0.0.1:0' });
    await until(() => leader.node.leaderId === 'n1', 'n1 to lead');
    leader.node.propose('first', 'r1');
    await until(() => leader.applier.applied.includes('first'), 'n1 to apply the first entry');

    leader.storage.holdWhere((call) => call.entries > 0);
    leader.node.propose('second', 'r2');
    await until(() => leader.storage.heldCount === 1, "n1's write of the second entry");
    // Committed the moment it was appended (a quorum of one), but not applied: applying comes after the write, in the
    // same Ready, so had it come first it would have happened already.
    expect(leader.applier.applied).not.toContain('second');
    leader.storage.release();
    await until(() => leader.applier.applied.includes('second'), 'n1 to apply the second entry once written');
  });
});
