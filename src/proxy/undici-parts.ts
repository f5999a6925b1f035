// The two parts of undici the data plane uses, its connection Pool and its TCP/TLS connector, loaded from their own files.

// undici's index also loads fetch, WebSocket, EventSource, the cache stores, the mock agents and the promise APIs
// (request, stream, pipeline) that balancer never calls: about 3 MB more heap per process before the first request,
// kept for the life of the process. The types are still the package's own.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireUndici = createRequire(import.meta.url);

export const Pool = requireUndici('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Pool = Undici.Pool;
export const buildConnector = requireUndici('undici/lib/core/connect.js') as typeof Undici.buildConnector;
/** Opens one connection to a backend (TCP, and TLS for https). */
export type Connector = Undici.buildConnector.connector;
export type ConnectorOptions = Undici.buildConnector.BuildOptions;
