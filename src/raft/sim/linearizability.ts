// A Wing & Gong linearizability checker, with Lowe's memoization, for a compare-and-set register.

export type RegisterOp =
  | { readonly kind: 'write'; readonly value: string }
  | { readonly kind: 'cas'; readonly expect: string | null; readonly value: string }
  | { readonly kind: 'read' };

export interface HistoryOp {
  readonly client: number;
  readonly op: RegisterOp;
  /** Invocation time. */
  readonly call: number;
  /** Response time; Infinity when the client timed out (the op may or may not have taken effect). */
  readonly ret: number;
  /** 'ok' | 'fail' for writes, the value read for reads; undefined when unknown (timed out). */
  readonly output?: string | null;
}

export interface LinearizabilityResult {
  readonly ok: boolean;
  /** Indexes into the history, in linearization order, when ok. */
  readonly order?: readonly number[];
  /** States explored, to spot histories too large for the search. */
  readonly explored: number;
  readonly exhausted?: boolean;
}

function applyOp(state: string | null, op: RegisterOp): { next: string | null; output: string | null } {
  switch (op.kind) {
    case 'write':
      return { next: op.value, output: 'ok' };
    case 'cas':
      return state === op.expect ? { next: op.value, output: 'ok' } : { next: state, output: 'fail' };
    case 'read':
      return { next: state, output: state };
  }
}

/**
 * Searches for a total order consistent with real time (an op that returned before another was
 * called comes first) in which every known output matches the register's. Ops that timed out may
 * be placed anywhere after their call or left out entirely; reads that timed out are dropped since
 * they cannot affect state. Memoizes (set of linearized ops, register value) so each configuration
 * is explored once.
 */
export function checkLinearizable(
  history: readonly HistoryOp[],
  initial: string | null = null,
  maxStates = 2_000_000,
): LinearizabilityResult {
  const ops = history
    .map((op, index) => ({ op, index }))
    .filter(({ op }) => !(op.op.kind === 'read' && op.output === undefined));
  const n = ops.length;
  const done = new Uint8Array(n);
  const seen = new Set<string>();
  const order: number[] = [];
  let explored = 0;
  let exhausted = false;
  // Ops whose outcome is known must all be linearized; unknown ones may be skipped.
  const mustCount = ops.filter(({ op }) => op.ret !== Infinity).length;

  const key = (state: string | null): string => {
    let bits = '';
    for (let i = 0; i < n; i += 16) {
      let word = 0;
      for (let j = i; j < Math.min(n, i + 16); j++) if (done[j] === 1) word |= 1 << (j - i);
      bits += String.fromCharCode(word + 1);
    }
    return bits + '|' + (state === null ? '\u0000' : state);
  };

  const search = (state: string | null, mustDone: number): boolean => {
    if (mustDone === mustCount) return true;
    if (++explored > maxStates) {
      exhausted = true;
      return false;
    }
    // Candidates: pending ops invoked before the earliest response among pending ops.
    let minRet = Infinity;
    for (let i = 0; i < n; i++) if (done[i] === 0 && ops[i]!.op.ret < minRet) minRet = ops[i]!.op.ret;
    for (let i = 0; i < n; i++) {
      if (done[i] === 1) continue;
      const { op } = ops[i]!;
      if (op.call > minRet) continue;
      const { next, output } = applyOp(state, op.op);
      if (op.output !== undefined && op.output !== output) continue;
      done[i] = 1;
      const k = key(next);
      if (!seen.has(k)) {
        seen.add(k);
        order.push(ops[i]!.index);
        if (search(next, mustDone + (op.ret === Infinity ? 0 : 1))) return true;
        order.pop();
      }
      done[i] = 0;
      if (exhausted) return false;
    }
    return false;
  };

  const ok = search(initial, 0);
  return { ok, explored, ...(ok ? { order: order.slice() } : {}), ...(exhausted ? { exhausted } : {}) };
}
