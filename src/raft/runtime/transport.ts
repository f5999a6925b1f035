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
 * Handshake (frames MACed with a key derived from the cluster secret, see frame.ts):
 *   client -> hello   {nonce: Nc, purpose: "stream" | "snapshot"}
 *   server -> welcome {clientNonce: Nc, serverNonce: Ns}
 *   client -> proof   (empty, seq 1, session key)
 * The welcome echoes Nc under the MAC, proving a live server that knows the secret. Every later frame
 * is MACed with per-direction keys derived from the secret, both ids and Nc+Ns, and carries a sequence
 * number; the proof frame shows the client holds the secret (a replayed hello cannot produce it), and
 * frames replayed from another connection (or within one) fail. Until the proof arrives nothing is
 * delivered and the connection is subject to the handshake timeout.
 *
 * Identity: hello and welcome also carry the sender's data dir identity, {incarnation, clusterId} (the
 * incarnation is made when the data dir is created; the cluster id once the cluster records it). Each
 * side hands the other's to `checkPeer`: a node of another cluster, or a member whose incarnation is not
 * the one the cluster recorded (its data dir was wiped or replaced), is refused, counted and logged. A
 * server that refuses a hello says why in the welcome (`refused`) before closing, so the refused node can
 * log it too. Identities reach `onPeerIdentity` only from authenticated sessions (after the proof on the
 * server side, from the MACed welcome on the client side). A stream that reconnects to another
 * incarnation of its peer drops the messages it had queued: they were meant for the old one.
 *
 * Snapshots (MsgSnap) go on a connection of their own, one per snapshot: a multi-megabyte frame never
 * sits in front of heartbeats on the stream connection. The receiver answers with an ack frame once
 * the message was handed to onMessage, which is what onSnapshotStatus("finish") reports.
 *
 * Anything that is not a valid frame for this cluster (an HTTP request, garbage, a bad MAC, another
 * cluster, an unknown peer, an oversized frame) is counted, logged at most once per interval per
 * reason, and answered by closing the connection. Nothing else is served on this port.
 */

import { randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { BalancerError, errorMessage } from '../../errors.js';
import { splitHostPort, type HostPort } from '../../net-address.js';
import { isPlainObject } from '../../json.js';
import { isCount, isEntry, isSnapshot, optional } from './record-shapes.js';
import { systemClock, systemRandom } from '../../clock.js';
import type { Clock, Random, TimerHandle } from '../../clock.js';
import type { Logger } from '../../log.js';
import type { RaftMetrics } from '../../metrics/types.js';
import type { Entry, Message, MessageType } from '../core/types.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameKind,
  FrameReader,
  MAX_HANDSHAKE_FRAME_BYTES,
  decodeFrame,
  encodeFrame,
  handshakeKey,
  sessionKeys,
} from './frame.js';
import type { Frame, FrameRejectReason, SessionKeys } from './frame.js';

export type PeerRejectReason = FrameRejectReason | 'unknown_peer' | 'unknown_incarnation' | 'removed';

/** What a peer says about its data dir in the handshake; null fields were not sent (an older node, or not known yet). */
export interface PeerIdentity {
  readonly incarnation: string | null;
  readonly clusterId: string | null;
}

/** Why a peer's identity is refused; `detail` is the whole sentence for logs (what happened and what to do). */
export interface PeerRefusal {
  readonly reason: 'wrong_cluster' | 'unknown_incarnation' | 'removed';
  readonly detail: string;
}
export type SnapshotStatus = 'finish' | 'failure';
type Purpose = 'stream' | 'snapshot';

export const TRANSPORT_DEFAULTS = Object.freeze({
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
  keepAliveMs: 5000,
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

// Local-only message types must never be accepted from the network: they would let a peer drive our node.
const NETWORK_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'MsgProp',
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgSnap',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgTransferLeader',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
]);
/** The message a payload holds, if it has the shape the core expects of a message from a peer. */
export function parsePeerMessage(payload: Buffer): Message | null {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (!isPlainObject(value)) return null;
  const m = value;
  const valid =
    typeof m['type'] === 'string' &&
    NETWORK_MESSAGE_TYPES.has(m['type'] as MessageType) &&
    typeof m['from'] === 'string' &&
    typeof m['to'] === 'string' &&
    isCount(m['term']) &&
    optional(m['logTerm'], isCount) &&
    optional(m['index'], isCount) &&
    optional(m['commit'], isCount) &&
    optional(m['rejectHint'], isCount) &&
    optional(m['reject'], (v) => typeof v === 'boolean') &&
    optional(m['context'], (v) => typeof v === 'string') &&
    optional(m['entries'], (v) => Array.isArray(v) && v.every(isEntry)) &&
    optional(m['snapshot'], isSnapshot);
  return valid ? (value as Message) : null;
}

