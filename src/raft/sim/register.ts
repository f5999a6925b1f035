// The simulator's replicated state machine: one compare-and-set register with request-id dedupe.

import { RequestDedupe, type DedupeSnapshot } from '../core/dedupe.js';
import type { Entry } from '../core/types.js';

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
