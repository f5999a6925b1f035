// The persistent outbound stream to one peer: its bounded queue, reconnects with jittered backoff, and reachability.

import { splitHostPort, type HostPort } from '../../net-address.js';
import type { Random, TimerHandle } from '../../clock.js';
import type { Message } from '../core/types.js';
import { ClientConnection, type TransportCore } from './peer-connection.js';

/** What a link needs from its transport. */
export interface LinkHost {
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly random: Random;
  setReachable(link: PeerLink, reachable: boolean): void;
  noteUnreachable(peerId: string): void;
  noteDropped(peerId: string): void;
}

/** The persistent stream to one peer: its queue, reconnects with backoff, and reachability. */
export class PeerLink {
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
  /** Made for a message rather than by the dial set: a later dial set leaves it be. */
  onDemand = false;

  constructor(
    private readonly transport: LinkHost,
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

  /** Queues a message; it leaves at the next flush(), so the caller can queue a batch first. */
  enqueue(message: Message, limit: number): void {
    if (this.queue.length >= limit) {
      this.queue.shift();
      this.dropped++;
      this.transport.noteDropped(this.peerId);
    }
    this.queue.push(message);
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

  /** Writes what is queued, when connected and the socket is not full; otherwise it leaves on connect or drain. */
  flush(): void {
    const connection = this.connection;
    if (connection === null || !connection.isOpen || this.waitingForDrain) return;
    // The usual case, one message (a leader's fan-out gives each member one per Ready): a plain write, without the
    // cork's buffering and the batch write it ends in.
    if (this.queue.length === 1) {
      if (!connection.send(this.queue.shift()!)) this.waitForDrain(connection);
      return;
    }
    // A Ready's messages to one peer leave in one write(2) rather than one per frame.
    connection.socket.cork();
    try {
      // Bounded by the queue length; stops early when the socket asks us to wait.
      while (this.queue.length > 0) {
        const message = this.queue.shift()!;
        if (!connection.send(message)) {
          this.waitForDrain(connection);
          return;
        }
      }
    } finally {
      connection.socket.uncork();
    }
  }

  private waitForDrain(connection: ClientConnection): void {
    this.waitingForDrain = true;
    connection.socket.once('drain', () => {
      this.waitingForDrain = false;
      this.flush();
    });
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
