// Whether this node should get traffic now, and if not why: the one list of readiness conditions /readyz, status, the CLI and the dashboard read.

/*
 * Readiness follows the data plane, never the control plane: a node that serves its last applied config
 * is ready with or without a Raft leader (losing quorum must not make a load balancer in front pull every
 * healthy proxy at once). Cluster health is reported by /api/v1/status, the metrics and the alert rules.
 *
 * Each part of the node adds the conditions it owns, by name: the stores add "config" (nothing applied
 * yet) and, in a cluster, "membership" (removed, or waiting to be added); the app adds "draining" while it
 * shuts down. Anything else that must take the node out of rotation (a pre-stop delay, a failed Raft
 * node) adds its own condition here rather than a second readiness flag elsewhere.
 */

/** A condition that does not hold: its name and a sentence saying why, for /readyz bodies and logs. */
export interface NotReady {
  readonly condition: string;
  readonly reason: string;
}

/** Returns null while the condition holds (the node may get traffic), or the reason it does not. */
export type ReadinessCheck = () => string | null;

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly flags = new Map<string, string>();

  /** Adds (or replaces) a condition evaluated on every read. */
  add(condition: string, check: ReadinessCheck): void {
    this.checks.set(condition, check);
  }

  /** Sets a condition that is a state rather than a computation: `reason` takes the node out of rotation, null puts it back. */
  set(condition: string, reason: string | null): void {
    if (reason === null) this.flags.delete(condition);
    else this.flags.set(condition, reason);
  }

  /** Every condition that does not hold now, in the order they were added (checks first, then flags). */
  notReady(): NotReady[] {
    const out: NotReady[] = [];
    for (const [condition, check] of this.checks) {
      const reason = check();
      if (reason !== null) out.push({ condition, reason });
    }
    for (const [condition, reason] of this.flags) out.push({ condition, reason });
    return out;
  }

  get ready(): boolean {
    return this.notReady().length === 0;
  }
}
