// Small statistics for benchmark runs: medians over runs and ratios that tolerate missing values.

export function median(values) {
  const present = values.filter((value) => typeof value === 'number' && Number.isFinite(value));
  if (present.length === 0) return null;
  const sorted = [...present].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function ratio(numerator, denominator) {
  if (typeof numerator !== 'number' || typeof denominator !== 'number' || denominator === 0) return null;
  return numerator / denominator;
}

/** Medians of each named numeric field across runs that succeeded. */
export function medians(runs, fields) {
  const ok = runs.filter((run) => run.error === undefined);
  const out = { runs: ok.length };
  for (const [name, pick] of Object.entries(fields)) out[name] = median(ok.map(pick));
  return out;
}

/**
 * The median over rounds of one target's value divided by another's in the same round. Targets run in alternation, so a
 * round's two runs are minutes apart at most: when the machine's speed drifts during a run (it does, on shared VMs),
 * pairing by round cancels the drift that a ratio of the two overall medians can pick up. Rounds where either failed
 * are left out.
 */
export function sameRoundRatio(numeratorRuns, denominatorRuns, pick) {
  const denominators = new Map(denominatorRuns.filter((run) => run.error === undefined).map((run) => [run.round, pick(run)]));
  const ratios = numeratorRuns.filter((run) => run.error === undefined && denominators.has(run.round)).map((run) => ratio(pick(run), denominators.get(run.round)));
  return median(ratios);
}
