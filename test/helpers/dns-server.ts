// A tiny authoritative DNS server on loopback UDP for tests: A, AAAA and SRV answers from a table the test changes.

import dgram from 'node:dgram';

export interface SrvRecord {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

export interface DnsZone {
  a?: Record<string, readonly string[]>;
  aaaa?: Record<string, readonly string[]>;
  srv?: Record<string, readonly SrvRecord[]>;
}

export interface TestDnsServer {
  readonly port: number;
  /** `127.0.0.1:PORT`, for discovery.dns.servers. */
  readonly address: string;
  /** Replaces the answers; names are compared case-insensitively. */
  setZone(zone: DnsZone): void;
  /** `servfail`: every query is answered SERVFAIL; `silent`: none is answered (the client times out); `answer`: normal. */
  setMode(mode: 'answer' | 'servfail' | 'silent'): void;
  /** TTL (seconds) of every record from now on. */
  setTtl(seconds: number): void;
  /** Queries received so far, as `TYPE name`. */
  readonly queries: string[];
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_SRV = 33;
const TYPE_NAMES: Record<number, string> = { [TYPE_A]: 'A', [TYPE_AAAA]: 'AAAA', [TYPE_SRV]: 'SRV' };

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter((label) => label !== '');
  return Buffer.concat([...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')])), Buffer.from([0])]);
}

/** The question's name, type, and where the question section ends. */
function readQuestion(message: Buffer): { name: string; type: number; end: number } | null {
  let offset = 12;
  const labels: string[] = [];
  while (offset < message.length) {
    const length = message[offset]!;
    if (length === 0) break;
    if (length > 63) return null;
    labels.push(message.subarray(offset + 1, offset + 1 + length).toString('ascii'));
    offset += 1 + length;
  }
  if (offset + 5 > message.length) return null;
  return { name: labels.join('.').toLowerCase(), type: message.readUInt16BE(offset + 1), end: offset + 5 };
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((group, index) => out.writeUInt16BE(parseInt(group, 16), index * 2));
  return out;
}

function record(type: number, ttl: number, data: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0); // the question's name
  head.writeUInt16BE(type, 2);
  head.writeUInt16BE(1, 4); // IN
  head.writeUInt32BE(ttl, 6);
  head.writeUInt16BE(data.length, 10);
  return Buffer.concat([head, data]);
}

export async function startDnsServer(initial: DnsZone = {}): Promise<TestDnsServer> {
  let zone: DnsZone = initial;
  let mode: 'answer' | 'servfail' | 'silent' = 'answer';
  let ttl = 1;
  const queries: string[] = [];
  const socket = dgram.createSocket('udp4');

  const answer = (message: Buffer): Buffer | null => {
    if (message.length < 12) return null;
    const question = readQuestion(message);
    if (question === null) return null;
    queries.push(`${TYPE_NAMES[question.type] ?? question.type} ${question.name}`);
    if (mode === 'silent') return null;
    const records: Buffer[] = [];
    let known = false;
    const lookup = <T>(table: Record<string, readonly T[]> | undefined): readonly T[] | undefined =>
      table === undefined ? undefined : Object.entries(table).find(([name]) => name.toLowerCase() === question.name)?.[1];
    const a = lookup(zone.a);
    const aaaa = lookup(zone.aaaa);
    const srv = lookup(zone.srv);
    known = a !== undefined || aaaa !== undefined || srv !== undefined;
    if (question.type === TYPE_A) for (const address of a ?? []) records.push(record(TYPE_A, ttl, Buffer.from(address.split('.').map(Number))));
    if (question.type === TYPE_AAAA) for (const address of aaaa ?? []) records.push(record(TYPE_AAAA, ttl, ipv6Bytes(address)));
    if (question.type === TYPE_SRV) {
      for (const entry of srv ?? []) {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(entry.priority, 0);
        fixed.writeUInt16BE(entry.weight, 2);
        fixed.writeUInt16BE(entry.port, 4);
        records.push(record(TYPE_SRV, ttl, Buffer.concat([fixed, encodeName(entry.target)])));
      }
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(message.readUInt16BE(0), 0);
    // QR, AA, RD copied, RA; RCODE: 2 SERVFAIL, 3 NXDOMAIN for a name the zone does not have, else 0.
    const rcode = mode === 'servfail' ? 2 : known ? 0 : 3;
    header.writeUInt16BE(0x8400 | (message.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(mode === 'servfail' ? 0 : records.length, 6);
    return Buffer.concat([header, message.subarray(12, question.end), ...(mode === 'servfail' ? [] : records)]);
  };

  socket.on('message', (message, remote) => {
    const reply = answer(message);
    if (reply !== null) socket.send(reply, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const port = socket.address().port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    setZone: (next) => (zone = next),
    setMode: (next) => (mode = next),
    setTtl: (seconds) => (ttl = seconds),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

