// A proposal that can no longer commit answers at once ('dropped'), and a write that timed out says it may still commit; a retry with its id applies once.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isBalancerError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import type { Entry, Message } from '../../src/raft/core/types.js';
import { RaftNode, type RaftNodeEvent } from '../../src/raft/runtime/node.js';
import { PeerTransport } from '../../src/raft/runtime/transport.js';
import { IGNORING_APPLIER, Inbox, RecordingMetrics } from '../raft-runtime/helpers.js';
import { backendIds, configText, TestCluster } from '../helpers/in-process-cluster.js';

const SECRET = 'proposal-drop-secret';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function normal(index: number, term: number, requestId?: string): Entry {
  return { index, term, type: 'normal', data: '{}', ...(requestId === undefined ? {} : { requestId }) };
}

/** n2 is a real RaftNode; n1 and n3 are bare transports playing leaders, so the test decides what each leader does. */
async function followerWithScriptedLeaders() {
  const dir = await mkdtemp(join(tmpdir(), 'balancer-drop-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const logger = memoryLogger('debug');
  const fakes = new Map<string, { transport: PeerTransport; inbox: Inbox<Message>; port: number }>();
  for (const id of ['n1', 'n3']) {
    const inbox = new Inbox<Message>();
    const transport = new PeerTransport({ nodeId: id, listen: '127.0.0.1:0', peers: {}, secret: SECRET, logger, metrics: new RecordingMetrics(), onMessage: inbox.push });
    const { port } = await transport.start();
    cleanups.push(() => transport.stop());
    fakes.set(id, { transport, inbox, port });
  }
  const port = (id: string) => fakes.get(id)!.port;
  const metrics = new RecordingMetrics();
  const node = await RaftNode.start({
    nodeId: 'n2',
    listen: '127.0.0.1:0',
    // Bootstrapping commits the three membership entries at term 1.
    peers: { n1: `127.0.0.1:${port('n1')}`, n2: '127.0.0.1:0', n3: `127.0.0.1:${port('n3')}` },
    secret: SECRET,
    dataDir: dir,
    electionTimeoutMs: 60_000,
    heartbeatIntervalMs: 20,
    applier: IGNORING_APPLIER,
    logger,
    metrics,
  });
  cleanups.push(() => node.stop());
  for (const fake of fakes.values()) fake.transport.updatePeers({ n2: `127.0.0.1:${node.port}` });
  const changed = new Inbox<RaftNodeEvent>();
  node.on(changed.push);
  const events = changed.items;
  const send = (from: string, message: Message) => fakes.get(from)!.transport.send([message]);
  const fromN2 = (id: string) => fakes.get(id)!.inbox;
  const dropped = () => events.filter((e): e is Extract<RaftNodeEvent, { type: 'dropped' }> => e.type === 'dropped');
  await changed.until(() => node.basicStatus().commit === 3, 5000, 'bootstrap committed');
  return { node, send, fromN2, dropped, changed, logger };
}

describe('proposals that can no longer commit', () => {
  it('answers at once when a new leader overwrites the entry, or cuts it off, and never for one that committed', async () => {
    const { node, send, fromN2, dropped, changed } = await followerWithScriptedLeaders();
    send('n1', { type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 2, commit: 3 });
    await changed.until(() => node.leaderId === 'n1', 5000, 'n1 leads');

    // r1 is forwarded to n1, which replicates it at index 4, then r2 at index 5.
    node.propose('{}', 'r1');
    await fromN2('n1').until(() => fromN2('n1').items.some((m) => m.type === 'MsgProp' && m.entries?.[0]?.requestId === 'r1'));
    node.propose('{}', 'r2');
    await fromN2('n1').until(() => fromN2('n1').items.some((m) => m.type === 'MsgProp' && m.entries?.[0]?.requestId === 'r2'));
    send('n1', { type: 'MsgApp', from: 'n1', to: 'n2', term: 2, index: 3, logTerm: 1, commit: 3, entries: [normal(4, 2, 'r1'), normal(5, 2, 'r2')] });
    await fromN2('n1').until(() => fromN2('n1').items.some((m) => m.type === 'MsgAppResp' && m.index === 5), 5000, 'r1 and r2 appended');
    expect(dropped()).toEqual([]);

    // n3 wins term 3 without them: its log replaces index 4 and ends there, so r2 at 5 goes too.
    send('n3', { type: 'MsgApp', from: 'n3', to: 'n2', term: 3, index: 3, logTerm: 1, commit: 3, entries: [{ index: 4, term: 3, type: 'empty', data: '' }] });
    await changed.until(() => dropped().length === 2, 5000, 'both proposals dropped');
    expect(dropped().map((e) => e.requestId)).toEqual(['r1', 'r2']);
    expect(dropped()[0]!.reason).toMatch(/index 4 was overwritten by the log of the leader of term 3/);
    expect(dropped()[1]!.reason).toMatch(/index 5 was cut off/);

    // r3 commits under n3: applied, never reported dropped, not even when the leader later changes.
    node.propose('{}', 'r3');
    await fromN2('n3').until(() => fromN2('n3').items.some((m) => m.type === 'MsgProp' && m.entries?.[0]?.requestId === 'r3'));
    send('n3', { type: 'MsgApp', from: 'n3', to: 'n2', term: 3, index: 4, logTerm: 3, commit: 5, entries: [normal(5, 3, 'r3')] });
    await changed.until(() => node.applied === 5, 5000, 'r3 applied');
    send('n1', { type: 'MsgApp', from: 'n1', to: 'n2', term: 4, index: 5, logTerm: 3, commit: 5, entries: [] });
    await changed.until(() => node.leaderId === 'n1', 5000, 'n1 leads again');
    expect(dropped().map((e) => e.requestId)).toEqual(['r1', 'r2']);
  });

  it('answers at once when the leader changes before a forwarded proposal reached this node\'s log', async () => {
    const { node, send, fromN2, dropped, changed } = await followerWithScriptedLeaders();
    send('n1', { type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 2, commit: 3 });
    await changed.until(() => node.leaderId === 'n1', 5000, 'n1 leads');
    node.propose('{}', 'lost');
    await fromN2('n1').until(() => fromN2('n1').items.some((m) => m.type === 'MsgProp'));
    // n1 never replicates it (it lost leadership, or dropped the forwarded proposal); n3 takes over.
    send('n3', { type: 'MsgHeartbeat', from: 'n3', to: 'n2', term: 3, commit: 3 });
    await changed.until(() => dropped().length === 1, 5000, 'the proposal dropped');
    expect(dropped()[0]).toMatchObject({ requestId: 'lost', reason: expect.stringMatching(/leader changed \(now n3, term 3\) before it reached this node's log/) });
  });
});

describe('a write the cluster could not confirm in time', () => {
  let cluster: TestCluster;
  afterEach(async () => {
    await cluster.close();
  });

  it('says it may still commit and names its request id; sending it again with that id applies it once', async () => {
    const IDS = ['n1', 'n2', 'n3'];
    cluster = new TestCluster(IDS);
    await cluster.init();
    await Promise.all(IDS.map((id, i) => cluster.start(id, { text: configText(id, 'web', [9100 + i]), writeTimeoutMs: 1500 })));
    const leader = await cluster.waitForLeader();
    await cluster.waitForVersion(1);
    const followers = IDS.filter((id) => id !== leader.id);
    for (const id of followers) await cluster.stop(id);

    const error = await leader.store.addBackend('web', { url: 'http://127.0.0.1:9300', id: 'once' }, { requestId: 'client-key-1' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isBalancerError(error, 'PROPOSAL_TIMEOUT') || isBalancerError(error, 'NO_LEADER'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/may still commit: sending the same request again with the header Idempotency-Key: client-key-1 applies it at most once/);

    // The quorum comes back; whether or not the first attempt committed, the retry with the same id applies it once.
    for (const id of followers) await cluster.start(id, { writeTimeoutMs: 1500 });
    await cluster.waitForLeader(10_000);
    const retried = await cluster.leader()!.store.addBackend('web', { url: 'http://127.0.0.1:9300', id: 'once' }, { requestId: 'client-key-1' });
    await cluster.waitForVersion(retried.version);
    for (const node of cluster.nodes.values()) expect(backendIds(node, 'web').filter((id) => id === 'once')).toHaveLength(1);
    // A different id for the same backend is a new request, refused because the backend exists.
    await expect(cluster.leader()!.store.addBackend('web', { url: 'http://127.0.0.1:9300', id: 'once' })).rejects.toMatchObject({ code: 'CONFLICT' });
  });
});
