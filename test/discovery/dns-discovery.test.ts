// DNS discovery on a fake clock: what pools expand to, when questions are asked again, and what a failed lookup keeps.

import { describe, expect, test } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { memoryLogger } from '../../src/log.js';
import { DnsDiscovery } from '../../src/discovery/dns-discovery.js';
import type { DnsAnswer, DnsQuestion } from '../../src/discovery/dns-lookup.js';
import { validateReplicated } from '../../src/config/validate.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';

function config(plain: unknown): ReplicatedConfig {
  const result = validateReplicated(plain);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

/** A lookup answering from a table the test edits; an Error in the table is thrown. */
function fakeDns() {
  const table = new Map<string, DnsAnswer | Error>();
  const asked: string[] = [];
  const lookup = async (question: DnsQuestion): Promise<DnsAnswer> => {
    const key = `${question.type} ${question.name}`;
    asked.push(key);
    const entry = table.get(key);
    if (entry === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${question.name}`), { code: 'ENOTFOUND' });
    if (entry instanceof Error) throw entry;
    return entry;
  };
  return { table, asked, lookup };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

const POOL = { discovery: { dns: { name: 'web.internal', port: 8080, interval: '30s' } }, backends: [] };

describe('discovered backends', () => {
  test('every address is a backend (id address:port), sorted, drained when the config says so', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.9' }, { address: '10.0.0.2' }], ttlMs: 60_000 });
    let changes = 0;
    const discovery = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => changes++ });
    const replicated = config({ pools: { web: { ...POOL, discovery: { dns: { ...POOL.discovery.dns, drain: ['10.0.0.9:8080'] } } } } });
    discovery.update(replicated);
    await discovery.settled(1_000);
    expect(changes).toBe(1);
    const expanded = discovery.expand(replicated).pools['web']!;
    expect(expanded.backends).toEqual([
      { id: '10.0.0.2:8080', url: 'http://10.0.0.2:8080', weight: 1, drain: false, backup: false, discovered: true },
      { id: '10.0.0.9:8080', url: 'http://10.0.0.9:8080', weight: 1, drain: true, backup: false, discovered: true },
    ]);
    // The replicated config itself is untouched.
    expect(replicated.pools['web']!.backends).toEqual([]);
    expect(discovery.status(replicated.pools['web']!)).toEqual({ name: 'web.internal', type: 'A', servers: null, found: 2, failures: 0, lastError: null });
    discovery.stop();
  });

  test('SRV gives ports, weights and backups; a listed backend with the same id wins', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    dns.table.set('SRV _http._tcp.web.internal', {
      targets: [
        { address: '10.0.0.2', port: 9001, weight: 5 },
        { address: '10.0.0.3', port: 9002, weight: 1 },
        { address: '10.0.0.4', port: 9003, weight: 2, backup: true },
      ],
      ttlMs: null,
    });
    const discovery = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => {} });
    const replicated = config({
      pools: { web: { discovery: { dns: { name: '_http._tcp.web.internal', type: 'SRV', scheme: 'https' } }, tls: { serverName: 'web.internal' }, backends: [{ url: 'https://10.0.0.3:9002', weight: 7 }] } },
    });
    discovery.update(replicated);
    await discovery.settled(1_000);
    expect(discovery.expand(replicated).pools['web']!.backends).toEqual([
      { id: '10.0.0.3:9002', url: 'https://10.0.0.3:9002', weight: 7, drain: false, backup: false },
      { id: '10.0.0.2:9001', url: 'https://10.0.0.2:9001', weight: 5, drain: false, backup: false, discovered: true },
      // An SRV record of a later priority is a backup backend.
      { id: '10.0.0.4:9003', url: 'https://10.0.0.4:9003', weight: 2, drain: false, backup: true, discovered: true },
    ]);
    discovery.stop();
  });

  test('asks again at the TTL, never sooner than 1 s nor later than the interval; a changed answer is news, the same one is not', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.2' }], ttlMs: 5_000 });
    let changes = 0;
    const discovery = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => changes++ });
    discovery.update(config({ pools: { web: POOL } }));
    await settle();
    expect(dns.asked).toEqual(['A web.internal']);
    clock.advance(4_999);
    await settle();
    expect(dns.asked.length).toBe(1);
    clock.advance(1);
    await settle();
    expect(dns.asked.length).toBe(2);
    expect(changes).toBe(1);
    // A TTL of 0 does not turn into a lookup loop; a TTL above the interval waits only the interval.
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.3' }], ttlMs: 0 });
    clock.advance(5_000);
    await settle();
    expect(changes).toBe(2);
    clock.advance(999);
    await settle();
    expect(dns.asked.length).toBe(3);
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.3' }], ttlMs: 3_600_000 });
    clock.advance(1);
    await settle();
    expect(dns.asked.length).toBe(4);
    clock.advance(30_000);
    await settle();
    expect(dns.asked.length).toBe(5);
    expect(changes).toBe(2);
    discovery.stop();
    clock.advance(120_000);
    await settle();
    expect(dns.asked.length).toBe(5);
  });

  test('a failed or empty answer keeps the last good one, says so once, and is retried sooner', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    const logger = memoryLogger('debug');
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.2' }], ttlMs: null });
    const discovery = new DnsDiscovery({ clock, logger, lookup: dns.lookup, onChange: () => {} });
    const replicated = config({ pools: { web: POOL } });
    discovery.update(replicated);
    await settle();
    dns.table.set('A web.internal', Object.assign(new Error('queryA ETIMEOUT web.internal'), { code: 'ETIMEOUT' }));
    clock.advance(30_000);
    await settle();
    const kept = discovery.expand(replicated).pools['web']!.backends.map((backend) => backend.id);
    expect(kept).toEqual(['10.0.0.2:8080']);
    const warnings = logger.lines.filter((line) => line['msg'] === 'DNS lookup failed; keeping the last answer');
    expect(warnings).toEqual([expect.objectContaining({ name: 'web.internal', err: 'queryA ETIMEOUT web.internal', kept: ['10.0.0.2'] })]);
    // Retried after 1 s, 2 s, 4 s ...: the same failure is not logged again at warn.
    clock.advance(1_000);
    await settle();
    clock.advance(2_000);
    await settle();
    expect(dns.asked.length).toBe(4);
    expect(logger.lines.filter((line) => line['msg'] === 'DNS lookup failed; keeping the last answer').length).toBe(1);
    expect(discovery.status(replicated.pools['web']!)).toMatchObject({ found: 1, failures: 3, lastError: 'queryA ETIMEOUT web.internal' });
    // An empty answer is no better than none.
    dns.table.set('A web.internal', { targets: [], ttlMs: null });
    clock.advance(4_000);
    await settle();
    expect(discovery.expand(replicated).pools['web']!.backends.map((backend) => backend.id)).toEqual(['10.0.0.2:8080']);
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.5' }], ttlMs: null });
    clock.advance(8_000);
    await settle();
    expect(discovery.expand(replicated).pools['web']!.backends.map((backend) => backend.id)).toEqual(['10.0.0.5:8080']);
    expect(logger.lines.some((line) => line['msg'] === 'DNS lookup answered again')).toBe(true);
    discovery.stop();
  });

  test('a backend URL that names a host gets the address, and keeps it while the answers still name it', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    dns.table.set('host api.internal', { targets: [{ address: '10.0.0.2' }, { address: '10.0.0.3' }], ttlMs: null });
    const discovery = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => {} });
    const replicated = config({ pools: { api: { backends: [{ url: 'http://api.internal:8080' }, { url: 'http://10.0.0.9:8080' }] } } });
    expect(discovery.expand(replicated)).toBe(replicated);
    discovery.update(replicated);
    await settle();
    expect(dns.asked).toEqual(['host api.internal']);
    const first = discovery.expand(replicated).pools['api']!.backends;
    expect(first).toEqual([
      { id: 'api.internal:8080', url: 'http://api.internal:8080', weight: 1, drain: false, backup: false, addresses: ['10.0.0.2', '10.0.0.3'] },
      { id: '10.0.0.9:8080', url: 'http://10.0.0.9:8080', weight: 1, drain: false, backup: false },
    ]);
    dns.table.set('host api.internal', { targets: [{ address: '10.0.0.4' }, { address: '10.0.0.2' }], ttlMs: null });
    clock.advance(30_000);
    await settle();
    expect(discovery.expand(replicated).pools['api']!.backends[0]!.addresses).toEqual(['10.0.0.2', '10.0.0.4']);
    dns.table.set('host api.internal', { targets: [{ address: '10.0.0.4' }], ttlMs: null });
    clock.advance(30_000);
    await settle();
    expect(discovery.expand(replicated).pools['api']!.backends[0]!.addresses).toEqual(['10.0.0.4']);
    // A config without the name stops the questions.
    discovery.update(config({ pools: { api: { backends: [{ url: 'http://10.0.0.9:8080' }] } } }));
    clock.advance(120_000);
    await settle();
    expect(dns.asked.length).toBe(3);
    discovery.stop();
  });
});

describe('an edit of backends\' weight, drain or backup flags', () => {
  test('asks nothing again and expands from the last expansion: the edited backends put in with their addresses, the others kept as they were', async () => {
    const clock = new FakeClock();
    const dns = fakeDns();
    dns.table.set('A web.internal', { targets: [{ address: '10.0.0.9' }], ttlMs: 60_000 });
    dns.table.set('host api-1.internal', { targets: [{ address: '10.0.1.1' }], ttlMs: 60_000 });
    dns.table.set('host api-2.internal', { targets: [{ address: '10.0.1.2' }], ttlMs: 60_000 });
    const discovery = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => {} });
    const backends = [{ url: 'http://api-1.internal:80', id: 'one' }, { url: 'http://api-2.internal:80', id: 'two' }, { url: 'http://10.0.0.3:80', id: 'three' }];
    const first = config({ pools: { web: { ...POOL, backends } } });
    discovery.update(first);
    await discovery.settled(1_000);
    const before = discovery.expand(first).pools['web']!;
    const asked = dns.asked.length;
    // What the config reducer makes of an edit of one backend: a new pool object and backend, the others kept.
    const edit = (config: ReplicatedConfig, index: number, patch: Record<string, unknown>): ReplicatedConfig => {
      const pool = config.pools['web']!;
      const edited = [...pool.backends];
      edited[index] = { ...edited[index]!, ...patch };
      return { routes: config.routes, pools: { web: { ...pool, backends: edited } } };
    };
    const heavier = edit(first, 1, { weight: 4 });
    discovery.update(heavier);
    const after = discovery.expand(heavier).pools['web']!;
    expect(dns.asked.length).toBe(asked);
    expect(after.backends[1]).toEqual({ ...heavier.pools['web']!.backends[1]!, addresses: ['10.0.1.2'] });
    // Kept as the very objects they were (nothing looked at again), the found one included.
    for (const index of [0, 2, 3]) expect(after.backends[index]).toBe(before.backends[index]);
    // What a node expanding the edited config afresh gets.
    const fresh = new DnsDiscovery({ clock, logger: memoryLogger(), lookup: dns.lookup, onChange: () => {} });
    fresh.update(heavier);
    await fresh.settled(1_000);
    expect(after).toEqual(fresh.expand(heavier).pools['web']!);
    const drained = edit(heavier, 2, { drain: true });
    discovery.update(drained);
    expect(discovery.expand(drained).pools['web']!.backends[2]).toBe(drained.pools['web']!.backends[2]);
    // A new answer is expanded anew.
    dns.table.set('host api-1.internal', { targets: [{ address: '10.0.1.7' }], ttlMs: 60_000 });
    clock.advance(60_000);
    await settle();
    expect(discovery.expand(drained).pools['web']!.backends[0]!.addresses).toEqual(['10.0.1.7']);
    // So is a URL edit.
    const moved = edit(drained, 1, { url: 'http://api-1.internal:81' });
    discovery.update(moved);
    expect(discovery.expand(moved).pools['web']!.backends[1]).toMatchObject({ url: 'http://api-1.internal:81', addresses: ['10.0.1.7'] });
    fresh.stop();
    discovery.stop();
  });
});
