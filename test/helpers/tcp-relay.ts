// A fault-injecting TCP relay on 127.0.0.1 for one directed peer link: pass, cut, blackhole, delay, heal.

/*
 * Raft peers each dial their own outbound connection and send only on it (see transport.ts), so one
 * relay per ordered pair (from -> to) carries exactly `from`'s messages to `to`. Cutting the relays
 * both ways between two nodes partitions them; cutting one of them is a one-way fault.
 *
 * Modes:
 *   pass       bytes flow both ways, optionally after `delayMs`
 *   cut        existing connections are destroyed and new ones are accepted and reset at once, as a
 *              router that answers RST would (the sender sees a dead peer and backs off)
 *   blackhole  connections stay open but every byte is dropped, as a silent packet filter would; the
 *              streams are destroyed on heal, since dropped bytes leave them out of frame
 */

import net from 'node:net';
import type { AddressInfo } from 'node:net';

export type RelayMode = 'pass' | 'cut' | 'blackhole';

export interface RelayStats {
  readonly accepted: number;
  readonly refused: number;
  readonly bytesForwarded: number;
  readonly bytesDropped: number;
}

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** Set once bytes were dropped: the byte streams no longer line up, so heal destroys this pair. */
  damaged: boolean;
}

export class TcpRelay {
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  private mode: RelayMode = 'pass';
  private delay = 0;
  private accepted = 0;
  private refused = 0;
  private forwarded = 0;
  private dropped = 0;
  port = 0;

  /** `target` is where traffic goes (host:port), settable later with retarget() for a restarted peer. */
  constructor(
    private target: { host: string; port: number },
    readonly name = `relay->${target.port}`,
  ) {}

  /** Listens on `port` (0 picks one); returns the bound port. */
  async start(port = 0): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  retarget(target: { host: string; port: number }): void {
    this.target = target;
  }

  stats(): RelayStats {
    return { accepted: this.accepted, refused: this.refused, bytesForwarded: this.forwarded, bytesDropped: this.dropped };
  }

  get currentMode(): RelayMode {
    return this.mode;
  }

  cut(): void {
    this.mode = 'cut';
    this.destroyAll(() => true);
  }

  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** Each chunk is held this long before it is passed on (both directions). */
  setDelay(ms: number): void {
    this.delay = Math.max(0, ms);
  }

  heal(): void {
    this.mode = 'pass';
    this.delay = 0;
    this.destroyAll((pair) => pair.damaged);
  }

  async close(): Promise<void> {
    this.destroyAll(() => true);
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.mode === 'cut') {
      this.refused++;
      client.resetAndDestroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect(this.target.port, this.target.host);
    upstream.on('error', () => undefined);
    const pair: Pair = { client, upstream, damaged: false };
    this.pairs.add(pair);
    const teardown = (): void => {
      if (!this.pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
    this.pipe(pair, client, upstream);
    this.pipe(pair, upstream, client);
  }

  private pipe(pair: Pair, from: net.Socket, to: net.Socket): void {
    // When the delay shrinks, later chunks still wait for earlier ones: a relay never reorders bytes.
    let lastDue = 0;
    from.on('data', (chunk: Buffer) => {
      if (this.mode !== 'pass') {
        this.dropped += chunk.length;
        pair.damaged = true;
        return;
      }
      const send = (): void => {
        if (to.destroyed) return;
        this.forwarded += chunk.length;
        to.write(chunk);
      };
      const now = Date.now();
      const due = Math.max(now + this.delay, lastDue);
      lastDue = due;
      if (due > now) setTimeout(send, due - now);
      else send();
    });
  }

  private destroyAll(which: (pair: Pair) => boolean): void {
    for (const pair of [...this.pairs]) {
      if (!which(pair)) continue;
      this.pairs.delete(pair);
      pair.client.destroy();
      pair.upstream.destroy();
    }
  }
}
