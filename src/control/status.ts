// Turns the data plane's live pools into the status views the admin API, CLI and dashboard show.

import type { DataPlane } from '../proxy/data-plane.js';
import type { PoolStatusView } from './types.js';

export function poolStatusViews(dataPlane: DataPlane): PoolStatusView[] {
  const remote = dataPlane.remoteInflight;
  return [...dataPlane.table.pools.values()].map((entry) => {
    const own = entry.pool.status();
    const discovery = dataPlane.discoveryStatus(own.name);
    const status = discovery === null ? own : { ...own, discovery };
    if (remote === null) return status;
    return { ...status, backends: status.backends.map((backend) => ({ ...backend, inflight: remote(status.name, backend.id) })) };
  });
}
