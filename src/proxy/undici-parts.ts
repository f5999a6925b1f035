// The two parts of undici the data plane uses, its connection Pool and its TCP/TLS connector, loaded from their own files.

// undici's index also loads fetch, WebSocket, EventSource, the cache stores, the mock agents and the promise APIs
// (request, stream, pipeline) that balancer never calls: about 3 MB more heap per process before the first request,
// kept for the life of the process. The types are still the package's own.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireUndici = createRequire(import.meta.url);

/**
 * `file` of undici, or the same export from its index when that file is gone or is not what it was: the files are
 * not undici's public interface, and a later 7.x that moves them must cost the 3 MB, not the start.
 */
export function undiciPart<T>(load: (id: string) => unknown, file: string, exportName: 'Pool' | 'buildConnector'): T {
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
export const buildConnector = undiciPart<typeof Undici.buildConnector>(requireUndici, 'undici/lib/core/connect.js', 'buildConnector');
/** Opens one connection to a backend (TCP, and TLS for https). */
export type Connector = Undici.buildConnector.connector;
export type ConnectorOptions = Undici.buildConnector.BuildOptions;
