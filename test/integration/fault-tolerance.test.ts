// Backends failing under load through the whole gateway: health checks, outlier ejection, retries, 503s.

import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { startBackend, request, type TestBackend } from '../helpers/backend.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A backend whose health endpoint and traffic answers can be switched, counting traffic and checks apart. */
interface ControlledBackend extends TestBackend {
  healthy: boolean;
  trafficStatus: number;
  traffic: number;
  checks: number;
}

async function controlled(name: string): Promise<ControlledBackend> {
  const base = (await startBackend(name)) as ControlledBackend;
  base.healthy = true;
  base.trafficStatus = 200;
  base.traffic = 0;
  base.checks = 0;
  base.handle((req, res) => {
    if (req.url === '/healthz') {
      base.checks += 1;
      res.writeHead(base.healthy ? 200 : 500).end();
      return;
    }
    base.traffic += 1;
    res.writeHead(base.trafficStatus, { 'x-backend': name }).end(name);
  });
  cleanups.push(() => base.close());
  return base;
}

async function gateway(yaml: string): Promise<TestGateway> {
  const gw = await startGateway(yaml);
  cleanups.push(() => gw.stop());
  return gw;
}

function stateOf(gw: TestGateway, id: string): string | undefined {
  return gw.app.dataPlane.table.pools.get('web')?.pool.backends.find((b) => b.id === id)?.state;
}

