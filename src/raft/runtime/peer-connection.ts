// Authenticated peer connections: the handshake (hello, welcome, proof) and session frames, as the dialling client and as the accepting server.

/*
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
 */

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { errorMessage } from '../../errors.js';
import type { HostPort } from '../../net-address.js';
import { isPlainObject } from '../../json.js';
import type { Clock, TimerHandle } from '../../clock.js';
import type { Logger } from '../../log.js';
import type { Message } from '../core/types.js';
import { FrameEncoder, FrameKind, FrameReader, MAX_HANDSHAKE_FRAME_BYTES, decodeFrame, encodeFrame, sessionKeys } from './frame.js';
import type { Frame, FrameKey, FrameRejectReason, SessionKeys } from './frame.js';
import { parsePeerMessage, type MessageEncoder } from './peer-message.js';

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

export type Purpose = 'stream' | 'snapshot';

/** TCP keep-alive on every peer connection, so a peer that vanished without a FIN is noticed. */
const KEEP_ALIVE_MS = 5000;

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

export const NO_IDENTITY: PeerIdentity = Object.freeze({ incarnation: null, clusterId: null });

/** What the connections need from their transport. */
export interface TransportCore {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly secret: string;
  readonly handshakeKey: FrameKey;
  /** Writes the JSON of the messages this node sends, on every connection. */
  readonly messages: MessageEncoder;
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

export interface ClientHooks {
  onOpen(connection: ClientConnection): void;
  /** An authenticated frame from the server (only snapshot connections expect one: the ack). */
  onFrame(connection: ClientConnection, frame: Frame): void;
  onClose(connection: ClientConnection, wasOpen: boolean, reason: string): void;
}

/** One dialled connection: handshake as the client, then authenticated frames to the server. */
export class ClientConnection {
  readonly socket: Socket;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private readonly reader = new FrameReader(MAX_HANDSHAKE_FRAME_BYTES);
  private readonly nonce = newNonce();
  private keys: SessionKeys | null = null;
  private sendSeq = 1;
  private receiveSeq = 1;
  private timer: TimerHandle | null;
  /** Frames from this node to the peer (the ids never change on a connection). */
  private readonly encoder: FrameEncoder;
  /** What the server said about itself in the welcome. */
  peerIdentity: PeerIdentity = NO_IDENTITY;

  constructor(
    private readonly core: TransportCore,
    readonly peerId: string,
    address: HostPort,
    readonly purpose: Purpose,
    private readonly hooks: ClientHooks,
  ) {
    this.encoder = new FrameEncoder(core.clusterId, core.nodeId, peerId);
    this.socket = connect({ host: address.host, port: address.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEP_ALIVE_MS });
    this.timer = core.clock.setTimeout(() => this.close('handshake timed out'), core.handshakeTimeoutMs);
    this.socket.once('connect', () => {
      this.socket.write(
        this.encoder.encode(FrameKind.hello, 0, JSON.stringify({ nonce: this.nonce, purpose, ...identityFields(core.identity()) }), core.handshakeKey),
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
    return this.socket.write(this.encoder.encode(FrameKind.message, this.sendSeq++, this.core.messages.encode(message), keys.clientToServer));
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
    this.socket.write(this.encoder.encode(FrameKind.proof, this.sendSeq++, '', this.keys.clientToServer));
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

/** What an accepted connection reports to its transport. */
export interface InboundHost {
  knowsPeer(id: string): boolean;
  /** The connection proved who it is. */
  adoptInbound(connection: ServerConnection): void;
  forgetInbound(connection: ServerConnection): void;
  deliver(message: Message): void;
}

/** One accepted connection: handshake as the server, then authenticated frames from one peer. */
export class ServerConnection {
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
    private readonly transport: InboundHost,
    private readonly core: TransportCore,
    readonly socket: Socket,
  ) {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEP_ALIVE_MS);
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
