// The Raft node's tick timer on a fake clock: a voter ticks every heartbeat interval; a node that may not campaign
// (a learner, or a node waiting to be added) takes the same ticks in batches, waking once per learner beat.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, seededRandom, type TimerHandle } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { RaftNode } from '../../src/raft/runtime/node.js';
import { IGNORING_APPLIER, RecordingMetrics } from './helpers.js';

const HEARTBEAT_MS = 100;
const ELECTION_MS = 1_000;

/** A fake clock that remembers the delay of every timer that fired. */
class FiringClock extends FakeClock {
  readonly fired: number[] = [];

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    return super.setTimeout(() => {
      this.fired.push(ms);
      fn();
    }, ms);
  }
}

describe('Raft tick timer', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  async function startNode(join_: boolean, peers: Record<string, string>, defer?: (run: () => void) => void) {
    const dir = await mkdtemp(join(tmpdir(), 'balancer-ticks-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const clock = new FiringClock();
    const metrics = new RecordingMetrics();
    const node = await RaftNode.start({
      nodeId: 'n1',
      listen: '127.0.0.1:0',
      peers,
      secret: 'ticks-test-secret',
      dataDir: dir,
      electionTimeoutMs: ELECTION_MS,
      heartbeatIntervalMs: HEARTBEAT_MS,
      ...(join_ ? { join: true } : {}),
      applier: IGNORING_APPLIER,
      logger: silentLogger,
      metrics,
      clock,
      random: seededRandom(3),
      ...(defer === undefined ? {} : { defer }),
    });
    cleanups.push(() => node.stop());
    return { node, clock, metrics };
  }

  it('a voter wakes for every tick', async () => {
    const { clock, metrics } = await startNode(false, { n1: '127.0.0.1:0' });
    clock.advance(2 * ELECTION_MS);
    expect(metrics.ticks).toBe(20);
    expect(clock.fired.filter((ms) => ms === HEARTBEAT_MS)).toHaveLength(20);
  });

  it('a node that may not campaign takes its ticks in batches, one wakeup per learner beat (half the election timeout)', async () => {
    // Started to join: no voter until a leader adds it, so it may not campaign.
    const { node, clock, metrics } = await startNode(true, { n2: '127.0.0.1:1', n1: '127.0.0.1:0' });
    clock.advance(2 * ELECTION_MS);
    expect(metrics.ticks).toBe(20);
    const batch = ELECTION_MS / 2;
    expect(clock.fired.filter((ms) => ms === batch)).toHaveLength(4);
    expect(clock.fired.filter((ms) => ms === HEARTBEAT_MS)).toHaveLength(0);
    // Its ticks reached the core: it never campaigned, and it is still no leader.
    expect(metrics.elections).toBe(0);
    expect(node.basicStatus().role).toBe('follower');
  });

  it('an input that leaves nothing to do (a tick of a node that may not campaign) schedules no Ready turn', async () => {
    let turns = 0;
    const { clock, metrics } = await startNode(true, { n2: '127.0.0.1:1', n1: '127.0.0.1:0' }, (run) => {
      turns++;
      setImmediate(run);
    });
    const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    await turn();
    const before = turns;
    // One learner beat at a time, each followed by a turn of the event loop (where a scheduled Ready turn would run).
    for (let beat = 0; beat < 4; beat++) {
      clock.advance(ELECTION_MS / 2);
      await turn();
    }
    expect(metrics.ticks).toBe(20);
    expect(turns - before).toBe(0);
  });
});
