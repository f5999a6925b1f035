// Consistent hashing, sticky cookies and backup backends through the proxy: real backends, real sockets, the App as `balancer start` runs it.

import type http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { acceptWebSocket, request, type TestBackend } from '../helpers/backend.js';
import { eventually } from '../helpers/wait.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';

const resources = perTestResources();

async function backends(n: number): Promise<TestBackend[]> {
  const list: TestBackend[] = [];
  for (let i = 0; i < n; i++) list.push(await resources.backend(`b${i + 1}`));
  return list;
}

function backendLines(list: readonly TestBackend[], extra: (b: TestBackend, i: number) => string = () => ''): string {
  return list.map((b, i) => `      - { url: ${b.url}, id: ${b.name}${extra(b, i)} }`).join('\n');
}

async function get(gw: TestGateway, path: string, headers: Record<string, string> = {}): Promise<{ backend: string; setCookie: string[] }> {
  const res = await request(`${gw.url}${path}`, { headers });
  expect(res.status).toBe(200);
  return { backend: String(res.headers['x-backend']), setCookie: res.headers['set-cookie'] ?? [] };
}

async function status(gw: TestGateway): Promise<{ pools: Array<Record<string, unknown> & { backends: Array<{ id: string; state: string; backup?: boolean }> }> }> {
  const res = await request(`${gw.adminUrl}/api/v1/status`, { headers: { authorization: 'Bearer test-token' } });
  return JSON.parse(res.body) as never;
}

describe('consistent hashing through the proxy', () => {
  it.each([
    ['ring-hash', '{ header: X-User }', (user: string) => ({ path: '/', headers: { 'x-user': user } })],
    ['maglev', '{ query: user }', (user: string) => ({ path: `/cart?user=${user}`, headers: {} })],
    ['maglev', '{ cookie: uid }', (user: string) => ({ path: '/', headers: { cookie: `theme=dark; uid=${user}` } })],
  ])('%s on %s sends each user to one backend, every time, and spreads users over the pool', async (strategy, hashOn, requestFor) => {
    const list = await backends(3);
    const gw = await resources.gateway(`pools:\n  web:\n    strategy: ${strategy}\n    hashOn: ${hashOn}\n    backends:\n${backendLines(list)}\n`);
    const placement = new Map<string, string>();
    for (let user = 0; user < 30; user++) {
      const { path, headers } = requestFor(`user-${user}`);
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) seen.add((await get(gw, path, headers)).backend);
      expect([...seen], `user-${user}`).toHaveLength(1);
      placement.set(`user-${user}`, [...seen][0]!);
    }
    expect(new Set(placement.values()).size).toBe(3);
    // A request without the value still gets an answer (a random backend).
    expect(['b1', 'b2', 'b3']).toContain((await get(gw, '/')).backend);
    const pool = (await status(gw)).pools[0]!;
    expect(pool['strategy']).toBe(strategy);
    expect(pool['hashOn']).toBeDefined();
  });

  it('keys on the client address past trusted proxies (sourceIp)', async () => {
    const list = await backends(3);
    const gw = await resources.gateway(`trustedProxies: [127.0.0.1]\npools:\n  web:\n    strategy: ring-hash\n    hashOn: sourceIp\n    backends:\n${backendLines(list)}\n`);
    const placement = new Map<string, string>();
    for (let client = 1; client <= 20; client++) {
      const address = `198.51.100.${client}`;
      const first = (await get(gw, '/', { 'x-forwarded-for': address })).backend;
      // What the client wrote further left is not trusted: only the address our trusted proxy vouched for counts.
      expect((await get(gw, '/', { 'x-forwarded-for': `203.0.113.99, ${address}` })).backend).toBe(first);
      placement.set(address, first);
    }
    expect(new Set(placement.values()).size).toBeGreaterThan(1);
  });

  it('moves a key off a backend that goes down, and only the keys it had, then back', async () => {
    const list = await backends(3);
    const gw = await resources.gateway(
      `pools:\n  web:\n    strategy: maglev\n    hashOn: { header: x-user }\n    healthCheck: { path: /, interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n    backends:\n${backendLines(list)}\n`,
    );
    const users = Array.from({ length: 24 }, (_, i) => `user-${i}`);
    const before = new Map<string, string>();
    for (const user of users) before.set(user, (await get(gw, '/', { 'x-user': user })).backend);
    const victim = before.get('user-0')!;
    const victimBackend = list.find((b) => b.name === victim)!;
    await victimBackend.close();
    await eventually(async () => (await status(gw)).pools[0]!.backends.find((b) => b.id === victim)!.state === 'down', `${victim} down`);
    for (const user of users) {
      const now = (await get(gw, '/', { 'x-user': user })).backend;
      if (before.get(user) === victim) expect(now).not.toBe(victim);
      else expect(now, user).toBe(before.get(user));
    }
    await victimBackend.restart();
    await eventually(async () => (await status(gw)).pools[0]!.backends.find((b) => b.id === victim)!.state === 'up', `${victim} up again`);
    for (const user of users) expect((await get(gw, '/', { 'x-user': user })).backend, user).toBe(before.get(user));
  });
});

