// Envoy-style circuit breaking per pool: backends at maxRequestsPerBackend are skipped, and when all are, requests wait in a bounded queue.

import type { PickRequest } from '../balancer/affinity.js';
import type { ForwardBackend, ForwardPool } from './forward-types.js';

/** A request waiting for a slot: told when it may pick again, or that its wait expired (it then answers 503). */
export interface SlotWaiter {
  onSlotFreed(): void;
  onWaitExpired(waitMs: number): void;
}

interface QueuedWaiter {
  readonly waiter: SlotWaiter;
  readonly timer: NodeJS.Timeout;
}

/** Removes a waiter from its queue (its client went away): no slot is handed to it any more. */
export type CancelWait = () => void;

export class CircuitBreaker {
  private readonly waiting = new Map<ForwardPool, QueuedWaiter[]>();

  /**
   * Picks a backend below the pool's per-backend cap: the strategy's choice, or the next one it offers when that
   * one is full. 'all-full' when every available backend is at its cap; undefined when none is available at all.
   */
  pick(pool: ForwardPool, excluded: ReadonlySet<string> | null, request?: PickRequest): ForwardBackend | undefined | 'all-full' {
    const cap = pool.config.circuitBreaker.maxRequestsPerBackend;
    const first = pool.pick(excluded ?? undefined, request);
    if (cap === 0 || first === undefined || first.inflight < cap) return first;
    const skipped = new Set(excluded);
    let candidate: ForwardBackend | undefined = first;
    while (candidate !== undefined && candidate.inflight >= cap) {
      skipped.add(candidate.id);
      candidate = pool.pick(skipped, request);
    }
    return candidate ?? 'all-full';
  }

  /**
   * Queues a request until a slot frees or the pool's connect timeout passes. Returns null when the queue
   * (maxPendingPerBackend x backends) is full: the caller answers 503 at once.
   */
  wait(pool: ForwardPool, waiter: SlotWaiter): CancelWait | null {
    const breaker = pool.config.circuitBreaker;
    const queue = this.waiting.get(pool) ?? [];
    if (queue.length >= breaker.maxPendingPerBackend * pool.config.backends.length) return null;
    const waitMs = pool.config.timeouts.connectMs;
    const queued: QueuedWaiter = {
      waiter,
      timer: setTimeout(() => {
        this.remove(pool, queued);
        waiter.onWaitExpired(waitMs);
      }, waitMs),
    };
    queue.push(queued);
    this.waiting.set(pool, queue);
    return () => {
      clearTimeout(queued.timer);
      this.remove(pool, queued);
    };
  }

  /** A request to one of the pool's backends ended: the oldest waiter picks again. */
  slotFreed(pool: ForwardPool): void {
    if (pool.config.circuitBreaker.maxRequestsPerBackend === 0) return;
    const queue = this.waiting.get(pool);
    const next = queue?.shift();
    if (next === undefined) return;
    if (queue!.length === 0) this.waiting.delete(pool);
    clearTimeout(next.timer);
    next.waiter.onSlotFreed();
  }

  private remove(pool: ForwardPool, queued: QueuedWaiter): void {
    const queue = this.waiting.get(pool);
    if (queue === undefined) return;
    const index = queue.indexOf(queued);
    if (index !== -1) queue.splice(index, 1);
    if (queue.length === 0) this.waiting.delete(pool);
  }
}
