// The simulators' register: the replicated state machine (compare-and-set with request-id dedupe), the client operations drawn against it, and the clients' history.

import { randomInt, type Random } from '../../clock.js';
import { RequestDedupe, type DedupeSnapshot } from '../core/dedupe.js';
import type { Entry } from '../core/types.js';
import type { HistoryOp, RegisterOp } from './linearizability.js';

/**
 * A random client operation: a read with probability `readShare`, else a write or (40%) a compare-and-set whose
 * expected value is one written so far (or, 30% of the time, the empty register). `values` counts the values
 * written so far and is advanced for each new one, so every value is unique. Draws from `rng` in a fixed order:
 * a seed replays exactly.
 */
export function drawRegisterOp(rng: Random, readShare: number, values: { count: number }): RegisterOp {
  const roll = rng.next();
  if (roll < readShare) return { kind: 'read' };
  if (roll < 0.6) return { kind: 'write', value: `v${++values.count}` };
  const last = values.count === 0 ? null : `v${randomInt(rng, values.count) + 1}`;
  const expect = rng.next() < 0.3 ? null : last;
  return { kind: 'cas', expect, value: `v${++values.count}` };
}

export type RegisterCommand =
  | { readonly op: 'cas'; readonly expect: string | null; readonly value: string }
  | { readonly op: 'write'; readonly value: string };

interface RegisterSnapshot {
  readonly value: string | null;
  readonly applied: number;
  readonly dedupe: DedupeSnapshot;
}

/** 'ok' when the command took effect, 'fail' when a compare-and-set saw another value. */
export type RegisterResult = 'ok' | 'fail';

export class RegisterMachine {
  value: string | null = null;
  /** How many commands actually changed state; a duplicate must not bump it. */
  applied = 0;
  dedupe = new RequestDedupe(100_000);

  /** Applies a committed normal entry once per request id; a retry gets the first result back. */
  apply(entry: Entry): RegisterResult {
    const earlier = this.dedupe.lookup(entry.requestId);
    if (earlier !== undefined) return earlier as RegisterResult;
    const command = JSON.parse(entry.data) as RegisterCommand;
    let result: RegisterResult;
    if (command.op === 'write' || command.expect === this.value) {
      this.value = command.value;
      result = 'ok';
    } else {
      result = 'fail';
    }
    this.applied++;
    this.dedupe.record(entry.requestId, result);
    return result;
  }

  serialize(): string {
    const snapshot: RegisterSnapshot = { value: this.value, applied: this.applied, dedupe: this.dedupe.toJSON() };
    return JSON.stringify(snapshot);
  }

  static restore(data: string): RegisterMachine {
    const machine = new RegisterMachine();
    if (data === '') return machine;
    const snapshot = JSON.parse(data) as RegisterSnapshot;
    machine.value = snapshot.value;
    machine.applied = snapshot.applied;
    machine.dedupe = RequestDedupe.fromJSON(snapshot.dedupe);
    return machine;
  }
}

/** What both simulators track of a client operation. */
export interface ClientCall {
  readonly client: number;
  readonly op: RegisterOp;
  readonly requestId: string;
  /** Invocation time. */
  readonly call: number;
  everSubmitted: boolean;
}

/** The clients' side of a simulation: the operation each client has in flight, and the history the linearizability check reads. */
export class ClientHistory<C extends ClientCall> {
  readonly pending = new Map<number, C>();
  readonly history: HistoryOp[] = [];
  /** Request ids of acknowledged writes. */
  readonly acknowledged = new Set<string>();
  reads = 0;
  timedOut = 0;

  start(op: C): void {
    this.pending.set(op.client, op);
  }

  /** The client got its answer at time `ret`. */
  complete(op: C, ret: number, output: string | null): void {
    this.pending.delete(op.client);
    this.history.push({ client: op.client, op: op.op, call: op.call, ret, output });
    if (op.op.kind === 'read') this.reads++;
    else this.acknowledged.add(op.requestId);
  }

  /** The client stopped waiting. A write that may have reached a log may still take effect: it stays in the history as "maybe". */
  giveUp(op: C): void {
    this.pending.delete(op.client);
    this.timedOut++;
    if (op.everSubmitted && op.op.kind !== 'read') this.history.push({ client: op.client, op: op.op, call: op.call, ret: Infinity });
  }
}
