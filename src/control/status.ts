// Turns the data plane's live pools into the status views the admin API, CLI and dashboard show.

import type { DataPlane } from '../proxy/data-plane.js';
import type { PoolStatusView } from './types.js';

export function poolStatusViews(dataPlane: DataPlane): PoolStatusView[] {
  return [...dataPlane.table.pools.values()].map((entry) => entry.pool.status());
}
