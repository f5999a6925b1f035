import { request } from 'node:http';
import { Socket as NetSocket, connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { memoryLogger, silentLogger } from '../../src/log.js';
import type { Logger } from '../../src/log.js';
import type { Message } from '../../src/raft/core/types.js';
import { PeerTransport } from '../../src/raft/runtime/transport.js';
import type { PeerTransportOptions, SnapshotStatus } from '../../src/raft/runtime/transport.js';
import { Inbox, RecordingMetrics } from './helpers.js';
import { freePort } from '../helpers/ports.js';

interface Node {
  id: string;
  transport: PeerTransport;
  port: number;
  address: string;
  inbox: Inbox<Message>;
  metrics: RecordingMetrics;
  unreachable: Inbox<string>;
  snapshots: Inbox<{ peer: string; status: SnapshotStatus }>;
}

const running: PeerTransport[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((t) => t.stop()));
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

type Overrides = Partial<Omit<PeerTransportOptions, 'nodeId' | 'onMessage' | 'metrics'>> & { logger?: Logger };

async function startNode(id: string, overrides: Overrides = {}): Promise<Node> {
  const inbox = new Inbox<Message>();
  const metrics = new RecordingMetrics();
  const unreachable = new Inbox<string>();
  const snapshots = new Inbox<{ peer: string; status: SnapshotStatus }>();
  const transport = new PeerTransport({
    nodeId: id,
    listen: '127.0.0.1:0',
    peers: {},
    secret: 'correct horse battery staple',
    logger: silentLogger,
    backoffInitialMs: 20,
    backoffMaxMs: 100,
    ...overrides,
    metrics,
    onMessage: inbox.push,
    onUnreachable: unreachable.push,
    onSnapshotStatus: (peer, status) => snapshots.push({ peer, status }),
  });
  running.push(transport);
  const { port } = await transport.start();
  return { id, transport, port, address: `127.0.0.1:${port}`, inbox, metrics, unreachable, snapshots };
}

/** Starts nodes, then tells each about all the others (ports are only known once they listen). */
async function startCluster(ids: readonly string[], overrides: Overrides = {}): Promise<Node[]> {
  const nodes = await Promise.all(ids.map((id) => startNode(id, overrides)));
  const peers = Object.fromEntries(nodes.map((n) => [n.id, n.address]));
  for (const node of nodes) node.transport.updatePeers(peers);
  return nodes;
}

function heartbeat(from: string, to: string, commit = 0): Message {
  return { type: 'MsgHeartbeat', from, to, term: 1, commit };
}

function closeEvent(socket: Socket, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error('the server did not close the connection')), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function rawConnect(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  socket.on('error', () => {});
  // A paused socket never reads, so it would never notice the server closing it.
  socket.resume();
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return socket;
}

describe('PeerTransport', () => {
  it('delivers messages between three nodes, in order per peer', async () => {
    const [a, b, c] = await startCluster(['n1', 'n2', 'n3']);
    const toB = Array.from({ length: 100 }, (_, i) => heartbeat('n1', 'n2', i));
    const withEntries: Message = {
      type: 'MsgApp',
      from: 'n1',
      to: 'n3',
      term: 2,
      logTerm: 1,
      index: 4,
      commit: 4,
      entries: [{ index: 5, term: 2, type: 'normal', data: '{"op":"set"}', requestId: 'r-1' }],
    };
    a!.transport.send([...toB, withEntries]);
    b!.transport.send([{ type: 'MsgHeartbeatResp', from: 'n2', to: 'n1', term: 1 }]);
    c!.transport.send([{ type: 'MsgAppResp', from: 'n3', to: 'n1', term: 2, index: 5 }]);

    await b!.inbox.until(() => b!.inbox.items.length === 100, 5000, 'n2 to receive 100 messages');
    await c!.inbox.until(() => c!.inbox.items.length === 1);
    await a!.inbox.until(() => a!.inbox.items.length === 2);
    expect(b!.inbox.items).toEqual(toB);
    expect(c!.inbox.items).toEqual([withEntries]);
    expect(a!.inbox.items.map((m) => m.from).sort()).toEqual(['n2', 'n3']);
    for (const node of [a!, b!, c!]) expect(node.metrics.rejected).toEqual([]);
    await a!.metrics.until(() => a!.metrics.reachable.get('n2') === true && a!.metrics.reachable.get('n3') === true);
    // Messages addressed to the node itself or to strangers go nowhere and break nothing.
    a!.transport.send([heartbeat('n1', 'n1'), heartbeat('n1', 'n9')]);
  });

  it('writes a lone message to a peer at once and corks a batch into one write', async () => {
    const [a, b] = await startCluster(['n1', 'n2']);
    a!.transport.send([heartbeat('n1', 'n2', 1)]);
    await b!.inbox.until(() => b!.inbox.items.length === 1);
    const cork = vi.spyOn(NetSocket.prototype, 'cork');
    try {
      // A leader's fan-out gives each member one message per Ready: no cork, no batch write for it.
      a!.transport.send([heartbeat('n1', 'n2', 2)]);
      await b!.inbox.until(() => b!.inbox.items.length === 2);
      expect(cork).not.toHaveBeenCalled();
      a!.transport.send([heartbeat('n1', 'n2', 3), heartbeat('n1', 'n2', 4), heartbeat('n1', 'n2', 5)]);
      await b!.inbox.until(() => b!.inbox.items.length === 5);
      expect(cork).toHaveBeenCalledTimes(1);
    } finally {
      cork.mockRestore();
    }
    expect(b!.inbox.items.map((m) => m.commit)).toEqual([1, 2, 3, 4, 5]);
  });

  it('rejects, counts and logs a peer with the wrong secret', async () => {
    const logger = memoryLogger('warn');
    const good = await startNode('n2', { logger });
    const bad = await startNode('n1', { secret: 'not the secret' });
    good.transport.updatePeers({ n1: bad.address, n2: good.address });
    bad.transport.updatePeers({ n1: bad.address, n2: good.address });
    bad.transport.send([heartbeat('n1', 'n2')]);

    await good.metrics.until(() => good.metrics.count('bad_mac') >= 2, 5000, 'repeated bad_mac rejections');
    expect(good.inbox.items).toEqual([]);
    expect(bad.metrics.reachable.get('n2')).toBe(false);
    expect(bad.unreachable.items.length).toBeGreaterThan(0);
    const warnings = logger.lines.filter((line) => line['msg'] === 'rejected peer traffic');
    // Rate limited: one line per reason per interval however many attempts failed.
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ reason: 'bad_mac' });
  });

  it('rejects a node of another cluster even with the same secret', async () => {
    const ours = await startNode('n2');
    const theirs = await startNode('n1', { clusterId: 'other-cluster' });
    ours.transport.updatePeers({ n1: theirs.address });
    theirs.transport.updatePeers({ n2: ours.address });
    theirs.transport.send([heartbeat('n1', 'n2')]);
    await ours.metrics.until(() => ours.metrics.count('wrong_cluster') >= 1);
    expect(ours.inbox.items).toEqual([]);
  });

  it('rejects a node it does not know', async () => {
    const server = await startNode('n2');
    const stranger = await startNode('n7');
    server.transport.updatePeers({ n1: '127.0.0.1:1' });
    stranger.transport.updatePeers({ n2: server.address });
    stranger.transport.send([heartbeat('n7', 'n2')]);
    await server.metrics.until(() => server.metrics.count('unknown_peer') >= 1);
    expect(server.inbox.items).toEqual([]);
  });

  it('closes connections that send garbage or HTTP, and keeps serving peers', async () => {
    const [a, b] = await startCluster(['n1', 'n2']);
    const garbage = await rawConnect(b!.port);
    garbage.write(Buffer.from([0, 0, 0, 50, 9, 9, 9, 9, 1, 2, 3]));
    garbage.write(Buffer.alloc(60, 0xab));
    await closeEvent(garbage);

    const httpStatus = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port: b!.port, path: '/', method: 'GET' }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      req.end();
    });
    expect(httpStatus).toBe('ECONNRESET');
    expect(b!.metrics.count('malformed')).toBeGreaterThanOrEqual(2);

    a!.transport.send([heartbeat('n1', 'n2', 7)]);
    await b!.inbox.until(() => b!.inbox.items.some((m) => m.commit === 7));
  });

  it('drops a connection that never completes the handshake', async () => {
    const node = await startNode('n2', { handshakeTimeoutMs: 150 });
    const idle = await rawConnect(node.port);
    const started = Date.now();
    await closeEvent(idle);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
  });

  it('refuses frames replayed from another connection', async () => {
    const target = await startNode('n2');
    // A relay between n1 and n2 records what n1 sends, as an eavesdropper on the network would.
    const recorded: Buffer[] = [];
    const relay = createServer((client) => {
      const upstream = connect({ host: '127.0.0.1', port: target.port });
      sockets.push(client, upstream);
      client.on('data', (chunk: Buffer) => {
        recorded.push(chunk);
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
    });
    servers.push(relay);
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayAddress = `127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const sender = await startNode('n1');
    target.transport.updatePeers({ n1: sender.address });
    sender.transport.updatePeers({ n2: relayAddress });
    sender.transport.send([heartbeat('n1', 'n2', 42)]);
    await target.inbox.until(() => target.inbox.items.length === 1);

    const replay = await rawConnect(target.port);
    replay.write(Buffer.concat(recorded));
    await closeEvent(replay);
    expect(target.metrics.count('bad_mac')).toBe(1);
    expect(target.inbox.items).toHaveLength(1);
  });

  it('reconnects to a restarted peer and resumes delivery', async () => {
    const [a, b] = await startCluster(['n1', 'n2']);
    a!.transport.send([heartbeat('n1', 'n2', 1)]);
    await b!.inbox.until(() => b!.inbox.items.length === 1);

    await b!.transport.stop();
    await a!.unreachable.until(() => a!.unreachable.items.includes('n2'));
    expect(a!.metrics.reachable.get('n2')).toBe(false);
    a!.transport.send([heartbeat('n1', 'n2', 2)]);

    const restarted = await startNode('n2', { listen: b!.address });
    restarted.transport.updatePeers({ n1: a!.address });
    await a!.metrics.until(() => a!.metrics.reachable.get('n2') === true, 5000, 'n2 reachable again');
    a!.transport.send([heartbeat('n1', 'n2', 3)]);
    await restarted.inbox.until(() => restarted.inbox.items.some((m) => m.commit === 3));
    // The message queued while n2 was down arrives too, before the later one.
    expect(restarted.inbox.items.map((m) => m.commit)).toEqual([2, 3]);
  });

  it('bounds the queue of a peer that is down, keeping the newest messages', async () => {
    const port = await freePort();
    const sender = await startNode('n1', { queueLimit: 10 });
    sender.transport.updatePeers({ n2: `127.0.0.1:${port}` });
    sender.transport.send(Array.from({ length: 50 }, (_, i) => heartbeat('n1', 'n2', i)));
    expect(sender.transport.stats()['n2']).toMatchObject({ queued: 10, dropped: 40, reachable: false });

    const late = await startNode('n2', { listen: `127.0.0.1:${port}` });
    late.transport.updatePeers({ n1: sender.address });
    await late.inbox.until(() => late.inbox.items.length === 10);
    expect(late.inbox.items.map((m) => m.commit)).toEqual([40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
    expect(sender.transport.stats()['n2']).toMatchObject({ queued: 0, reachable: true });
  });

  it('streams a 5 MB snapshot on its own connection while heartbeats keep flowing', async () => {
    const [a, b] = await startCluster(['n1', 'n2']);
    a!.transport.send([heartbeat('n1', 'n2', 0)]);
    await b!.inbox.until(() => b!.inbox.items.length === 1);

    const data = Buffer.alloc(5 * 1024 * 1024, 'abcdefghij').toString('latin1');
    const snapshot: Message = {
      type: 'MsgSnap',
      from: 'n1',
      to: 'n2',
      term: 3,
      snapshot: { metadata: { index: 100, term: 3, confState: { voters: ['n1', 'n2'], learners: [] } }, data },
    };
    a!.transport.send([snapshot]);
    for (let i = 1; i <= 5; i++) a!.transport.send([heartbeat('n1', 'n2', i)]);

    await b!.inbox.until(() => b!.inbox.items.some((m) => m.type === 'MsgSnap'), 10_000, 'the snapshot');
    const types = b!.inbox.items.map((m) => m.type);
    // The heartbeats sent after the snapshot were not stuck behind it.
    expect(types.indexOf('MsgSnap')).toBeGreaterThan(types.lastIndexOf('MsgHeartbeat'));
    const received = b!.inbox.items.find((m) => m.type === 'MsgSnap')!;
    expect(received.snapshot!.data.length).toBe(data.length);
    expect(received.snapshot!.data === data).toBe(true);
    await a!.snapshots.until(() => a!.snapshots.items.length === 1);
    expect(a!.snapshots.items).toEqual([{ peer: 'n2', status: 'finish' }]);
  });

  it('reports a snapshot to an unreachable peer as failed', async () => {
    const sender = await startNode('n1');
    sender.transport.updatePeers({ n2: `127.0.0.1:${await freePort()}` });
    sender.transport.send([
      { type: 'MsgSnap', from: 'n1', to: 'n2', term: 1, snapshot: { metadata: { index: 1, term: 1, confState: { voters: [], learners: [] } }, data: '' } },
    ]);
    await sender.snapshots.until(() => sender.snapshots.items.length === 1);
    expect(sender.snapshots.items[0]).toEqual({ peer: 'n2', status: 'failure' });
  });

  it('rejects a frame larger than the limit', async () => {
    const [a, b] = await startCluster(['n1', 'n2'], { maxFrameBytes: 64 * 1024 });
    a!.transport.send([{ type: 'MsgApp', from: 'n1', to: 'n2', term: 1, entries: [{ index: 1, term: 1, type: 'normal', data: 'x'.repeat(100_000) }] }]);
    await b!.metrics.until(() => b!.metrics.count('malformed') >= 1);
    expect(b!.inbox.items).toEqual([]);
  });

  it('refuses ids that cannot be framed and addresses that cannot be dialled', () => {
    const base = { nodeId: 'n1', listen: '127.0.0.1:0', peers: {}, secret: 's', logger: silentLogger, metrics: new RecordingMetrics(), onMessage: () => {} };
    expect(() => new PeerTransport({ ...base, nodeId: 'x'.repeat(256) })).toThrow(/node id/);
    expect(() => new PeerTransport({ ...base, peers: { n2: 'nowhere' } })).toThrow(/host:port/);
    expect(() => new PeerTransport({ ...base, secret: '' })).toThrow(/secret/);
    const transport = new PeerTransport(base);
    expect(() => transport.updatePeers({ ['y'.repeat(300)]: '127.0.0.1:1' })).toThrow(/peer id/);
  });

  it('stops talking to a removed peer and starts talking to an added one', async () => {
    const [a, b, c] = await startCluster(['n1', 'n2', 'n3']);
    a!.transport.send([heartbeat('n1', 'n2')]);
    await b!.inbox.until(() => b!.inbox.items.length === 1);

    b!.transport.updatePeers({ n2: b!.address, n3: c!.address });
    await a!.unreachable.until(() => a!.unreachable.items.includes('n2'));
    await b!.metrics.until(() => b!.metrics.count('unknown_peer') >= 1, 5000, 'n1 refused by n2');
    a!.transport.send([heartbeat('n1', 'n2', 9)]);

    const d = await startNode('n4');
    d.transport.updatePeers({ n2: b!.address });
    b!.transport.updatePeers({ n2: b!.address, n3: c!.address, n4: d.address });
    b!.transport.send([heartbeat('n2', 'n4', 5)]);
    await d.inbox.until(() => d.inbox.items.length === 1);
    expect(b!.inbox.items.some((m) => m.commit === 9)).toBe(false);
    expect(Object.keys(b!.transport.stats()).sort()).toEqual(['n3', 'n4']);
  });

  it('dials the peers in dial at once and any other member only when a message is first sent to it', async () => {
    // n1 a voter that leads; n2 and n3 learners, which dial no one at once.
    const [voter, learner, other] = await Promise.all(['n1', 'n2', 'n3'].map((id) => startNode(id)));
    const peers = { n1: voter!.address, n2: learner!.address, n3: other!.address };
    voter!.transport.updatePeers(peers, new Set());
    learner!.transport.updatePeers(peers, new Set());
    other!.transport.updatePeers(peers, new Set());
    expect(Object.keys(voter!.transport.stats())).toEqual([]);
    expect(Object.keys(learner!.transport.stats())).toEqual([]);

    // The leader's first message to each learner dials it; each learner's answer dials the leader back.
    voter!.transport.send([heartbeat('n1', 'n2', 1), heartbeat('n1', 'n3', 1)]);
    await learner!.inbox.until(() => learner!.inbox.items.length === 1);
    await other!.inbox.until(() => other!.inbox.items.length === 1);
    learner!.transport.send([heartbeat('n2', 'n1', 2)]);
    await voter!.inbox.until(() => voter!.inbox.items.some((m) => m.from === 'n2' && m.commit === 2));
    expect(Object.keys(voter!.transport.stats()).sort()).toEqual(['n2', 'n3']);
    expect(Object.keys(learner!.transport.stats())).toEqual(['n1']);
    // The other learner never sent anything: it holds no outbound link, and n2 none to it.
    expect(Object.keys(other!.transport.stats())).toEqual([]);
    expect(learner!.metrics.reachable.has('n3')).toBe(false);

    // A message to a stranger is still dropped: only members are dialled on demand.
    learner!.transport.send([heartbeat('n2', 'n9', 3)]);
    expect(Object.keys(learner!.transport.stats())).toEqual(['n1']);

    // The link to n1 stays when n1 leaves the dial set; it goes only when n1 leaves the members.
    learner!.transport.updatePeers(peers, new Set());
    expect(Object.keys(learner!.transport.stats())).toEqual(['n1']);
    learner!.transport.updatePeers({ n2: learner!.address, n3: other!.address }, new Set());
    expect(Object.keys(learner!.transport.stats())).toEqual([]);
    // A link dialled at once goes when its peer leaves the dial set (a joining node that became a learner).
    other!.transport.updatePeers(peers, new Set(['n1']));
    expect(Object.keys(other!.transport.stats())).toEqual(['n1']);
    other!.transport.updatePeers(peers, new Set());
    expect(Object.keys(other!.transport.stats())).toEqual([]);
    expect(other!.metrics.count('unknown_peer')).toBe(0);
  });

  it('redials at once, without waiting out its back-off, when the peer dials it first', async () => {
    const port = await freePort();
    // A back-off far longer than the test: only the early redial can bring the link up in time.
    const early = await startNode('n1', { backoffInitialMs: 120_000, backoffMaxMs: 120_000 });
    early.transport.updatePeers({ n2: `127.0.0.1:${port}` });
    await early.unreachable.until(() => early.unreachable.items.includes('n2'));
    early.transport.send([heartbeat('n1', 'n2', 7)]);

    const late = await startNode('n2', { listen: `127.0.0.1:${port}` });
    late.transport.updatePeers({ n1: early.address });
    await late.inbox.until(() => late.inbox.items.some((m) => m.commit === 7), 10_000);
    expect(early.transport.stats()['n2']).toMatchObject({ reachable: true, queued: 0 });
  });
});

describe('PeerTransport identities', () => {
  const identity = (incarnation: string, clusterId: string | null = null) => () => ({ incarnation, clusterId });

  it('tells each side who the other is, from authenticated handshakes only', async () => {
    const seen = new Map<string, Array<{ peer: string; incarnation: string | null; clusterId: string | null }>>();
    const observer = (self: string) => (peer: string, id: { incarnation: string | null; clusterId: string | null }) =>
      seen.set(self, [...(seen.get(self) ?? []), { peer, ...id }]);
    const a = await startNode('n1', { identity: identity('aaaaaaaa11111111', 'c0ffee00c0ffee00'), onPeerIdentity: observer('n1') });
    const b = await startNode('n2', { identity: identity('bbbbbbbb22222222'), onPeerIdentity: observer('n2') });
    a.transport.updatePeers({ n2: b.address });
    b.transport.updatePeers({ n1: a.address });
    a.transport.send([heartbeat('n1', 'n2')]);
    b.transport.send([heartbeat('n2', 'n1')]);
    await b.inbox.until(() => b.inbox.items.length === 1);
    await a.inbox.until(() => a.inbox.items.length === 1);
    expect(seen.get('n1')).toContainEqual({ peer: 'n2', incarnation: 'bbbbbbbb22222222', clusterId: null });
    expect(seen.get('n2')).toContainEqual({ peer: 'n1', incarnation: 'aaaaaaaa11111111', clusterId: 'c0ffee00c0ffee00' });
  });

  it('refuses a member presenting another incarnation: counted, logged with the way back, and told to the refused node', async () => {
    const serverLog = memoryLogger('warn');
    const clientLog = memoryLogger('warn');
    const detail = 'node "n1" presents data dir incarnation 99999999, but the cluster knows "n1" as incarnation 11111111: remove and add it again';
    const server = await startNode('n2', {
      logger: serverLog,
      identity: identity('22222222'),
      checkPeer: (peer, presented) => (peer === 'n1' && presented.incarnation !== '11111111' ? { reason: 'unknown_incarnation', detail } : null),
    });
    const wiped = await startNode('n1', { logger: clientLog, identity: identity('99999999') });
    server.transport.updatePeers({ n1: '127.0.0.1:1' });
    wiped.transport.updatePeers({ n2: server.address });
    wiped.transport.send([heartbeat('n1', 'n2')]);
    await server.metrics.until(() => server.metrics.count('unknown_incarnation') >= 2, 5000, 'repeated refusals');
    expect(server.inbox.items).toEqual([]);
    expect(serverLog.lines.find((line) => line['msg'] === 'rejected peer traffic')).toMatchObject({ reason: 'unknown_incarnation', detail, peer: 'n1' });
    // The refused node hears why (once per interval), so its own log says what to do.
    expect(clientLog.lines.filter((line) => line['msg'] === 'a raft peer refuses this node')).toEqual([expect.objectContaining({ peer: 'n2', detail })]);
    expect(wiped.metrics.reachable.get('n2')).toBe(false);
  });

  it('refuses a server whose identity its own checks reject', async () => {
    const server = await startNode('n2', { identity: identity('22222222', 'dddddddddddddddd') });
    const client = await startNode('n1', {
      identity: identity('11111111', 'eeeeeeeeeeeeeeee'),
      checkPeer: (_peer, presented) =>
        presented.clusterId !== null && presented.clusterId !== 'eeeeeeeeeeeeeeee' ? { reason: 'wrong_cluster', detail: 'another cluster' } : null,
    });
    server.transport.updatePeers({ n1: client.address });
    client.transport.updatePeers({ n2: server.address });
    client.transport.send([heartbeat('n1', 'n2')]);
    await client.metrics.until(() => client.metrics.count('wrong_cluster') >= 1);
    expect(server.inbox.items).toEqual([]);
  });

  it('drops what it queued for a peer when the peer comes back as another incarnation', async () => {
    const sender = await startNode('n1', { identity: identity('11111111') });
    const first = await startNode('n2', { identity: identity('22222222') });
    sender.transport.updatePeers({ n2: first.address });
    first.transport.updatePeers({ n1: sender.address });
    sender.transport.send([heartbeat('n1', 'n2', 1)]);
    await first.inbox.until(() => first.inbox.items.length === 1);

    // n2 goes away; what is sent meanwhile queues for it.
    await first.transport.stop();
    await sender.metrics.until(() => sender.metrics.reachable.get('n2') === false);
    sender.transport.send([heartbeat('n1', 'n2', 2), heartbeat('n1', 'n2', 3)]);
    expect(sender.transport.stats()['n2']?.queued).toBe(2);

    // It comes back on the same address with a new data dir: the queued messages were meant for the old one.
    const second = await startNode('n2', { identity: identity('33333333'), listen: first.address });
    second.transport.updatePeers({ n1: sender.address });
    await sender.metrics.until(() => sender.metrics.reachable.get('n2') === true, 5000, 'reconnected');
    sender.transport.send([heartbeat('n1', 'n2', 4)]);
    await second.inbox.until(() => second.inbox.items.length >= 1);
    expect(second.inbox.items.map((m) => m.commit)).toEqual([4]);
  });

  it('keeps what it queued when the same incarnation comes back (a restart)', async () => {
    const sender = await startNode('n1', { identity: identity('11111111') });
    const first = await startNode('n2', { identity: identity('22222222') });
    sender.transport.updatePeers({ n2: first.address });
    first.transport.updatePeers({ n1: sender.address });
    sender.transport.send([heartbeat('n1', 'n2', 1)]);
    await first.inbox.until(() => first.inbox.items.length === 1);
    await first.transport.stop();
    await sender.metrics.until(() => sender.metrics.reachable.get('n2') === false);
    sender.transport.send([heartbeat('n1', 'n2', 2)]);
    const again = await startNode('n2', { identity: identity('22222222'), listen: first.address });
    again.transport.updatePeers({ n1: sender.address });
    await again.inbox.until(() => again.inbox.items.length >= 1);
    expect(again.inbox.items.map((m) => m.commit)).toEqual([2]);
  });

  it('rejects a hello whose identity fields are malformed', async () => {
    const server = await startNode('n2');
    const client = await startNode('n1', { identity: () => ({ incarnation: 'not hex!', clusterId: null }) });
    server.transport.updatePeers({ n1: client.address });
    client.transport.updatePeers({ n2: server.address });
    client.transport.send([heartbeat('n1', 'n2')]);
    await server.metrics.until(() => server.metrics.count('malformed') >= 1);
    expect(server.inbox.items).toEqual([]);
  });
});