describe('sticky sessions through the proxy', () => {
  it('sets a cookie naming the backend opaquely, keeps the client there, and fails over with a new cookie', async () => {
    const list = await backends(3);
    const gw = await resources.gateway(
      `pools:\n  web:\n    strategy: round-robin\n    sticky: { cookie: SRV, ttl: 1h, sameSite: Lax }\n    healthCheck: { path: /, interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n    backends:\n${backendLines(list)}\n`,
    );
    const first = await get(gw, '/');
    expect(first.setCookie).toHaveLength(1);
    const cookie = first.setCookie[0]!;
    expect(cookie).toMatch(/^SRV=[A-Za-z0-9_-]{16}; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/);
    // Opaque: neither the backend's id nor its address shows.
    const home = list.find((b) => b.name === first.backend)!;
    expect(cookie).not.toContain(home.name);
    expect(cookie).not.toContain(String(home.port));
    const value = cookie.split(';')[0]!;
    // Round-robin would rotate; the cookie holds the client on its backend, and is not set again.
    for (let i = 0; i < 6; i++) {
      const next = await get(gw, '/', { cookie: `a=b; ${value}` });
      expect(next.backend).toBe(first.backend);
      expect(next.setCookie).toEqual([]);
    }
    // Clients without the cookie still rotate.
    expect(new Set([(await get(gw, '/')).backend, (await get(gw, '/')).backend, (await get(gw, '/')).backend]).size).toBe(3);

    await home.close();
    // At once (the failed connect is retried elsewhere) or after the health check took it out: a new backend, a new cookie.
    const moved = await get(gw, '/', { cookie: value });
    expect(moved.backend).not.toBe(home.name);
    expect(moved.setCookie).toHaveLength(1);
    const newValue = moved.setCookie[0]!.split(';')[0]!;
    expect(newValue).not.toBe(value);
    await eventually(async () => (await status(gw)).pools[0]!.backends.find((b) => b.id === home.name)!.state === 'down', `${home.name} down`);
    for (let i = 0; i < 4; i++) expect((await get(gw, '/', { cookie: newValue })).backend).toBe(moved.backend);
    // The old cookie now lands wherever the strategy says, never on the dead backend, and is replaced.
    const stale = await get(gw, '/', { cookie: value });
    expect(stale.backend).not.toBe(home.name);
    expect(stale.setCookie).toHaveLength(1);
    // The new home stays home after the old one is back.
    await home.restart();
    await eventually(async () => (await status(gw)).pools[0]!.backends.find((b) => b.id === home.name)!.state === 'up', `${home.name} up again`);
    for (let i = 0; i < 4; i++) expect((await get(gw, '/', { cookie: newValue })).backend).toBe(moved.backend);
    expect((await get(gw, '/', { cookie: value })).backend).toBe(home.name);
  });
});

