// The real lookup (node:dns with setServers) against a DNS server on loopback: A, AAAA and SRV answers, TTLs, failures.

import { afterEach, describe, expect, test } from 'vitest';
import { dnsLookup } from '../../src/discovery/dns-lookup.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.js';

let server: TestDnsServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

describe('dnsLookup through given servers', () => {
  test('A and AAAA: every address, with the TTL', async () => {
    server = await startDnsServer({ a: { 'web.test': ['127.0.0.2', '127.0.0.3'] }, aaaa: { 'web.test': ['::1', 'fd00::5'] } });
    server.setTtl(7);
    const servers = [server.address];
    const a = await dnsLookup({ name: 'web.test', type: 'A', servers });
    expect(a.targets.map((target) => target.address).sort()).toEqual(['127.0.0.2', '127.0.0.3']);
    expect(a.ttlMs).toBe(7_000);
    const aaaa = await dnsLookup({ name: 'web.test', type: 'AAAA', servers });
    expect(aaaa.targets.map((target) => target.address).sort()).toEqual(['::1', 'fd00::5']);
  });

  test('SRV: targets resolved to addresses, with ports and weights; records after the lowest priority are backups', async () => {
    server = await startDnsServer({
      srv: {
        '_http._tcp.web.test': [
          { priority: 10, weight: 3, port: 8001, target: 'one.web.test' },
          { priority: 10, weight: 0, port: 8002, target: 'two.web.test' },
          { priority: 20, weight: 1, port: 8003, target: 'spare.web.test' },
        ],
      },
      a: { 'one.web.test': ['127.0.0.2'], 'two.web.test': ['127.0.0.3'], 'spare.web.test': ['127.0.0.4'] },
    });
    const answer = await dnsLookup({ name: '_http._tcp.web.test', type: 'SRV', servers: [server.address] });
    expect([...answer.targets].sort((x, y) => x.address.localeCompare(y.address))).toEqual([
      { address: '127.0.0.2', port: 8001, weight: 3 },
      // Weight 0 ("rarely") is a backend weight of 1.
      { address: '127.0.0.3', port: 8002, weight: 1 },
      { address: '127.0.0.4', port: 8003, weight: 1, backup: true },
    ]);
  });

  test('a name the server does not have, and a server in trouble, are errors', async () => {
    server = await startDnsServer({ a: { 'web.test': ['127.0.0.2'] } });
    await expect(dnsLookup({ name: 'nothing.test', type: 'A', servers: [server.address] })).rejects.toMatchObject({ code: 'ENOTFOUND' });
    server.setMode('servfail');
    await expect(dnsLookup({ name: 'web.test', type: 'A', servers: [server.address] })).rejects.toMatchObject({ code: 'ESERVFAIL' });
  });

  test('a backend URL name without servers goes to the system resolver (/etc/hosts included)', async () => {
    const answer = await dnsLookup({ name: 'localhost', type: 'host', servers: null });
    expect(answer.targets.length).toBeGreaterThan(0);
    expect(answer.ttlMs).toBeNull();
  });
});
