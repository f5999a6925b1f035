// Raft peer traffic over TCP: authenticated sessions, a persistent outbound stream and bounded queue per peer, snapshot connections.

/*
 * Each node dials the peers it sends to and sends only on its own outbound connections; inbound connections
 * carry the peer's messages to us. That keeps each connection one-way (plus handshake and snapshot acks),
 * so the two directions never contend and a reconnect on one side needs no coordination. A learner sends
 * only answers to the leader, which is a voter, so a learner dials the voters and never another learner:
 * with V voters and L learners that is V(V-1) + 2VL connections instead of (V+L)(V+L-1). Every member is
 * still accepted inbound. An authenticated stream arriving from a peer whose link waits out a redial
 * back-off redials it at once: the peer is up now (a learner the leader just added hears from it first).
 *
 * The handshake and the identity checks are in peer-connection.ts; the per-peer queue and redial in peer-link.ts.
 *
 * Snapshots (MsgSnap) go on a connection of their own, one per snapshot: a multi-megabyte frame never
 * sits in front of heartbeats on the stream connection. The receiver answers with an ack frame once
 * the message was handed to onMessage, which is what onSnapshotStatus("finish") reports.
 *
 * Anything that is not a valid frame for this cluster (an HTTP request, garbage, a bad MAC, another
 * cluster, an unknown peer, an oversized frame) is counted, logged at most once per interval per
 * reason, and answered by closing the connection. Nothing else is served on this port.
 */

import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { BalancerError } from '../../errors.js';
import { splitHostPort, type HostPort } from '../../net-address.js';
import { systemClock, systemRandom } from '../../clock.js';
import type { Clock, Random } from '../../clock.js';
import type { Logger } from '../../log.js';
import type { RaftMetrics } from '../../metrics/types.js';
import type { Message } from '../core/types.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameKind, handshakeKey } from './frame.js';
import type { Frame } from './frame.js';
import {
  ClientConnection,
  NO_IDENTITY,
  ServerConnection,
  type InboundHost,
  type PeerIdentity,
  type PeerRefusal,
  type PeerRejectReason,
  type TransportCore,
} from './peer-connection.js';
import { PeerLink, type LinkHost } from './peer-link.js';
import { MessageEncoder } from './peer-message.js';
import { RejectLog } from './reject-log.js';

export type SnapshotStatus = 'finish' | 'failure';

const TRANSPORT_DEFAULTS = Object.freeze({
  clusterId: 'balancer',
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  /** Messages waiting per peer; the oldest are dropped beyond it (Raft retransmits what matters). */
  queueLimit: 1024,
  backoffInitialMs: 50,
  /** Kept low so a restarted peer (or a new leader) is reached again within about a second. */
  backoffMaxMs: 1000,
  handshakeTimeoutMs: 3000,
  snapshotTimeoutMs: 60_000,
  rejectLogIntervalMs: 10_000,
});

export interface PeerTransportOptions {
  readonly nodeId: string;
  /** host:port to listen on; port 0 picks a free one (see start()). */
  readonly listen: string;
  /** Node id -> host:port. This node's own entry, if present, is ignored. */
  readonly peers: Readonly<Record<string, string>>;
  readonly secret: string;
  readonly clusterId?: string;
  readonly logger: Logger;
  readonly metrics: RaftMetrics;
  readonly onMessage: (message: Message) => void;
  /** A peer's connection failed or dropped; the driver reports it to the core (reportUnreachable). */
  readonly onUnreachable?: (peerId: string) => void;
  /** A MsgSnap was delivered (acknowledged by the peer) or failed; the driver calls reportSnapshot. */
  readonly onSnapshotStatus?: (peerId: string, status: SnapshotStatus) => void;
  /** This node's identity, sent in every handshake (read at each handshake: the cluster id is learned late). */
  readonly identity?: () => PeerIdentity;
  /** Judges a peer's identity; null accepts it. */
  readonly checkPeer?: (peerId: string, identity: PeerIdentity) => PeerRefusal | null;
  /** A peer proved who it is in an authenticated handshake and presented this identity. */
  readonly onPeerIdentity?: (peerId: string, identity: PeerIdentity) => void;
  /** A peer refused this node because the cluster removed it (it was down when that happened, so it could not apply it). */
  readonly onRemovedByPeer?: (peerId: string, detail: string) => void;
  readonly clock?: Clock;
  readonly random?: Random;
  readonly maxFrameBytes?: number;
  readonly queueLimit?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly snapshotTimeoutMs?: number;
  readonly rejectLogIntervalMs?: number;
}

