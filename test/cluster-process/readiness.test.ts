// /readyz follows the data plane on real processes: ready without a Raft leader, not ready while draining.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import type { TestBackend } from '../helpers/backend.js';
import { httpCall, startSeededCluster, type ProcessCluster } from '../helpers/process-cluster.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

describe('readiness of a three-process cluster', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'a', 'a'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  async function readyz(id: string): Promise<{ status: number; body: string }> {
    const res = await httpCall(`${cluster.node(id).admin}/readyz`, { timeoutMs: 3_000 });
    return { status: res.status, body: res.body };
  }

  it('every node is ready once the seeded config is applied', async () => {
    for (const id of ids) expect(await readyz(id)).toEqual({ status: 200, body: 'ready\n' });
  });

  it('with two of three nodes stopped, the survivor has no leader but stays ready and serves', async () => {
    const leader = await cluster.waitForLeader(ids);
    const survivor = ids.find((id) => id !== leader)!;
    for (const id of ids) if (id !== survivor) await cluster.stop(id);
    await eventually(async () => ((await cluster.clusterInfo(survivor)).leader === null ? true : undefined), `${survivor} to know no leader`);
    expect(await readyz(survivor)).toEqual({ status: 200, body: 'ready\n' });
    expect(await cluster.servedBy(survivor)).toBe('a');
    // The control plane's trouble is reported where it belongs: status and metrics.
    const status = (await cluster.api(survivor, 'GET', '/api/v1/status')).json<{ ready: boolean; cluster: { leader: string | null } }>();
    expect(status).toMatchObject({ ready: true, cluster: { leader: null } });
    expect(await cluster.metrics(survivor)).toMatch(/^balancer_raft_is_leader 0$/m);
    for (const id of ids) if (id !== survivor) await cluster.start(id);
    await cluster.waitForLeader(ids);
  });

  it('answers 503 with the reason while it drains requests in flight after SIGTERM', async () => {
    const id = ids[0]!;
    let release: () => void = () => undefined;
    const arrived = new Promise<void>((resolve) => {
      backend.handle((_req, res: ServerResponse) => {
        release = () => res.end('late');
        resolve();
      });
    });
    const inFlight = httpCall(`${cluster.node(id).proxy}/slow`, { timeoutMs: 20_000 });
    await arrived;
    const run = cluster.node(id).current;
    run.child.kill('SIGTERM');
    await run.waitFor((line) => line['msg'] === 'shutting down', `${id} to start draining`);
    const draining = await readyz(id);
    expect(draining.status).toBe(503);
    expect(draining.body).toBe('not ready: shutting down: draining requests in flight\n');
    release();
    expect((await inFlight).body).toBe('late');
    await run.exited;
    backend.handle(null);
  });
});
