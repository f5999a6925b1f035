// The parts of undici the data plane uses, its connection Pool and Client and its TCP/TLS connector, loaded from their own files.

// undici's index also loads fetch, WebSocket, EventSource, the cache stores, the mock agents and the promise APIs
// (request, stream, pipeline) that balancer never calls: about 3 MB more heap per process before the first request,
// kept for the life of the process. The types are still the package's own.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

/** Loads undici's files as this package resolves them (the Pool's own instances of its modules). */
export const requireUndici = createRequire(import.meta.url);

/**
 * `file` of undici, or the same export from its index when that file is gone or is not what it was: the files are
 * not undici's public interface, and a later 7.x that moves them must cost the 3 MB, not the start.
 */
export function undiciPart<T>(load: (id: string) => unknown, file: string, exportName: 'Pool' | 'Client' | 'buildConnector'): T {
  let part: unknown;
  try {
    part = load(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
  }
  if (typeof part === 'function' && part.name === exportName) return part as T;
  return (load('undici') as Record<string, unknown>)[exportName] as T;
}

export const Pool = undiciPart<typeof Undici.Pool>(requireUndici, 'undici/lib/dispatcher/pool.js', 'Pool');
export type Pool = Undici.Pool;
export const Client = undiciPart<typeof Undici.Client>(requireUndici, 'undici/lib/dispatcher/client.js', 'Client');
export type Client = Undici.Client;
export const buildConnector = undiciPart<typeof Undici.buildConnector>(requireUndici, 'undici/lib/core/connect.js', 'buildConnector');
/** Opens one connection to a backend (TCP, and TLS for https). */
export type Connector = Undici.buildConnector.connector;
export type ConnectorOptions = Undici.buildConnector.BuildOptions;

/** An HTTP field name as RFC 9110 section 5.1 allows it (a token), in lower case. */
const LOWER_CASE_TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/**
 * Adds `names` to undici's table of well-known header names, so its Request takes them as they are. undici checks
 * every header of every request it is handed: a name in that table costs one lookup, any other is lower-cased and
 * matched against the token grammar (a regular expression for names of 12 characters or more) each time. The
 * fields the proxy adds to every request are constants known to be tokens; in the table they cost about 3,500
 * instructions less per request. Values are still checked. Each name maps to itself, which is what undici would have
 * made of it. Returns the names added: none when the table is not there (a later undici), which costs only the
 * saving. Throws for a name that is not a lower-case token, which would otherwise skip undici's check.
 */
export function addWellKnownHeaderNames(load: (id: string) => unknown, names: readonly string[]): string[] {
  for (const name of names) {
    if (!LOWER_CASE_TOKEN.test(name)) throw new Error(`not a lower-case header name: ${JSON.stringify(name)}`);
  }
  let table: unknown;
  try {
    table = (load('undici/lib/core/constants.js') as { headerNameLowerCasedRecord?: unknown } | null)?.headerNameLowerCasedRecord;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
  }
  // The table maps a name in any known casing to its lower-case form; anything else is not the table this expects.
  const record = table as Record<string, unknown> | undefined;
  if (typeof record !== 'object' || record === null || record['content-type'] !== 'content-type') return [];
  const added: string[] = [];
  for (const name of names) {
    if (record[name] !== undefined) continue;
    record[name] = name;
    added.push(name);
  }
  return added;
}