export interface PeerStats {
  readonly address: string;
  readonly reachable: boolean;
  readonly queued: number;
  /** Messages dropped because the queue was full. */
  readonly dropped: number;
}

const MAX_ID_BYTES = 255;

/** Ids travel in one-byte-length header fields; refusing long ones here keeps send() from ever throwing. */
function checkId(kind: string, id: string): void {
  if (id.length === 0 || Buffer.byteLength(id, 'utf8') > MAX_ID_BYTES) {
    throw new BalancerError('CONFIG_INVALID', `${kind} "${id.slice(0, 40)}" must be 1 to ${MAX_ID_BYTES} bytes long`);
  }
}

function checkPeers(peers: Readonly<Record<string, string>>, self: string): void {
  for (const [id, address] of Object.entries(peers)) {
    checkId('peer id', id);
    if (id !== self) splitHostPort(address);
  }
}

const METRIC_REASON: Record<PeerRejectReason, Parameters<RaftMetrics['peerMessageRejected']>[0]> = {
  malformed: 'malformed',
  oversized: 'malformed',
  bad_version: 'malformed',
  wrong_cluster: 'wrong_cluster',
  bad_mac: 'bad_mac',
  replay: 'bad_mac',
  unknown_peer: 'unknown_peer',
  unknown_incarnation: 'unknown_incarnation',
  // A member the cluster removed: no longer one of its peers.
  removed: 'unknown_peer',
};

/** What the Raft driver needs of its peer transport; PeerTransport is the real one (the storage crash simulator has its own). */
export interface RaftTransport {
  start(): Promise<{ port: number }>;
  send(messages: readonly Message[]): void;
  /**
   * The members to accept and their addresses; `dial` names the ones this node sends to (default: all).
   * A learner passes the voters: it never sends to another learner.
   */
  updatePeers(peers: Readonly<Record<string, string>>, dial?: ReadonlySet<string>): void;
  stop(): Promise<void>;
  stats(): Record<string, PeerStats>;
}

export class PeerTransport implements RaftTransport, InboundHost, LinkHost {
  readonly nodeId: string;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly random: Random;
  private readonly core: TransportCore;
  private readonly options: PeerTransportOptions;
  private readonly links = new Map<string, PeerLink>();
  /** Every member, with the address to dial it at: this node accepts inbound streams from all of them (a superset of `links`). */
  private readonly known = new Map<string, string>();
  private readonly inbound = new Set<ServerConnection>();
  private readonly inboundStreams = new Map<string, ServerConnection>();
  private readonly snapshotConnections = new Set<ClientConnection>();
  private readonly rejectLog: RejectLog;
  private readonly queueLimit: number;
  private readonly snapshotTimeoutMs: number;
  private server: Server | null = null;
  private state: 'new' | 'running' | 'stopped' = 'new';