/** Bounded load: `concurrency` loops of keep-alive GETs until stop() or `maxRequests`; counts non-2xx answers and socket errors. */
function steadyLoad(url: string, concurrency: number, maxRequests: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let stopped = false;
  let sent = 0;
  const failures: string[] = [];
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stopped && sent < maxRequests) {
      sent += 1;
      try {
        const res = await request(url, { agent });
        if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
      } catch (error) {
        failures.push(String(error));
      }
    }
  });
  return {
    get sent() {
      return sent;
    },
    failures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

// The gateway, its backends and the load all share this process: at a load average of 15 an 80 ms check timeout
// marked healthy backends down and panic mode then sent traffic to the dead one. 400 ms tolerates that lag.
const checked = (list: readonly TestBackend[], extra = '') =>
  `pools:\n  web:\n    strategy: round-robin\n    healthCheck: { path: /healthz, interval: 500ms, timeout: 400ms, rise: 2, fall: 2, jitter: 0 }\n${extra}    backends:\n${list
    .map((b) => `      - { url: ${b.url}, id: ${b.name} }`)
    .join('\n')}\n`;

describe('fault tolerance through the gateway', () => {
  it('loses no request when a backend dies under load, sends it nothing while down, and takes it back after rise checks', async () => {
    const list = [await controlled('a'), await controlled('b'), await controlled('c')];
    const gw = await gateway(checked(list));
    const load = steadyLoad(`${gw.url}/`, 4, 20_000);
    try {
      await eventually(() => list[2]!.traffic > 20, 'traffic to reach c');
      // Abrupt death: listener closed and every open connection destroyed.
      await list[2]!.close();
      await eventually(() => stateOf(gw, 'c') === 'down', 'c to be marked down', 5_000);
      // Back on the same port, but failing its checks: it must get no traffic while down.
      await list[2]!.restart();
      list[2]!.healthy = false;
      const trafficWhenDown = list[2]!.traffic;
      const sentWhenDown = load.sent;
      await eventually(() => load.sent > sentWhenDown + 300, 'more load while c is down');
      expect(list[2]!.traffic).toBe(trafficWhenDown);
      list[2]!.healthy = true;
      await eventually(() => stateOf(gw, 'c') === 'up', 'c to rejoin', 5_000);
      await eventually(() => list[2]!.traffic > trafficWhenDown, 'c to get traffic again');
    } finally {
      await load.stop();
    }
    expect(load.failures).toEqual([]);
    const downLine = gw.logs.find((l) => l['msg'] === 'backend state changed' && l['backend'] === 'c' && l['to'] === 'down');
    expect(downLine).toBeDefined();
    expect(String(downLine!['reason'])).toMatch(/check/);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/balancer_backend_up\{pool="web",backend="c"\} 1/);
    expect(metrics).toMatch(/balancer_health_checks_total\{pool="web",backend="c",result="(fail|error)"\} [1-9]/);
  });

  it('takes out a backend that answers 500 to its checks', async () => {
    const list = [await controlled('a'), await controlled('b')];
    list[1]!.healthy = false;
    const gw = await gateway(checked(list));
    await eventually(() => stateOf(gw, 'b') === 'down', 'b to be down');
    const before = list[1]!.traffic;
    for (let i = 0; i < 20; i++) expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('a');
    expect(list[1]!.traffic).toBe(before);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/balancer_backend_up\{pool="web",backend="b"\} 0/);
  });

  it('ejects a backend failing real traffic for growing periods', async () => {
    const list = [await controlled('a'), await controlled('b'), await controlled('c')];
    list[1]!.trafficStatus = 500;
    const gw = await gateway(
      `pools:\n  web:\n    strategy: round-robin\n    outlierDetection: { consecutive5xx: 3, baseEjectionTime: 400ms, maxEjectionTime: 10s, maxEjectionPercent: 50 }\n    backends:\n${list
        .map((b) => `      - { url: ${b.url}, id: ${b.name} }`)
        .join('\n')}\n`,
    );
    const ejections = () => gw.logs.filter((l) => l['msg'] === 'backend state changed' && l['backend'] === 'b' && l['to'] === 'ejected');
    const load = steadyLoad(`${gw.url}/`, 2, 20_000);
    try {
      await eventually(() => ejections().length >= 3, 'three ejections of b', 15_000);
    } finally {
      await load.stop();
    }
    const durations = ejections().map((l) => Number(/ejected for (\d+)ms/.exec(String(l['reason']))?.[1]));
    // Each return on trial fails again at once (well within one base time, so no decay): 1x, 2x, 3x the base.
    expect(durations.slice(0, 3)).toEqual([400, 800, 1200]);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/balancer_outlier_ejections_total\{pool="web",backend="b"\} [3-9]/);
  });

  describe('a backend answering 500 to every request while its health check passes', () => {
    const failingButChecked = async (outlierExtra: string) => {
      const list = [await controlled('a'), await controlled('b')];
      list[1]!.trafficStatus = 500;
      const gw = await gateway(
        checked(list, `    outlierDetection: { consecutive5xx: 3, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50${outlierExtra} }\n`),
      );
      const changesOfB = () => gw.logs.filter((l) => l['msg'] === 'backend state changed' && l['backend'] === 'b');
      // Round robin: b gets every other request; sequential requests until it is ejected (bounded).
      for (let i = 0; i < 200 && stateOf(gw, 'b') !== 'ejected'; i++) await request(`${gw.url}/`);
      expect(stateOf(gw, 'b')).toBe('ejected');
      return { list, gw, changesOfB };
    };
    const statusOf = async (gw: TestGateway, id: string) => {
      const res = await fetch(`${gw.adminUrl}/api/v1/status`, { headers: { authorization: 'Bearer test-token' } });
      const body = (await res.json()) as { pools: Array<{ name: string; backends: Array<{ id: string; state: string; reason: string; ejectedUntil?: number; lastCheck?: { at: number } }> }> };
      return body.pools.find((p) => p.name === 'web')!.backends.find((b) => b.id === id)!;
    };

    it('with activeCheckUnejects: false stays ejected for its whole ejection time while checks keep passing, and says so', async () => {
      const { list, gw, changesOfB } = await failingButChecked(', activeCheckUnejects: false');
      const ejectedLine = changesOfB().at(-1)!;
      expect(ejectedLine).toMatchObject({ from: 'up', to: 'ejected', reason: '3 consecutive 5xx responses; ejected for 30000ms (ejection #1)' });
      // Five more passing checks (interval 500ms): before the option, the first of them brought b back.
      const checksAtEjection = list[1]!.checks;
      await eventually(() => list[1]!.checks >= checksAtEjection + 5, 'five more checks of b', 15_000);
      expect(stateOf(gw, 'b')).toBe('ejected');
      expect(changesOfB()).toHaveLength(1);
      const trafficOfB = list[1]!.traffic;
      for (let i = 0; i < 20; i++) expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('a');
      expect(list[1]!.traffic).toBe(trafficOfB);
      const status = await statusOf(gw, 'b');
      expect(status).toMatchObject({ state: 'ejected', reason: ejectedLine['reason'] });
      // Both on the gateway's clock: the ejection still has most of its 30 s to run after five passing checks.
      expect(status.ejectedUntil! - status.lastCheck!.at).toBeGreaterThan(20_000);
    });

    it('by default is brought back by the next passing check, and the log says so rather than "ejected for 30000ms"', async () => {
      const { gw, changesOfB } = await failingButChecked('');
      expect(changesOfB().at(-1)).toMatchObject({
        to: 'ejected',
        reason: '3 consecutive 5xx responses; ejected until the next passing active check, at most 30000ms (ejection #1)',
      });
      await eventually(() => stateOf(gw, 'b') === 'up', 'b to be brought back by a passing check', 10_000);
      expect(String(changesOfB().at(-1)!['reason'])).toMatch(/^active check passed: HTTP 200.*; ended after \d+ms an ejection for 3 consecutive 5xx responses$/);
      // It fails live requests again: the second ejection's reason tells the operator about activeCheckUnejects.
      for (let i = 0; i < 200 && stateOf(gw, 'b') !== 'ejected'; i++) await request(`${gw.url}/`);
      const second = changesOfB().at(-1)!;
      expect(second['to']).toBe('ejected');
      expect(String(second['reason'])).toMatch(/at most 60000ms \(ejection #2\); a passing active check ended the previous ejection after \d+ms .*activeCheckUnejects: false/);
      expect((await statusOf(gw, 'b')).reason).toBe(second['reason']);
    });
  });

  it('answers 503 with Retry-After when every backend is down and panic mode is off', async () => {
    const list = [await controlled('a'), await controlled('b')];
    for (const b of list) b.healthy = false;
    const gw = await gateway(checked(list, '    panicThreshold: 0\n'));
    await eventually(() => stateOf(gw, 'a') === 'down' && stateOf(gw, 'b') === 'down', 'both down');
    const res = await request(`${gw.url}/`);
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(res.body).error.code).toBe('NO_AVAILABLE_BACKEND');
  });

  it('spreads over all backends in panic mode instead of crushing the last healthy one', async () => {
    const list = [await controlled('a'), await controlled('b'), await controlled('c')];
    list[0]!.healthy = false;
    list[1]!.healthy = false;
    const gw = await gateway(checked(list));
    await eventually(() => stateOf(gw, 'a') === 'down' && stateOf(gw, 'b') === 'down', 'two of three down');
    const seen = new Set<string>();
    for (let i = 0; i < 9; i++) seen.add(String((await request(`${gw.url}/`)).headers['x-backend']));
    expect(seen).toEqual(new Set(['a', 'b', 'c']));
    expect(gw.logs.some((l) => l['msg'] === 'pool entered panic mode: routing to all non-draining backends')).toBe(true);
  });

  it('drains a backend: no new requests, its in-flight one finishes', async () => {
    const list = [await controlled('a'), await controlled('b')];
    let release: () => void = () => undefined;
    list[1]!.handle((req, res) => {
      if (req.url === '/healthz') {
        res.end();
        return;
      }
      if (req.url === '/slow') {
        release = () => res.end('slow done');
        return;
      }
      list[1]!.traffic += 1;
      res.writeHead(200, { 'x-backend': 'b' }).end('b');
    });
    const gw = await gateway(checked(list));
    // Round-robin: the first request goes to a, the second (slow) to b.
    await request(`${gw.url}/`);
    const slow = request(`${gw.url}/slow`);
    slow.catch(() => undefined);
    await eventually(() => gw.app.dataPlane.table.pools.get('web')!.pool.backends[1]!.inflight === 1, 'slow request in flight on b');
    const answer = await fetch(`${gw.adminUrl}/api/v1/pools/web/backends/b`, {
      method: 'PATCH',
      headers: { authorization: 'Bearer test-token', 'content-type': 'application/json' },
      body: JSON.stringify({ drain: true }),
    });
    expect(answer.status).toBe(200);
    expect(stateOf(gw, 'b')).toBe('draining');
    const before = list[1]!.traffic;
    for (let i = 0; i < 10; i++) expect((await request(`${gw.url}/`)).headers['x-backend']).toBe('a');
    expect(list[1]!.traffic).toBe(before);
    release();
    expect((await slow).body).toBe('slow done');
  });
});
