// Request-id dedupe for the state machine layer: a retried proposal takes effect exactly once.

/*
 * How the layer above uses it: give every client request a unique id (the admin API can take it
 * from an Idempotency-Key header or make one per request) and pass it to RawNode.propose(data, id).
 * On a timeout or NOT_LEADER, retry with the *same* id, on any node. When applying a committed
 * normal entry, ask `lookup(entry.requestId)`: if it returns a result, the request was already
 * applied and that stored result is the answer — do not apply again. Otherwise apply and
 * `record(id, result)`. The table is part of the replicated state: include toJSON() in state
 * machine snapshots and restore it with fromJSON(), so every node makes the same decision.
 * Eviction is by application order (oldest first), which is deterministic on every node.
 */

export interface DedupeSnapshot {
  readonly capacity: number;
  readonly entries: readonly (readonly [string, string])[];
}

export class RequestDedupe {
  private readonly results = new Map<string, string>();
  readonly capacity: number;

  constructor(capacity = 10_000) {
    this.capacity = Math.max(1, capacity);
  }

  /** The stored result of an already-applied request, or undefined if it was not applied (or evicted). */
  lookup(requestId: string | undefined): string | undefined {
    return requestId === undefined ? undefined : this.results.get(requestId);
  }

  record(requestId: string | undefined, result: string): void {
    if (requestId === undefined) return;
    this.results.delete(requestId);
    this.results.set(requestId, result);
    while (this.results.size > this.capacity) {
      const oldest = this.results.keys().next().value;
      if (oldest === undefined) break;
      this.results.delete(oldest);
    }
  }

  size(): number {
    return this.results.size;
  }

  toJSON(): DedupeSnapshot {
    return { capacity: this.capacity, entries: [...this.results.entries()] };
  }

  static fromJSON(snapshot: DedupeSnapshot): RequestDedupe {
    const dedupe = new RequestDedupe(snapshot.capacity);
    for (const [id, result] of snapshot.entries) dedupe.results.set(id, result);
    return dedupe;
  }
}