function parseJsonObject(payload: Buffer): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    return isPlainObject(value) ? value : null;
  } catch {
    return null;
  }
}

const NONCE_PATTERN = /^[0-9a-f]{64}$/;
const newNonce = (): string => randomBytes(32).toString('hex');
const IDENTITY_PATTERN = /^[0-9a-f]{8,64}$/;

/** The identity fields of a hello or welcome body; undefined when they are present but malformed. */
function identityIn(body: Record<string, unknown>): PeerIdentity | undefined {
  const incarnation = body['incarnation'];
  const clusterId = body['clusterId'];
  const valid = (value: unknown): boolean => value === undefined || (typeof value === 'string' && IDENTITY_PATTERN.test(value));
  if (!valid(incarnation) || !valid(clusterId)) return undefined;
  return { incarnation: (incarnation as string | undefined) ?? null, clusterId: (clusterId as string | undefined) ?? null };
}

function identityFields(identity: PeerIdentity): Record<string, string> {
  return {
    ...(identity.incarnation === null ? {} : { incarnation: identity.incarnation }),
    ...(identity.clusterId === null ? {} : { clusterId: identity.clusterId }),
  };
}

const NO_IDENTITY: PeerIdentity = Object.freeze({ incarnation: null, clusterId: null });

/** What the connections need from their transport. */
interface TransportCore {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly secret: string;
  readonly handshakeKey: Buffer;
  readonly maxFrameBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  rejected(reason: PeerRejectReason, detail: string, context: Record<string, unknown>): void;
  /** A peer refused this node in its welcome; `removed` when it says the cluster removed this node. */
  refusedBy(peerId: string, detail: string, removed: boolean): void;
  identity(): PeerIdentity;
  checkPeer(peerId: string, identity: PeerIdentity): PeerRefusal | null;
  peerIdentified(peerId: string, identity: PeerIdentity): void;
}

interface ClientHooks {
  onOpen(connection: ClientConnection): void;
  /** An authenticated frame from the server (only snapshot connections expect one: the ack). */
  onFrame(connection: ClientConnection, frame: Frame): void;
  onClose(connection: ClientConnection, wasOpen: boolean, reason: string): void;
}

/** One dialled connection: handshake as the client, then authenticated frames to the server. */
class ClientConnection {
  readonly socket: Socket;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private readonly reader = new FrameReader(MAX_HANDSHAKE_FRAME_BYTES);
  private readonly nonce = newNonce();
  private keys: SessionKeys | null = null;
  private sendSeq = 1;
  private receiveSeq = 1;
  private timer: TimerHandle | null;
  /** What the server said about itself in the welcome. */
  peerIdentity: PeerIdentity = NO_IDENTITY;

