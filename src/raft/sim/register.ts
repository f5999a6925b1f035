// The simulators' register: the replicated state machine (compare-and-set with request-id dedupe) and the client operations drawn against it.

import { randomInt, type Random } from '../../clock.js';
import { RequestDedupe, type DedupeSnapshot } from '../core/dedupe.js';
import type { Entry } from '../core/types.js';
import type { RegisterOp } from './linearizability.js';

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