  constructor(options: PeerTransportOptions) {
    if (options.secret.length === 0) throw new BalancerError('CONFIG_INVALID', 'the cluster secret must not be empty');
    splitHostPort(options.listen);
    checkId('node id', options.nodeId);
    checkId('cluster id', options.clusterId ?? TRANSPORT_DEFAULTS.clusterId);
    checkPeers(options.peers, options.nodeId);
    this.options = options;
    this.nodeId = options.nodeId;
    this.random = options.random ?? systemRandom;
    this.backoffInitialMs = options.backoffInitialMs ?? TRANSPORT_DEFAULTS.backoffInitialMs;
    this.backoffMaxMs = options.backoffMaxMs ?? TRANSPORT_DEFAULTS.backoffMaxMs;
    this.queueLimit = options.queueLimit ?? TRANSPORT_DEFAULTS.queueLimit;
    this.snapshotTimeoutMs = options.snapshotTimeoutMs ?? TRANSPORT_DEFAULTS.snapshotTimeoutMs;
    const clock = options.clock ?? systemClock;
    const clusterId = options.clusterId ?? TRANSPORT_DEFAULTS.clusterId;
    const logger = options.logger;
    this.rejectLog = new RejectLog(logger, clock, options.rejectLogIntervalMs ?? TRANSPORT_DEFAULTS.rejectLogIntervalMs);
    this.core = {
      nodeId: options.nodeId,
      clusterId,
      secret: options.secret,
      handshakeKey: handshakeKey(options.secret, clusterId),
      messages: new MessageEncoder(),
      maxFrameBytes: options.maxFrameBytes ?? TRANSPORT_DEFAULTS.maxFrameBytes,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? TRANSPORT_DEFAULTS.handshakeTimeoutMs,
      clock,
      logger,
      rejected: (reason, detail, context) => {
        options.metrics.peerMessageRejected(METRIC_REASON[reason]);
        this.rejectLog.note(reason, detail, context);
      },
      refusedBy: (peerId, detail, removed) => {
        this.rejectLog.warn(`refused-by:${peerId}`, 'a raft peer refuses this node', { peer: peerId, detail });
        if (removed) options.onRemovedByPeer?.(peerId, detail);
      },
      identity: () => options.identity?.() ?? NO_IDENTITY,
      checkPeer: (peerId, identity) => options.checkPeer?.(peerId, identity) ?? null,
      peerIdentified: (peerId, identity) => options.onPeerIdentity?.(peerId, identity),
    };
    for (const [id, address] of Object.entries(options.peers)) {
      if (id === options.nodeId) continue;
      this.known.set(id, address);
      this.links.set(id, new PeerLink(this, this.core, id, address));
    }
  }