  constructor(
    private readonly core: TransportCore,
    readonly peerId: string,
    address: HostPort,
    readonly purpose: Purpose,
    private readonly hooks: ClientHooks,
  ) {
    this.socket = connect({ host: address.host, port: address.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: TRANSPORT_DEFAULTS.keepAliveMs });
    this.timer = core.clock.setTimeout(() => this.close('handshake timed out'), core.handshakeTimeoutMs);
    this.socket.once('connect', () => {
      this.socket.write(
        encodeFrame(
          {
            kind: FrameKind.hello,
            seq: 0,
            clusterId: core.clusterId,
            from: core.nodeId,
            to: peerId,
            payload: Buffer.from(JSON.stringify({ nonce: this.nonce, purpose, ...identityFields(core.identity()) })),
          },
          core.handshakeKey,
        ),
      );
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (error) => this.close(errorMessage(error)));
    this.socket.on('close', () => this.close('connection closed'));
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Writes one message frame; false means the socket buffer is full and the caller should wait for 'drain'. */
  send(message: Message): boolean {
    const keys = this.keys;
    if (keys === null || this.state !== 'open') return false;
    const frame = encodeFrame(
      {
        kind: FrameKind.message,
        seq: this.sendSeq++,
        clusterId: this.core.clusterId,
        from: this.core.nodeId,
        to: this.peerId,
        payload: Buffer.from(JSON.stringify(message)),
      },
      keys.clientToServer,
    );
    return this.socket.write(frame);
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.clearTimer();
    this.socket.destroy();
    this.hooks.onClose(this, wasOpen, reason);
  }

  /** Arms a deadline while the connection is open (snapshot connections wait for their ack). */
  setDeadline(ms: number, reason: string): void {
    this.clearTimer();
    this.timer = this.core.clock.setTimeout(() => this.close(reason), ms);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.core.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private reject(reason: PeerRejectReason, detail: string): void {
    this.core.rejected(reason, detail, { peer: this.peerId, direction: 'outbound' });
    this.close(`rejected: ${detail}`);
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    // Each turn consumes a frame or ends the loop, so it is bounded by the frames in the buffer.
    while (this.state !== 'closed') {
      const next = this.reader.next();
      if (next === null) return;
      if (!Buffer.isBuffer(next)) return this.reject(next.reason, next.detail);
      if (this.keys === null) this.onWelcome(next);
      else this.onSessionFrame(next, this.keys);
    }
  }

  private onWelcome(raw: Buffer): void {
    const decoded = decodeFrame(raw, { key: this.core.handshakeKey, clusterId: this.core.clusterId, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES, expectedSeq: 0 });
    if (!decoded.ok) return this.reject(decoded.reason, decoded.detail);
    const { frame } = decoded;
    if (frame.kind !== FrameKind.welcome) return this.reject('malformed', 'expected a welcome frame');
    if (frame.from !== this.peerId || frame.to !== this.core.nodeId) {
      return this.reject('unknown_peer', `answered by "${frame.from}" for "${frame.to}" instead of "${this.peerId}"`);
    }
    const body = parseJsonObject(frame.payload);
    if (body === null || body['clientNonce'] !== this.nonce) return this.reject('malformed', 'welcome does not answer our nonce');
    const refused = body['refused'];
    if (typeof refused === 'string') {
      this.core.refusedBy(this.peerId, refused.slice(0, 1000), body['removed'] === true);
      return this.close(`refused by ${this.peerId}`);
    }
    const serverNonce = body['serverNonce'];
    const identity = identityIn(body);
    if (typeof serverNonce !== 'string' || !NONCE_PATTERN.test(serverNonce) || identity === undefined) {
      return this.reject('malformed', 'welcome without a valid nonce and identity');
    }
    const refusal = this.core.checkPeer(this.peerId, identity);
    if (refusal !== null) return this.reject(refusal.reason, refusal.detail);
    this.peerIdentity = identity;
    this.core.peerIdentified(this.peerId, identity);
    this.keys = sessionKeys(this.core.secret, this.core.clusterId, this.core.nodeId, this.peerId, this.nonce, serverNonce);
    this.socket.write(
      encodeFrame(
        { kind: FrameKind.proof, seq: this.sendSeq++, clusterId: this.core.clusterId, from: this.core.nodeId, to: this.peerId, payload: Buffer.alloc(0) },
        this.keys.clientToServer,
      ),
    );
    this.state = 'open';
    this.clearTimer();
    this.hooks.onOpen(this);
  }

  private onSessionFrame(raw: Buffer, keys: SessionKeys): void {
    const decoded = decodeFrame(raw, { key: keys.serverToClient, clusterId: this.core.clusterId, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES, expectedSeq: this.receiveSeq });
    if (!decoded.ok) return this.reject(decoded.reason, decoded.detail);
    this.receiveSeq++;
    this.hooks.onFrame(this, decoded.frame);
  }
}

/** The persistent stream to one peer: its queue, reconnects with backoff, and reachability. */
class PeerLink {
  private readonly queue: Message[] = [];
  private connection: ClientConnection | null = null;
  private waitingForDrain = false;
  private failures = 0;
  private retryTimer: TimerHandle | null = null;
  private stopped = false;
  /** The incarnation the last stream to this peer reached; queued messages were meant for it. */
  private incarnation: string | null = null;
  reachable = false;
  dropped = 0;

  constructor(
    private readonly transport: PeerTransport,
    private readonly core: TransportCore,
    readonly peerId: string,
    public address: string,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  start(): void {
    this.dial();
  }

  /** The peer just proved it is up (it dialled us): a link waiting out its back-off dials now. */
  redialNow(): void {
    if (this.stopped || this.retryTimer === null) return;
    this.core.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.failures = 0;
    this.dial();
  }

  enqueue(message: Message, limit: number): void {
    if (this.queue.length >= limit) {
      this.queue.shift();
      this.dropped++;
      this.transport.noteDropped(this.peerId);
    }
    this.queue.push(message);
    this.flush();
  }

  /** A new address takes effect by reconnecting; the queue is kept. */
  setAddress(address: string): void {
    if (address === this.address) return;
    this.address = address;
    this.failures = 0;
    if (this.connection !== null) this.connection.close('peer address changed');
    else if (this.retryTimer !== null) {
      this.core.clock.clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.dial();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== null) this.core.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connection?.close('transport stopped');
    this.queue.length = 0;
  }

  private flush(): void {
    const connection = this.connection;
    if (connection === null || !connection.isOpen || this.waitingForDrain) return;
    // A Ready's messages to one peer leave in one write(2) rather than one per frame.
    connection.socket.cork();
    try {
      // Bounded by the queue length; stops early when the socket asks us to wait.
      while (this.queue.length > 0) {
        const message = this.queue.shift()!;
        if (!connection.send(message)) {
          this.waitingForDrain = true;
          connection.socket.once('drain', () => {
            this.waitingForDrain = false;
            this.flush();
          });
          return;
        }
      }
    } finally {
      connection.socket.uncork();
    }
  }

  private dial(): void {
    if (this.stopped) return;
    this.retryTimer = null;
    let target: HostPort;
    try {
      target = splitHostPort(this.address);
    } catch (error) {
      this.core.logger.error('cannot dial peer: bad address', { peer: this.peerId, address: this.address, error });
      return;
    }
    this.connection = new ClientConnection(this.core, this.peerId, target, 'stream', {
      onOpen: (connection) => {
        this.failures = 0;
        const reached = connection.peerIdentity.incarnation;
        if (reached !== null && this.incarnation !== null && reached !== this.incarnation && this.queue.length > 0) {
          this.core.logger.info('raft peer came back with another data dir; dropping the messages queued for the old one', {
            peer: this.peerId,
            dropped: this.queue.length,
          });
          this.queue.length = 0;
        }
        if (reached !== null) this.incarnation = reached;
        this.transport.setReachable(this, true);
        this.flush();
      },
      onFrame: (connection) => connection.close('unexpected frame on a stream connection'),
      onClose: (connection, wasOpen, reason) => {
        if (this.connection !== connection) return;
        this.connection = null;
        this.waitingForDrain = false;
        if (this.stopped) return;
        this.core.logger.debug('peer connection closed', { peer: this.peerId, wasOpen, reason });
        this.transport.setReachable(this, false);
        this.transport.noteUnreachable(this.peerId);
        this.scheduleRedial();
      },
    });
  }

  private scheduleRedial(): void {
    this.failures++;
    const ceiling = Math.min(this.transport.backoffMaxMs, this.transport.backoffInitialMs * 2 ** Math.min(this.failures - 1, 20));
    // Jitter in [ceiling/2, ceiling): peers that lost each other at the same moment do not redial in lockstep.
    const delay = ceiling / 2 + this.transport.random.next() * (ceiling / 2);
    this.retryTimer = this.core.clock.setTimeout(() => this.dial(), delay);
  }
}

/** One accepted connection: handshake as the server, then authenticated frames from one peer. */
class ServerConnection {
  private readonly reader = new FrameReader(MAX_HANDSHAKE_FRAME_BYTES);
  private peerId: string | null = null;
  private purpose: Purpose = 'stream';
  private keys: SessionKeys | null = null;
  private proven = false;
  private receiveSeq = 1;
  private closed = false;
  private timer: TimerHandle | null;
  /** What the client said about itself in the hello; trusted once the proof arrives. */
  private identity: PeerIdentity = NO_IDENTITY;

  constructor(
    private readonly transport: PeerTransport,
    private readonly core: TransportCore,
    readonly socket: Socket,
  ) {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TRANSPORT_DEFAULTS.keepAliveMs);
    this.timer = core.clock.setTimeout(() => this.close(), core.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  get peer(): string | null {
    return this.peerId;
  }

  get isStream(): boolean {
    return this.purpose === 'stream' && this.proven;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) this.core.clock.clearTimeout(this.timer);
    this.timer = null;
    this.socket.destroy();
    this.transport.forgetInbound(this);
  }

  private reject(reason: PeerRejectReason, detail: string): void {
    this.core.rejected(reason, detail, { peer: this.peerId ?? undefined, remote: `${this.socket.remoteAddress}:${this.socket.remotePort}` });
    this.close();
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    // Each turn consumes a frame or ends the loop, so it is bounded by the frames in the buffer.
    while (!this.closed) {
      const next = this.reader.next();
      if (next === null) return;
      if (!Buffer.isBuffer(next)) return this.reject(next.reason, next.detail);
      if (this.keys === null) this.onHello(next);
      else this.onMessageFrame(next, this.keys);
    }
  }

  private onHello(raw: Buffer): void {
    const core = this.core;
    const decoded = decodeFrame(raw, { key: core.handshakeKey, clusterId: core.clusterId, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES, expectedSeq: 0 });
    if (!decoded.ok) return this.reject(decoded.reason, decoded.detail);
    const { frame } = decoded;
    if (frame.kind !== FrameKind.hello) return this.reject('malformed', 'expected a hello frame');
    const unknownPeer = (): void => this.reject('unknown_peer', `hello from "${frame.from}" to "${frame.to}"`);
    if (frame.to !== core.nodeId || frame.from === core.nodeId) return unknownPeer();
    const known = this.transport.knowsPeer(frame.from);
    const body = parseJsonObject(frame.payload);
    const clientNonce = body?.['nonce'];
    const purpose = body?.['purpose'];
    const identity = body === null ? undefined : identityIn(body);
    if (typeof clientNonce !== 'string' || !NONCE_PATTERN.test(clientNonce) || (purpose !== 'stream' && purpose !== 'snapshot') || identity === undefined) {
      if (!known) return unknownPeer();
      return this.reject('malformed', 'hello without a nonce, purpose and valid identity');
    }
    const welcome = (answer: Record<string, unknown>): Buffer =>
      encodeFrame(
        { kind: FrameKind.welcome, seq: 0, clusterId: core.clusterId, from: core.nodeId, to: frame.from, payload: Buffer.from(JSON.stringify({ clientNonce, ...answer })) },
        core.handshakeKey,
      );
    const refusal = core.checkPeer(frame.from, identity);
    // A stranger is refused without an answer, unless it is a member the cluster removed: that one is told, so it
    // can say so (it was down when the removal committed, and no leader replicates to it any more).
    if (!known && refusal?.reason !== 'removed') return unknownPeer();
    if (refusal !== null) {
      this.peerId = frame.from;
      core.rejected(refusal.reason, refusal.detail, { peer: frame.from, remote: `${this.socket.remoteAddress}:${this.socket.remotePort}` });
      // Say why before closing, so the refused node can tell its operator.
      this.closed = true;
      if (this.timer !== null) core.clock.clearTimeout(this.timer);
      this.timer = null;
      this.transport.forgetInbound(this);
      this.socket.end(welcome({ refused: refusal.detail, ...(refusal.reason === 'removed' ? { removed: true } : {}) }));
      return;
    }
    this.identity = identity;
    const serverNonce = newNonce();
    this.socket.write(welcome({ serverNonce, ...identityFields(core.identity()) }));
    this.peerId = frame.from;
    this.purpose = purpose;
    this.keys = sessionKeys(core.secret, core.clusterId, frame.from, core.nodeId, clientNonce, serverNonce);
  }

  private onMessageFrame(raw: Buffer, keys: SessionKeys): void {
    const core = this.core;
    const peerId = this.peerId!;
    const decoded = decodeFrame(raw, { key: keys.clientToServer, clusterId: core.clusterId, maxFrameBytes: core.maxFrameBytes, expectedSeq: this.receiveSeq });
    if (!decoded.ok) return this.reject(decoded.reason, decoded.detail);
    const { frame } = decoded;
    this.receiveSeq++;
    if (!this.proven) {
      // A hello can be replayed by anyone; only this frame, MACed with the session key, shows the secret.
      if (frame.kind !== FrameKind.proof) return this.reject('malformed', 'expected the handshake proof');
      this.proven = true;
      if (this.timer !== null) core.clock.clearTimeout(this.timer);
      this.timer = null;
      this.reader.maxFrameBytes = core.maxFrameBytes;
      core.peerIdentified(peerId, this.identity);
      this.transport.adoptInbound(this);
      return;
    }
    if (frame.kind !== FrameKind.message || frame.from !== peerId || frame.to !== core.nodeId) {
      return this.reject('malformed', 'unexpected frame in a session');
    }
    const message = parsePeerMessage(frame.payload);
    if (message === null) return this.reject('malformed', 'payload is not a valid Raft message');
    if (message.from !== peerId || message.to !== core.nodeId) {
      return this.reject('unknown_peer', `message from "${message.from}" to "${message.to}" on a session with "${peerId}"`);
    }
    if (this.purpose === 'snapshot' && message.type !== 'MsgSnap') {
      return this.reject('malformed', `${message.type} on a snapshot connection`);
    }
    this.transport.deliver(message);
    if (this.purpose === 'snapshot' && !this.closed) {
      this.socket.end(
        encodeFrame(
          { kind: FrameKind.ack, seq: 1, clusterId: core.clusterId, from: core.nodeId, to: peerId, payload: Buffer.from('{}') },
          keys.serverToClient,
        ),
      );
    }
  }
}

/** Rate-limits rejection logs per reason so a flood of bad frames costs a line per interval, not per frame. */
class RejectLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly intervalMs: number,
  ) {}

  note(reason: PeerRejectReason, detail: string, context: Record<string, unknown>): void {
    this.warn(reason, 'rejected peer traffic', { reason, detail, ...context });
  }

  /** Logs `msg` unless the same key was logged within the interval (then counts it for the next line). */
  warn(key: string, msg: string, fields: Record<string, unknown>): void {
    const now = this.clock.now();
    const previous = this.last.get(key);
    if (previous !== undefined && now - previous.at < this.intervalMs) {
      previous.suppressed++;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger.warn(msg, { ...fields, suppressedSinceLast: previous?.suppressed ?? 0 });
  }
}

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

export class PeerTransport implements RaftTransport {
  readonly nodeId: string;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly random: Random;
  private readonly core: TransportCore;
  private readonly options: PeerTransportOptions;
  private readonly links = new Map<string, PeerLink>();
  /** Every member this node accepts inbound streams from (a superset of `links`). */
  private readonly known = new Set<string>();
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
      this.known.add(id);
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
    for (const message of messages) {
      const link = this.links.get(message.to);
      if (link === undefined) {
        if (message.to !== this.nodeId) this.core.logger.debug('dropping a message to an unknown peer', { to: message.to, type: message.type });
        continue;
      }
      if (message.type === 'MsgSnap') this.sendSnapshot(link, message);
      else link.enqueue(message, this.queueLimit);
    }
  }

  /**
   * Applies a membership change: dials new peers, re-dials moved ones, drops removed ones and their connections.
   * A member left out of `dial` keeps being accepted inbound; only our outbound link to it goes.
   */
  updatePeers(peers: Readonly<Record<string, string>>, dial?: ReadonlySet<string>): void {
    checkPeers(peers, this.nodeId);
    for (const id of [...this.known]) {
      if (peers[id] !== undefined && id !== this.nodeId) continue;
      this.known.delete(id);
      this.inboundStreams.get(id)?.close();
      for (const connection of this.inbound) if (connection.peer === id) connection.close();
    }
    for (const [id, link] of this.links) {
      if (peers[id] !== undefined && id !== this.nodeId && (dial === undefined || dial.has(id))) continue;
      link.stop();
      this.links.delete(id);
      this.options.metrics.forgetPeer(id);
    }
    for (const [id, address] of Object.entries(peers)) {
      if (id === this.nodeId) continue;
      this.known.add(id);
      if (dial !== undefined && !dial.has(id)) continue;
      const existing = this.links.get(id);
      if (existing !== undefined) {
        existing.setAddress(address);
        continue;
      }
      const link = new PeerLink(this, this.core, id, address);
      this.links.set(id, link);
      if (this.state === 'running') {
        this.options.metrics.setPeerReachable(id, false);
        link.start();
      }
    }
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
