// Fail-stop: a broken Raft invariant found while handling a peer message stops the node's part in Raft, not its data plane.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { ClusterStore } from '../../src/cluster/store.js';
import { isBalancerError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log.js';
import type { Message } from '../../src/raft/core/types.js';
import { RaftNode, type RaftNodeEvent } from '../../src/raft/runtime/node.js';
import { PeerTransport } from '../../src/raft/runtime/transport.js';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { IGNORING_APPLIER, Inbox, RecordingMetrics } from '../raft-runtime/helpers.js';
import { AppCluster } from '../helpers/app-cluster.js';
import { eventually } from '../helpers/wait.js';

const SECRET = 'fail-stop-secret';

/**
 * A MsgApp a broken leader could send: it matches this node's log at `after`, then claims an entry far past it and a
 * commit index one beyond, which makes the core find its commit index beyond its last entry (a LogInvariantError).
 */
function brokenAppend(from: string, to: string, term: number, after: number, afterTerm: number): Message {
  return {
    type: 'MsgApp',
    from,
    to,
    term,
    index: after,
    logTerm: afterTerm,
    commit: after + 1,
    entries: [{ index: after + 5, term, type: 'normal', data: 'out of place' }],
  };
}

describe('a RaftNode handed a message that breaks its log', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });

  it('stops taking part in Raft (no ticks, no answers, no proposals), sets the metric and says what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'balancer-failstop-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logger = memoryLogger('info');
    const metrics = new RecordingMetrics();
    // n1 is played by a bare transport that sends what a broken (or byzantine) leader would.
    const fromN2 = new Inbox<Message>();
    const fakeMetrics = new RecordingMetrics();
    const fake = new PeerTransport({ nodeId: 'n1', listen: '127.0.0.1:0', peers: {}, secret: SECRET, logger, metrics: fakeMetrics, onMessage: fromN2.push });
    const fakePort = (await fake.start()).port;
    cleanups.push(() => fake.stop());

    const node = await RaftNode.start({
      nodeId: 'n2',
      listen: '127.0.0.1:0',
      // Bootstrapping commits the three membership entries at term 1.
      peers: { n1: `127.0.0.1:${fakePort}`, n2: '127.0.0.1:0', n3: '127.0.0.1:1' },
      secret: SECRET,
      dataDir: dir,
      electionTimeoutMs: 60_000,
      heartbeatIntervalMs: 20,
      applier: IGNORING_APPLIER,
      logger,
      metrics,
    });
    cleanups.push(() => node.stop());
    const events: RaftNodeEvent[] = [];
    node.on((event) => events.push(event));
    fake.updatePeers({ n2: `127.0.0.1:${node.port}` });
    await metrics.until(() => node.basicStatus().commit === 3, 5000, 'bootstrap entries committed');

    // A heartbeat is answered: the node takes part in Raft.
    fake.send([{ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 2, commit: 3 }]);
    await fromN2.until(() => fromN2.items.some((m) => m.type === 'MsgHeartbeatResp'), 5000, 'heartbeat answered');

    fake.send([brokenAppend('n1', 'n2', 2, 3, 1)]);
    await metrics.until(() => metrics.failed, 5000, 'balancer_raft_failed set');
    expect(node.failed?.kind).toBe('invariant');
    expect(events.filter((e) => e.type === 'failed')).toHaveLength(1);
    const line = logger.lines.find((l) => l['level'] === 'error' && String(l['msg']).startsWith('raft node stopped'));
    expect(line, JSON.stringify(logger.lines.slice(-5))).toBeDefined();
    expect(String(line!['msg'])).toMatch(/data plane keeps serving/);
    expect(String(line!['msg'])).toMatch(/balancer cluster remove n2.*cluster\.join: true.*balancer cluster add n2/);
    expect(line!['failure']).toBe('invariant');
    // The transport no longer swallows the error as a log line while the node carries on.
    expect(logger.lines.some((l) => l['msg'] === 'raft message handler threw')).toBe(false);

    // Nothing more comes out of it: its peer listener is closed (so no vote request reaches it), its ticker is
    // stopped (so no campaign), and a message handed to it directly changes nothing.
    const before = fromN2.items.length;
    const term = node.basicStatus().term;
    fake.send([{ type: 'MsgVote', from: 'n1', to: 'n2', term: 9, index: 100, logTerm: 9 }]);
    await fakeMetrics.until(() => fakeMetrics.reachable.get('n2') === false, 5000, 'the failed node unreachable');
    expect((node as unknown as { tickTimer: unknown }).tickTimer).toBeNull();
    (node as unknown as { onPeerMessage(m: Message): void }).onPeerMessage({ type: 'MsgVote', from: 'n1', to: 'n2', term: 9, index: 100, logTerm: 9 });
    expect(node.basicStatus()).toMatchObject({ term, vote: node.basicStatus().vote });
    expect(node.basicStatus().vote).not.toBe('n1');
    expect(fromN2.items.length).toBe(before);
    let refusal: unknown;
    try {
      node.propose('{}', 'r1');
    } catch (error) {
      refusal = error;
    }
    expect(isBalancerError(refusal, 'RAFT_FAILED')).toBe(true);
  });
});

