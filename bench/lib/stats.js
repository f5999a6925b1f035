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
