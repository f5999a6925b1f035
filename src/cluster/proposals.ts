// Proposing through Raft and waiting for the outcome: a lost proposal retried under its request id, leader waits, write timeouts, all on events rather than sleeps.

import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { BalancerError, isBalancerError, type ErrorCode } from '../errors.js';
import type { ChangeMeta } from '../control/history.js';
import type { RaftMetrics } from '../metrics/types.js';
import type { RaftNode } from '../raft/runtime/node.js';
import { encodeEnvelope, type ClusterCommand, type CommandOutcome } from './state-machine.js';

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: (met: boolean) => void;
}

export interface ProposalsOptions {
  readonly nodeId: string;
  readonly clock: Clock;
  readonly writeTimeoutMs: number;
  readonly metrics: RaftMetrics;
  /** The driver; it exists from the store's start on. */
  readonly node: () => RaftNode;
  readonly stopped: () => boolean;
}

export type Committed = CommandOutcome & { ok: true; requestId: string };

export class Proposals {
  private readonly outcomes = new Map<string, CommandOutcome | null>();
  /** Request ids the node reported dropped since they were last proposed. */
  private readonly droppedProposals = new Set<string>();
  private readonly submissions = new Map<string, Promise<Committed>>();
  private readonly waiters = new Set<Waiter>();
  private readonly nodeId: string;
  private readonly clock: Clock;
  readonly writeTimeoutMs: number;

  constructor(private readonly options: ProposalsOptions) {
    this.nodeId = options.nodeId;
    this.clock = options.clock;
    this.writeTimeoutMs = options.writeTimeoutMs;
  }

  private get node(): RaftNode {
    return this.options.node();
  }

  private get stopped(): boolean {
    return this.options.stopped();
  }

  /** The applier saw the outcome of a command with this request id. */
  noteApplied(requestId: string, outcome: CommandOutcome): void {
    if (this.outcomes.has(requestId)) this.outcomes.set(requestId, outcome);
  }

  /** The node dropped the proposal with this request id (overwritten, or lost with a leader). */
  noteDropped(requestId: string): void {
    if (this.outcomes.has(requestId)) this.droppedProposals.add(requestId);
  }

  /**
   * Proposes `command` and resolves with its outcome once this node applied it; a refused command
   * rejects with its code. Lost proposals are retried with the same request id until the deadline.
   */
  submit(command: ClusterCommand, meta: ChangeMeta | undefined, requestId: string = randomUUID()): Promise<Committed> {
    // The same request id again while the first is in flight (a client retrying early) waits for the same outcome.
    const inFlight = this.submissions.get(requestId);
    if (inFlight !== undefined) return inFlight;
    const submission = this.runSubmission(command, meta, requestId).finally(() => this.submissions.delete(requestId));
    this.submissions.set(requestId, submission);
    return submission;
  }

  /**
   * Proposes `command` and resolves with its outcome once this node applied it; a refused command rejects with
   * its code. A proposal the node reports dropped (overwritten, or lost with a leader) is proposed again at once
   * with the same request id; one that simply gets no answer, after an election timeout. No call outlives the
   * write timeout; a write that was proposed and then timed out says it may still commit, with its request id.
   */
  private async runSubmission(command: ClusterCommand, meta: ChangeMeta | undefined, requestId: string): Promise<Committed> {
    const metrics = this.options.metrics;
    const data = encodeEnvelope({ requestId, command, ...(meta === undefined ? {} : { meta }) });
    const deadline = this.clock.now() + this.writeTimeoutMs;
    let proposed = false;
    this.outcomes.set(requestId, null);
    try {
      for (let attempt = 0; attempt < 1000; attempt++) {
        if (attempt > 0 && (this.stopped || this.clock.now() >= deadline)) break;
        try {
          await this.awaitLeader(deadline);
        } catch (error) {
          metrics.proposal('dropped');
          if (proposed && isBalancerError(error, 'NO_LEADER')) throw this.writeTimeoutError(requestId, true);
          throw error;
        }
        this.droppedProposals.delete(requestId);
        try {
          this.node.propose(data, requestId);
          proposed = true;
        } catch (error) {
          if (!isRetryable(error)) throw error;
          // The leader is being replaced or transferring: give it a moment, then try again.
          await this.waitFor(() => this.outcomes.get(requestId) !== null, Math.min(100, Math.max(0, deadline - this.clock.now())));
          if (this.outcomes.get(requestId) === null) continue;
        }
        await this.waitFor(() => this.outcomes.get(requestId) !== null || this.droppedProposals.has(requestId) || this.stopped, this.attemptMs(deadline));
        const outcome = this.outcomes.get(requestId);
        if (outcome !== null && outcome !== undefined) {
          if (outcome.ok) {
            metrics.proposal('committed');
            return { ...outcome, requestId };
          }
          metrics.proposal('rejected');
          throw new BalancerError(outcome.error.code, outcome.error.message, { details: outcome.error.details });
        }
        if (this.stopped || this.clock.now() >= deadline) break;
      }
      metrics.proposal('timeout');
      throw this.writeTimeoutError(requestId, proposed);
    } finally {
      this.outcomes.delete(requestId);
      this.droppedProposals.delete(requestId);
      this.node.forgetProposal(requestId);
    }
  }