describe('an App whose Raft node failed', () => {
  const TOKEN = 'fail-stop-token';
  const IDS = ['f1', 'f2', 'f3'];
  let backend: TestBackend;
  let cluster: AppCluster;
  let apps: ReadonlyMap<string, App>;

  beforeAll(async () => {
    backend = await startBackend('served');
    cluster = await AppCluster.start({
      ids: IDS,
      token: TOKEN,
      secret: SECRET,
      replicated: ['pools:', '  web:', '    backends:', `      - { url: ${backend.url}, id: only }`],
    });
    apps = cluster.apps;
  });

  afterAll(async () => {
    await cluster.stop();
    await backend.close();
  });

  const admin = (id: string, path: string, init: RequestInit = {}): Promise<Response> => cluster.admin(id, path, init);

  it('answers /readyz 503, sets balancer_raft_failed, keeps proxying, refuses writes at once; the others carry on', async () => {
    await eventually(async () => (await Promise.all(IDS.map((id) => admin(id, '/readyz')))).every((r) => r.status === 200), 'readyz on all', 10_000);
    const store = (id: string) => apps.get(id)!.store as ClusterStore;
    const leader = IDS.find((id) => store(id).cluster().role === 'leader')!;
    const victim = IDS.find((id) => id !== leader)!;
    const raft = store(victim).raft as unknown as { onPeerMessage(m: Message): void; memory: { lastIndex(): number; term(i: number): number } };
    const last = raft.memory.lastIndex();
    raft.onPeerMessage(brokenAppend(leader, victim, store(victim).cluster().term, last, raft.memory.term(last)));

    await eventually(async () => (await admin(victim, '/readyz')).status === 503, 'readyz 503 on the failed node', 5000);
    const metrics = await (await fetch(`http://127.0.0.1:${apps.get(victim)!.addresses.admin.port}/metrics`)).text();
    expect(metrics).toMatch(/^balancer_raft_failed 1$/m);
    const status = (await (await admin(victim, '/api/v1/cluster')).json()) as { failure?: { kind: string; advice: string } };
    expect(status.failure?.kind).toBe('invariant');
    expect(status.failure?.advice).toMatch(/balancer cluster remove/);

    // The data plane keeps serving its last config.
    const proxied = await fetch(`http://127.0.0.1:${apps.get(victim)!.addresses.proxy.port}/`);
    expect(proxied.status).toBe(200);
    expect(await proxied.text()).toContain('"backend":"served"');

    // A write sent to it fails at once with a retryable 503 naming the fail-stop, not a PROPOSAL_TIMEOUT.
    const refused = await admin(victim, '/api/v1/pools/web/backends', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'http://127.0.0.1:9', id: 'refused' }),
    });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('RAFT_FAILED');

    // The other two still have a quorum.
    const accepted = await admin(leader, '/api/v1/pools/web/backends', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'http://127.0.0.1:9', id: 'accepted' }),
    });
    expect(accepted.status).toBe(201);
  });
});