describe('backup backends through the proxy', () => {
  it('serve only while every primary is down, and hand traffic back when one returns', async () => {
    const list = await backends(3);
    const gw = await resources.gateway(
      `pools:\n  web:\n    strategy: round-robin\n    healthCheck: { path: /, interval: 500ms, timeout: 450ms, rise: 1, fall: 2 }\n    backends:\n${backendLines(list, (_b, i) => (i === 2 ? ', backup: true' : ''))}\n`,
    );
    const [p1, p2, backup] = list as [TestBackend, TestBackend, TestBackend];
    const names = async (n: number) => {
      const out = new Set<string>();
      for (let i = 0; i < n; i++) out.add((await get(gw, '/app')).backend);
      return out;
    };
    expect(await names(10)).toEqual(new Set(['b1', 'b2']));
    expect(backup.seen.filter((r) => r.url === '/app')).toHaveLength(0);
    let view = (await status(gw)).pools[0]!;
    expect(view['backupsServing']).toBe(false);
    expect(view.backends.map((b) => [b.id, b.backup])).toEqual([['b1', false], ['b2', false], ['b3', true]]);

    await p1.close();
    await eventually(async () => (await status(gw)).pools[0]!.backends[0]!.state === 'down', 'b1 down');
    expect(await names(6)).toEqual(new Set(['b2']));
    await p2.close();
    await eventually(async () => (await status(gw)).pools[0]!['backupsServing'] === true, 'backups serving');
    expect(await names(6)).toEqual(new Set(['b3']));
    view = (await status(gw)).pools[0]!;
    expect(view['panic']).toBe(false);

    await p1.restart();
    await eventually(async () => (await status(gw)).pools[0]!['backupsServing'] === false, 'primaries back');
    const servedBefore = backup.seen.filter((r) => r.url === '/app').length;
    expect(await names(6)).toEqual(new Set(['b1']));
    expect(backup.seen.filter((r) => r.url === '/app').length).toBe(servedBefore);
  });
});
describe('WebSocket upgrades', () => {
  /** Opens an upgrade through the gateway and returns the head of the 101 answer and which backend took it. */
  async function upgrade(gw: TestGateway, headers: Record<string, string>): Promise<{ head: string; backend: string }> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(gw.port, '127.0.0.1');
      let buffer = '';
      const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      socket.on('connect', () =>
        socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`),
      );
      socket.on('data', (data) => {
        buffer += data.toString('latin1');
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.destroy();
        const head = buffer.slice(0, end);
        resolve({ head, backend: /^x-backend: (.*)$/im.exec(head)?.[1] ?? '' });
      });
      socket.on('error', reject);
    });
  }

  function acceptUpgrades(list: readonly TestBackend[]): void {
    for (const b of list) {
      b.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
        acceptWebSocket(req, socket, `X-Backend: ${b.name}\r\n`);
        socket.on('error', () => socket.destroy());
        // The client hung up (the tunnel closes this side too): the backend's server can then close.
        socket.on('end', () => socket.destroy());
      });
    }
  }

  it('hash the same key to the same backend, and a sticky cookie is set on the 101 and followed', async () => {
    const list = await backends(3);
    acceptUpgrades(list);
    const gw = await resources.gateway(`pools:\n  web:\n    strategy: ring-hash\n    hashOn: { header: x-user }\n    sticky: { cookie: SRV }\n    backends:\n${backendLines(list)}\n`);
    for (let user = 0; user < 8; user++) {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) seen.add((await upgrade(gw, { 'x-user': `user-${user}` })).backend);
      expect(seen.size, `user-${user}`).toBe(1);
    }
    const first = await upgrade(gw, {});
    expect(first.head.startsWith('HTTP/1.1 101')).toBe(true);
    const cookie = /^set-cookie: (SRV=[^;]+);/im.exec(first.head)?.[1];
    expect(cookie).toBeDefined();
    for (let i = 0; i < 4; i++) {
      // The cookie beats the hash key: the client stays where its session is.
      const again = await upgrade(gw, { cookie: cookie!, 'x-user': `someone-else-${i}` });
      expect(again.backend).toBe(first.backend);
      expect(again.head).not.toMatch(/^set-cookie:/im);
    }
  });
});
