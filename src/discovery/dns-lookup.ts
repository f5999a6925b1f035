// One DNS question answered: A/AAAA addresses with their TTL, SRV targets with ports and weights, through given servers or the system's.

import { lookup as systemLookup, promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import type { DnsRecordType } from '../config/schema.js';

/** One address an answer names; SRV answers carry the record's port and weight, and whether it is a backup. */
export interface DnsTarget {
  readonly address: string;
  readonly port?: number;
  readonly weight?: number;
  /** SRV: a record of a priority after the lowest one (RFC 2782: for when those fail), which a pool uses as a backup backend. */
  readonly backup?: boolean;
}

export interface DnsAnswer {
  readonly targets: readonly DnsTarget[];
  /** The smallest TTL (ms) of the records the answer was built from; null when the resolver tells none. */
  readonly ttlMs: number | null;
}

export interface DnsQuestion {
  readonly name: string;
  /** `host` asks the system resolver (getaddrinfo: /etc/hosts, then DNS) for a backend URL's name, as connections would. */
  readonly type: DnsRecordType | 'host';
  /** ip:port of DNS servers to ask; null: the system's (from /etc/resolv.conf). */
  readonly servers: readonly string[] | null;
}

export type DnsLookup = (question: DnsQuestion) => Promise<DnsAnswer>;

/** A lookup gives up after this per try (c-ares' default is 5 s per try, 4 tries: far too long for a balancer). */
const QUERY_TIMEOUT_MS = 2_000;
const QUERY_TRIES = 2;

function resolverFor(servers: readonly string[] | null): dns.Resolver {
  const resolver = new dns.Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES });
  if (servers !== null) resolver.setServers([...servers]);
  return resolver;
}

function minTtl(ttls: readonly number[]): number | null {
  return ttls.length === 0 ? null : Math.min(...ttls) * 1000;
}

async function addresses(resolver: dns.Resolver, name: string, type: 'A' | 'AAAA'): Promise<{ targets: DnsTarget[]; ttls: number[] }> {
  const records = type === 'A' ? await resolver.resolve4(name, { ttl: true }) : await resolver.resolve6(name, { ttl: true });
  return { targets: records.map((record) => ({ address: record.address })), ttls: records.map((record) => record.ttl) };
}

/**
 * SRV: every record, each target resolved to its addresses (A, else AAAA) through the same servers; records of a
 * priority after the lowest are for when those fail (RFC 2782), so they are marked backups.
 */
async function srvTargets(resolver: dns.Resolver, name: string): Promise<DnsAnswer> {
  const records = await resolver.resolveSrv(name);
  if (records.length === 0) return { targets: [], ttlMs: null };
  const best = Math.min(...records.map((record) => record.priority));
  const targets: DnsTarget[] = [];
  const ttls: number[] = [];
  for (const record of records) {
    let resolved: { targets: DnsTarget[]; ttls: number[] };
    if (isIP(record.name) !== 0) resolved = { targets: [{ address: record.name }], ttls: [] };
    else {
      resolved = await addresses(resolver, record.name, 'A').catch(async () => addresses(resolver, record.name, 'AAAA'));
    }
    // A weight of 0 means "rarely" (RFC 2782); a backend's weight is at least 1.
    const weight = Math.min(10_000, Math.max(1, record.weight));
    const backup = record.priority !== best;
    for (const target of resolved.targets) targets.push({ address: target.address, port: record.port, weight, ...(backup ? { backup } : {}) });
    ttls.push(...resolved.ttls);
  }
  return { targets, ttlMs: minTtl(ttls) };
}

function hostLookup(name: string): Promise<DnsAnswer> {
  return new Promise((resolve, reject) => {
    systemLookup(name, { all: true }, (error, found) => {
      if (error !== null) reject(error);
      else resolve({ targets: found.map((entry) => ({ address: entry.address })), ttlMs: null });
    });
  });
}

/** The real lookup: node:dns (c-ares) for DNS questions, getaddrinfo for a backend URL's name without servers. */
export const dnsLookup: DnsLookup = async (question) => {
  if (question.type === 'host' && question.servers === null) return hostLookup(question.name);
  const resolver = resolverFor(question.servers);
  if (question.type === 'SRV') return srvTargets(resolver, question.name);
  if (question.type === 'host') {
    // A name the pool's DNS servers resolve: A records, else AAAA.
    const found = await addresses(resolver, question.name, 'A').catch(async () => addresses(resolver, question.name, 'AAAA'));
    return { targets: found.targets, ttlMs: minTtl(found.ttls) };
  }
  const found = await addresses(resolver, question.name, question.type);
  return { targets: found.targets, ttlMs: minTtl(found.ttls) };
};
