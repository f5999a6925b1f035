// Narrowing untrusted JSON (request bodies, peer messages, files) to a plain object: the one check every reader shares.

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