  /** Listens on `listen` and starts dialling every peer. Resolves with the bound port. */
  async start(): Promise<{ port: number }> {
    if (this.state !== 'new') throw new BalancerError('INTERNAL', 'a PeerTransport starts once');
    this.state = 'running';
    const { host, port } = splitHostPort(this.options.listen);
    const server = createServer((socket) => {
      if (this.state !== 'running') return void socket.destroy();
      this.inbound.add(new ServerConnection(this, this.core, socket));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.core.logger.error('raft peer listener failed', { error }));
    for (const link of this.links.values()) {
      this.options.metrics.setPeerReachable(link.peerId, false);
      link.start();
    }
    return { port: (server.address() as AddressInfo).port };
  }

  /**
   * Queues messages for their peers (also before start(): they go out once connected). Messages to
   * unknown peers, and anything after stop(), are dropped: Raft treats that as message loss.
   */
  send(messages: readonly Message[]): void {
    if (this.state === 'stopped') return;
    // Each peer's messages of the batch (a Ready's) are queued first and written together: one write(2) per peer.
    const touched: PeerLink[] = [];
    for (const message of messages) {
      const link = this.links.get(message.to) ?? this.dialOnDemand(message.to);
      if (link === undefined) {
        if (message.to !== this.nodeId) this.core.logger.debug('dropping a message to an unknown peer', { to: message.to, type: message.type });
        continue;
      }
      if (message.type === 'MsgSnap') this.sendSnapshot(link, message);
      else {
        link.enqueue(message, this.queueLimit);
        if (!touched.includes(link)) touched.push(link);
      }
    }
    for (const link of touched) link.flush();
  }

  /**
   * Applies a membership change: dials new peers, re-dials moved ones, drops removed ones and their connections.
   * Members in `dial` (all when it is absent) are dialled at once; any other member only when a message is first sent
   * to it, and accepted inbound meanwhile (a link dialled at once for a member that leaves `dial` goes). A Raft node
   * sends to learners only while it leads, and a learner only answers its leader: dialled on demand, a fleet of L
   * learners holds about 2L connections, not 2L per voter.
   */
  updatePeers(peers: Readonly<Record<string, string>>, dial?: ReadonlySet<string>): void {
    checkPeers(peers, this.nodeId);
    for (const id of [...this.known.keys()]) {
      if (peers[id] !== undefined && id !== this.nodeId) continue;
      this.known.delete(id);
      this.inboundStreams.get(id)?.close();
      for (const connection of this.inbound) if (connection.peer === id) connection.close();
    }
    for (const [id, link] of this.links) {
      if (peers[id] !== undefined && id !== this.nodeId && (dial === undefined || dial.has(id) || link.onDemand)) continue;
      link.stop();
      this.links.delete(id);
      this.options.metrics.forgetPeer(id);
    }
    for (const [id, address] of Object.entries(peers)) {
      if (id === this.nodeId) continue;
      this.known.set(id, address);
      const existing = this.links.get(id);
      if (existing !== undefined) {
        existing.setAddress(address);
        continue;
      }
      if (dial === undefined || dial.has(id)) this.addLink(id, address);
    }
  }

  /** The link to a member not dialled at once, made when the first message for it is sent; undefined for a stranger. */
  private dialOnDemand(id: string): PeerLink | undefined {
    const address = this.known.get(id);
    if (address === undefined || this.state === 'stopped') return undefined;
    const link = this.addLink(id, address);
    link.onDemand = true;
    return link;
  }

  private addLink(id: string, address: string): PeerLink {
    const link = new PeerLink(this, this.core, id, address);
    this.links.set(id, link);
    if (this.state === 'running') {
      this.options.metrics.setPeerReachable(id, false);
      link.start();
    }
    return link;
  }

  /** Closes the listener and every connection; pending messages are dropped. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    for (const link of this.links.values()) link.stop();
    for (const connection of [...this.snapshotConnections]) connection.close('transport stopped');
    for (const connection of [...this.inbound]) connection.close();
    const server = this.server;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  stats(): Record<string, PeerStats> {
    const out: Record<string, PeerStats> = {};
    for (const [id, link] of this.links) out[id] = { address: link.address, reachable: link.reachable, queued: link.queued, dropped: link.dropped };
    return out;
  }

  // ---- called by the connections ----

  /** @internal */
  knowsPeer(id: string): boolean {
    return this.known.has(id);
  }

  /** @internal A newer stream from a peer replaces its older one, which is most likely half-open. */
  adoptInbound(connection: ServerConnection): void {
    const peer = connection.peer;
    if (peer === null || !connection.isStream) return;
    const previous = this.inboundStreams.get(peer);
    this.inboundStreams.set(peer, connection);
    if (previous !== undefined && previous !== connection) previous.close();
    this.links.get(peer)?.redialNow();
  }

  /** @internal */
  forgetInbound(connection: ServerConnection): void {
    this.inbound.delete(connection);
    const peer = connection.peer;
    if (peer !== null && this.inboundStreams.get(peer) === connection) this.inboundStreams.delete(peer);
  }

  /** @internal */
  deliver(message: Message): void {
    if (this.state !== 'running') return;
    try {
      this.options.onMessage(message);
    } catch (error) {
      this.core.logger.error('raft message handler threw', { from: message.from, type: message.type, error });
    }
  }

  /** @internal */
  setReachable(link: PeerLink, reachable: boolean): void {
    if (link.reachable === reachable) return;
    link.reachable = reachable;
    this.options.metrics.setPeerReachable(link.peerId, reachable);
    this.core.logger.info(reachable ? 'raft peer reachable' : 'raft peer unreachable', { peer: link.peerId, address: link.address });
  }

  /** @internal */
  noteUnreachable(peerId: string): void {
    this.options.onUnreachable?.(peerId);
  }

  /** @internal */
  noteDropped(peerId: string): void {
    this.core.logger.debug('peer queue full, dropped the oldest message', { peer: peerId });
  }

  private sendSnapshot(link: PeerLink, message: Message): void {
    let target: HostPort;
    try {
      target = splitHostPort(link.address);
    } catch {
      this.options.onSnapshotStatus?.(link.peerId, 'failure');
      return;
    }
    let done = false;
    const finish = (status: SnapshotStatus, reason: string): void => {
      if (done) return;
      done = true;
      if (status === 'failure') this.core.logger.warn('sending a snapshot failed', { peer: link.peerId, reason });
      if (this.state === 'running') this.options.onSnapshotStatus?.(link.peerId, status);
    };
    const connection = new ClientConnection(this.core, link.peerId, target, 'snapshot', {
      onOpen: (open) => {
        open.setDeadline(this.snapshotTimeoutMs, 'snapshot not acknowledged in time');
        open.send(message);
      },
      onFrame: (open, frame: Frame) => {
        finish(frame.kind === FrameKind.ack ? 'finish' : 'failure', 'unexpected answer to a snapshot');
        open.close('snapshot done');
      },
      onClose: (closed, _wasOpen, reason) => {
        this.snapshotConnections.delete(closed);
        finish('failure', reason);
      },
    });
    this.snapshotConnections.add(connection);
  }
}
