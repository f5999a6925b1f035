// A node that lost entries it had acknowledged cannot be repaired by Raft: the driver stops (fail-stop) and says so, with the way out.

import { afterEach, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftNode } from '../../src/raft/runtime/node.js';
import type { Message } from '../../src/raft/core/types.js';
import { memoryLogger } from '../../src/log.js';
import { noopMetrics } from '../../src/metrics/types.js';
import { IGNORING_APPLIER } from '../raft-runtime/helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

it('stops once a leader heartbeat of the current term shows a commit index beyond this node\'s log', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'balancer-lostlog-'));
  const logger = memoryLogger('info');
  // A joining node starts with an empty log: any heartbeat committing past index 0 means entries it should hold.
  const node = await RaftNode.start({
    nodeId: 'n2',
    listen: '127.0.0.1:0',
    peers: { n1: '127.0.0.1:1', n2: '127.0.0.1:0' },
    secret: 'test-secret',
    dataDir: dir,
    electionTimeoutMs: 60_000,
    heartbeatIntervalMs: 10_000,
    join: true,
    applier: IGNORING_APPLIER,
    logger,
    metrics: noopMetrics.raft,
  });
  cleanups.push(async () => {
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const deliver = (message: Message) => (node as unknown as { onPeerMessage(m: Message): void }).onPeerMessage(message);
  const errors = () => logger.lines.filter((line) => line['level'] === 'error' && String(line['msg']).startsWith('raft node stopped'));

  deliver({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 3, commit: 0 });
  expect(errors()).toEqual([]);
  // A stale leader's heartbeat (an older term) proves nothing about this node's log.
  deliver({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 2, commit: 7 });
  expect(errors()).toEqual([]);
  expect(node.failed).toBeNull();
  deliver({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 3, commit: 7 });
  deliver({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 3, commit: 8 });
  expect(errors().length).toBe(1);
  expect(node.failed?.kind).toBe('lost-log');
  expect(node.failed?.error.message).toMatch(/up to 7 .* ends at 0/);
  expect(String(errors()[0]!['msg'])).toMatch(/lost log entries it had acknowledged.*cluster remove n2.*join: true/);
  expect(node.basicStatus().term).toBe(3);
});
