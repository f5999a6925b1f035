// Active health checking for one pool: a self-rescheduling probe loop per backend on the injected Clock.

import type { Clock, Random, TimerHandle } from '../clock.js';
import type { HealthCheckConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { KeptConnection } from './http-check.js';
import type { Probe, ProbeResult, ProbeTarget } from './probe.js';
import type { UpstreamTlsMaterial } from '../balancer/upstream-tls.js';

export interface CheckTarget {
  readonly id: string;
  readonly url: URL;
  /** Where to connect instead of resolving the URL's host name (what DNS discovery resolved it to); absent: resolve it. */
  readonly addresses?: readonly string[];
  /** The name an https backend is verified against, when it is not the pool's tls.serverName or the URL's host. */
  readonly serverName?: string;
  /** Read before each reschedule: a down backend is checked at unhealthyInterval. */
  isDown(): boolean;
  /** When this backend was last checked (by an earlier checker of the same pool), so a rebuild does not re-probe at once. */
  lastCheckedAt(): number | undefined;
}

export interface HealthCheckerOptions {
  readonly config: HealthCheckConfig;
  readonly clock: Clock;
  readonly random: Random;
  readonly probe: Probe;
  /** The pool's CA and client certificate: a check connects as the forwarder does. */
  readonly tls: UpstreamTlsMaterial;
  readonly serverName: string | null;
  /** Called once per completed check; never called after stop(). */
  readonly onResult: (id: string, result: ProbeResult) => void;
  /** Told when onResult throws; the loop carries on regardless. */
  readonly onError?: (id: string, error: unknown) => void;
}

interface Slot {
  readonly target: CheckTarget;
  readonly probeTarget: ProbeTarget;
  timer: TimerHandle | undefined;
  nextAt: number | undefined;
  inFlight: boolean;
}

export class HealthChecker {
  private readonly options: HealthCheckerOptions;
  private readonly slots = new Map<string, Slot>();
  private running = false;

  constructor(options: HealthCheckerOptions) {
    this.options = options;
  }

  start(targets: readonly CheckTarget[]): void {
    if (this.running) return;
    this.running = true;
    const { config, clock } = this.options;
    const now = clock.now();
    for (const target of targets) {
      const slot: Slot = {
        target,
        probeTarget: {
          url: target.url,
          path: config.path,
          grpcService: config.grpc?.service ?? null,
          host: config.host,
          timeoutMs: config.timeoutMs,
          expectedStatuses: config.expectedStatuses,
          tls: this.options.tls,
          serverName: target.serverName ?? this.options.serverName,
          addresses: target.addresses ?? null,
          keptConnection: config.reuseConnection && config.path !== null && config.grpc === null ? new KeptConnection() : null,
        },
        timer: undefined,
        nextAt: undefined,
        inFlight: false,
      };
      this.slots.set(target.id, slot);
      const last = target.lastCheckedAt();
      // A fresh backend is checked almost at once (its first result decides its state), spread over a
      // slice of the interval so a big pool does not probe everything in the same millisecond.
      const delay =
        last === undefined
          ? this.options.random.next() * config.jitter * config.intervalMs
          : Math.max(0, last + this.nextDelay(target) - now);
      this.schedule(slot, delay);
    }
  }

  /** Cancels pending checks and closes kept connections; probes already running end (or fail) but their results are dropped. */
  stop(): void {
    this.running = false;
    for (const slot of this.slots.values()) {
      if (slot.timer !== undefined) this.options.clock.clearTimeout(slot.timer);
      slot.timer = undefined;
      slot.nextAt = undefined;
      slot.probeTarget.keptConnection?.close();
    }
  }

  /** Clock time of the next scheduled check of a backend; undefined while one is running or when stopped. */
  nextCheckAt(id: string): number | undefined {
    return this.slots.get(id)?.nextAt;
  }

  /** Interval with jitter: interval x (1 ± jitter), at unhealthyInterval while the backend is down. */
  private nextDelay(target: CheckTarget): number {
    const { config, random } = this.options;
    const base = target.isDown() ? config.unhealthyIntervalMs : config.intervalMs;
    return Math.max(1, base * (1 + config.jitter * (2 * random.next() - 1)));
  }

  private schedule(slot: Slot, delay: number): void {
    const { clock } = this.options;
    slot.nextAt = clock.now() + delay;
    slot.timer = clock.setTimeout(() => {
      slot.timer = undefined;
      slot.nextAt = undefined;
      void this.run(slot);
    }, delay);
  }

  private async run(slot: Slot): Promise<void> {
    // The next check is only scheduled once this one has finished, so checks of one backend never overlap
    // even when timeout > interval.
    if (!this.running || slot.inFlight) return;
    slot.inFlight = true;
    let result: ProbeResult;
    try {
      result = await this.options.probe(slot.probeTarget);
    } catch (error) {
      result = { result: 'error', detail: `probe failed: ${errorMessage(error)}` };
    } finally {
      slot.inFlight = false;
    }
    if (!this.running) return;
    try {
      this.options.onResult(slot.target.id, result);
    } catch (error) {
      // Contained here: an escaping rejection would take the process down, and a backend whose loop
      // stopped would stay in its last state forever.
      this.options.onError?.(slot.target.id, error);
    }
    if (this.running) this.schedule(slot, this.nextDelay(slot.target));
  }
}