  /** A write that got no answer in time; once proposed, it may still commit, and its request id makes a retry safe. */
  private writeTimeoutError(requestId: string, proposed: boolean): BalancerError {
    const base = this.timeoutError('confirm the change');
    if (!proposed) return base;
    return new BalancerError(
      base.code,
      `${base.message}. The change was proposed and may still commit: sending the same request again with the header ` +
        `Idempotency-Key: ${requestId} applies it at most once (or read the config to see whether it did)`,
    );
  }

  /** Resolves once a leader is known; throws NO_LEADER if none shows up within two election timeouts (or the deadline). */
  async awaitLeader(deadline: number): Promise<void> {
    if (this.stopped) throw new BalancerError('NO_LEADER', `node ${this.nodeId} is stopping`);
    const failed = this.node.failed;
    if (failed !== null) {
      throw new BalancerError('RAFT_FAILED', `node ${this.nodeId} stopped taking part in the cluster (${failed.error.message}); send the request to another node`);
    }
    if (this.node.leaderId !== null) return;
    const patience = Math.min(Math.max(0, deadline - this.clock.now()), 2 * this.node.electionTimeoutMs);
    if (await this.waitFor(() => this.node.leaderId !== null, patience)) return;
    throw new BalancerError('NO_LEADER', `node ${this.nodeId} knows no leader: the cluster has no quorum or is electing one`);
  }

  /** One attempt gets an election timeout: long enough for a healthy commit, short enough to retry after a lost leader. */
  attemptMs(deadline: number): number {
    return Math.max(0, Math.min(deadline - this.clock.now(), Math.max(200, this.node.electionTimeoutMs)));
  }

  timeoutError(what: string): BalancerError {
    if (this.node.leaderId === null) {
      return new BalancerError('NO_LEADER', `could not ${what}: node ${this.nodeId} knows no leader`);
    }
    return new BalancerError('PROPOSAL_TIMEOUT', `could not ${what} within ${this.writeTimeoutMs} ms; the cluster may have lost its quorum`);
  }

  /** Resolves true once `check` holds (re-checked on every recheck()), false after `timeoutMs`, on stop or on a failed node. */
  waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    if (timeoutMs <= 0 || this.stopped || this.node.failed !== null) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(check());
      }, timeoutMs);
      const waiter: Waiter = {
        check,
        resolve: (met) => {
          this.clock.clearTimeout(timer);
          resolve(met);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Something changed (an entry applied, a leader, a drop): re-checks every wait. */
  recheck(): void {
    for (const waiter of [...this.waiters]) {
      if (!waiter.check()) continue;
      this.waiters.delete(waiter);
      waiter.resolve(true);
    }
  }

  /** Every wait ends now, unmet (the store stops, or the node failed and calls should fail fast). */
  cancelAll(): void {
    for (const waiter of [...this.waiters]) {
      this.waiters.delete(waiter);
      waiter.resolve(false);
    }
  }
}

const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['NO_LEADER', 'NOT_LEADER', 'PROPOSAL_DROPPED']);

export function isRetryable(error: unknown): boolean {
  return error instanceof BalancerError && RETRYABLE.has(error.code);
}
