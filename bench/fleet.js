// The benchmark's fleet numbers: 3 voters and L learners as real `balancer start` processes on loopback, for several L:
// Raft connections, learner join time, config changes applied on every node, idle and per-change CPU, leader RSS, failover.

/*
 * Times come from the nodes' own JSON log lines ('config applied' carries the version and a millisecond ISO time;
 * every process runs on this machine's one clock), so nothing polls 43 admin APIs while it is measured. A learner's
 * join time runs from the 200 of its POST /api/v1/cluster/members (the membership entry is committed) to its first
 * 'config applied' at a version at least the leader's then. Raft connection ends are the established TCP sockets in
 * /proc/net/tcp whose local or remote port is a node's Raft port: both ends of a loopback connection are listed,
 * so a connection counts twice. CPU is utime+stime from /proc/<pid>/stat (10 ms ticks).
 */

import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agreedLeader, call, getJson, percentile, until } from './cluster.js';
import { killOwned, onJsonLines, spawnOwned, stopOwned, treeCpuMicros, treeRssBytes } from './lib/proc.js';
import { BALANCER_NODE_FLAGS } from './lib/targets.js';
import { freePort } from '../test/helpers/ports.js';
import { tcpSockets } from '../test/helpers/tcp-sockets.js';

const ADMIN_TOKEN = 'bench-admin-token';
const CLUSTER_SECRET = 'bench-cluster-secret-0123456789';
const VOTERS = ['n1', 'n2', 'n3'];
const POOL = 'web';
const START_TIMEOUT_MS = 30_000;
const APPLY_TIMEOUT_MS = 15_000;
const STARTS_AT_ONCE = 4;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value) => (value === null || value === undefined || !Number.isFinite(value) ? null : Math.round(value * 10) / 10);

/** Established TCP socket ends on loopback with a Raft port at either end. */
function raftConnectionEnds(raftPorts) {
  return tcpSockets().filter((socket) => socket.state === 'ESTABLISHED' && (raftPorts.has(socket.localPort) || raftPorts.has(socket.remotePort))).length;
}

/** Three tiny backends the pools health-check, as the shipped config does (GET /healthz every 2 s). */
async function startBackends() {
  const servers = [];
  for (let i = 0; i < 3; i++) {
    const server = http.createServer((_req, res) => res.end('ok'));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
    servers.push(server);
  }
  return { ports: servers.map((s) => /** @type {import('node:net').AddressInfo} */ (s.address()).port), close: () => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))) };
}

class Fleet {
  constructor(root, bin, log) {
    this.root = root;
    this.bin = bin;
    this.log = log;
    this.nodes = new Map();
    this.taken = new Set();
  }

  async prepare(learnerCount, backendPorts) {
    const ids = [...VOTERS, ...Array.from({ length: learnerCount }, (_, i) => `l${i + 1}`)];
    for (const id of ids) this.nodes.set(id, { id, voter: VOTERS.includes(id), dir: join(this.root, id), raftPort: await freePort(this.taken), child: null, admin: null, applied: new Map(), waiters: new Set() });
    const voterPeers = VOTERS.map((id) => `${id}: 127.0.0.1:${this.nodes.get(id).raftPort}`).join(', ');
    const backends = backendPorts.map((port, i) => `      - { url: http://127.0.0.1:${port}, id: web-${i + 1}${i === 0 ? ', weight: 2' : ''} }`);
    for (const node of this.nodes.values()) {
      mkdirSync(node.dir, { recursive: true });
      const peers = node.voter ? voterPeers : `${voterPeers}, ${node.id}: 127.0.0.1:${node.raftPort}`;
      writeFileSync(
        join(node.dir, 'balancer.yaml'),
        [
          `# ${node.id}: written by bench/fleet.js`,
          'listen: 127.0.0.1:0',
          'admin:',
          '  listen: 127.0.0.1:0',
          `  token: ${ADMIN_TOKEN}`,
          'log: { level: info }',
          'cluster:',
          `  nodeId: ${node.id}`,
          `  listen: 127.0.0.1:${node.raftPort}`,
          '  dataDir: ./data',
          `  peers: { ${peers} }`,
          `  secret: ${CLUSTER_SECRET}`,
          ...(node.voter ? [] : ['  join: true']),
          'routes:',
          '  - match: { pathPrefix: / }',
          `    pool: ${POOL}`,
          'pools:',
          `  ${POOL}:`,
          '    strategy: weighted',
          '    backends:',
          ...backends,
          '    healthCheck: { path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3 }',
          '',
        ].join('\n'),
      );
    }
    return ids;
  }

  get(id) {
    return this.nodes.get(id);
  }

  alive() {
    return [...this.nodes.values()].filter((node) => node.child !== null);
  }

  raftPorts() {
    return new Set([...this.nodes.values()].map((node) => node.raftPort));
  }

  /** Starts a node; resolves at its 'balancer started' line. Every 'config applied' line is recorded with its log time. */
  async start(id) {
    const node = this.nodes.get(id);
    const env = { ...process.env };
    delete env.BALANCER_ADMIN_TOKEN;
    const child = spawnOwned(process.execPath, [...BALANCER_NODE_FLAGS, this.bin, 'start', '-c', join(node.dir, 'balancer.yaml')], { cwd: node.dir, env });
    node.child = child;
    node.applied = new Map();
    child.stdout.resume();
    child.once('exit', () => {
      if (node.child === child) {
        node.child = null;
        node.admin = null;
      }
    });
    const started = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id}: no 'balancer started' within ${START_TIMEOUT_MS} ms; log tail: ${child.stderrText.slice(-1500)}`)), START_TIMEOUT_MS);
      child.once('exit', (code, signal) => reject(new Error(`${id} exited (${code ?? signal}) before it started; log tail: ${child.stderrText.slice(-1500)}`)));
      onJsonLines(child.stderr, (line) => {
        if (line.msg === 'balancer started') {
          clearTimeout(timer);
          resolve(line);
        } else if (line.msg === 'config applied' && !node.applied.has(line.version)) {
          node.applied.set(line.version, Date.parse(line.time));
          for (const waiter of node.waiters) waiter();
        }
      });
    });
    const line = await started;
    node.admin = `http://${line.admin}`;
    return node;
  }

  async startAll(ids) {
    for (let i = 0; i < ids.length; i += STARTS_AT_ONCE) await Promise.all(ids.slice(i, i + STARTS_AT_ONCE).map((id) => this.start(id)));
  }

  /** Resolves with the log time at which `id` first applied a version >= `version`. */
  appliedAt(id, version, timeoutMs = APPLY_TIMEOUT_MS) {
    const node = this.nodes.get(id);
    const found = () => {
      let first = null;
      for (const [v, at] of node.applied) if (v >= version && (first === null || at < first)) first = at;
      return first;
    };
    return new Promise((resolve, reject) => {
      const now = found();
      if (now !== null) return resolve(now);
      const waiter = () => {
        const at = found();
        if (at === null) return;
        clearTimeout(timer);
        node.waiters.delete(waiter);
        resolve(at);
      };
      const timer = setTimeout(() => {
        node.waiters.delete(waiter);
        reject(new Error(`${id} did not apply version ${version} within ${timeoutMs} ms`));
      }, timeoutMs);
      node.waiters.add(waiter);
    });
  }

  async leader(among = VOTERS.filter((id) => this.nodes.get(id).child !== null)) {
    const admins = among.map((id) => this.nodes.get(id).admin);
    return (await until(() => agreedLeader(admins), 'a leader every voter agrees on', 20_000, 20)).leader;
  }

  cpuMicros(ids) {
    let total = 0;
    for (const id of ids) {
      const child = this.nodes.get(id).child;
      if (child !== null) total += treeCpuMicros(child.pid).micros;
    }
    return total;
  }

  async stopAll() {
    await Promise.all(this.alive().map((node) => stopOwned(node.child, 3000)));
  }
}

async function versionOf(fleet, id) {
  return (await getJson(fleet.get(id).admin, '/api/v1/status')).version;
}

/** One weight change through `writer`; resolves with its ack time and when every running node applied it (ms from the send). */
async function timedChange(fleet, writer, weight) {
  const sent = Date.now();
  const res = await call(fleet.get(writer).admin, 'PATCH', `/api/v1/pools/${POOL}/backends/web-2`, { body: { weight }, timeoutMs: APPLY_TIMEOUT_MS });
  const ackMs = Date.now() - sent;
  if (res.status !== 200) throw new Error(`PATCH through ${writer} answered ${res.status}: ${res.body.slice(0, 300)}`);
  const version = JSON.parse(res.body).version;
  const times = await Promise.all(fleet.alive().map((node) => fleet.appliedAt(node.id, version)));
  const lastAppliedAt = Math.max(...times);
  return { ackMs, appliedEverywhereMs: lastAppliedAt - sent, lastAppliedAt, version };
}

function summary(values) {
  return { samples: values.length, p50: round1(percentile(values, 50)), p90: round1(percentile(values, 90)), max: round1(values.length ? Math.max(...values) : null) };
}

/** One fleet size: start, join learners one by one, idle, 30 changes, kill the leader. Returns the row. */
async function measureFleet({ bin, root, learners, plan, log, backendPorts }) {
  const fleet = new Fleet(join(root, `fleet-${learners}`), bin, log);
  const row = { learners, nodes: 3 + learners };
  try {
    const ids = await fleet.prepare(learners, backendPorts);
    await fleet.startAll(VOTERS);
    const leader = await fleet.leader();
    await fleet.appliedAt(leader, 1);
    const learnerIds = ids.filter((id) => !VOTERS.includes(id));
    await fleet.startAll(learnerIds);
    const joins = [];
    for (const id of learnerIds) {
      const version = await versionOf(fleet, leader);
      const added = await call(fleet.get(leader).admin, 'POST', '/api/v1/cluster/members', { body: { id, address: `127.0.0.1:${fleet.get(id).raftPort}`, learner: true }, timeoutMs: APPLY_TIMEOUT_MS });
      const committedAt = Date.now();
      if (added.status !== 200) throw new Error(`adding ${id} answered ${added.status}: ${added.body.slice(0, 300)}`);
      joins.push((await fleet.appliedAt(id, version)) - committedAt);
    }
    row.learnerJoinMs = summary(joins);
    log(`fleet L=${learners}: ${learners} learners joined, first config after p50 ${row.learnerJoinMs.p50} / p90 ${row.learnerJoinMs.p90} ms`);

    const joinedAt = Date.now();
    // Let the first health checks and slow start pass before the first idle window.
    await sleep(plan.settleMs);
    row.raftConnectionEnds = raftConnectionEnds(fleet.raftPorts());
    const everyone = fleet.alive().map((node) => node.id);
    const idleCpu = async () => {
      const before = { all: fleet.cpuMicros(everyone), leader: fleet.cpuMicros([leader]) };
      const started = Date.now();
      await sleep(plan.idleMs);
      const wall = (Date.now() - started) * 1000;
      return { all: (100 * (fleet.cpuMicros(everyone) - before.all)) / wall, leader: (100 * (fleet.cpuMicros([leader]) - before.leader)) / wall };
    };
    // Right after the joins the nodes still run start-up work: V8's memory reducer (a few full collections some
    // seconds after the start-up allocations) and code not yet compiled by the optimising tier.
    row.idleCpuAfterJoinsPercent = round1((await idleCpu()).all);
    // Steady idle: what a fleet left alone burns, measured once start-up work is over.
    await sleep(Math.max(0, joinedAt + plan.steadyAfterMs - Date.now()));
    const steady = await idleCpu();
    row.idleCpuAllPercent = round1(steady.all);
    row.idleCpuPerNodePercent = round1(steady.all / everyone.length);
    row.idleCpuLeaderPercent = round1(steady.leader);
    row.leaderRssMb = round1(treeRssBytes(fleet.get(leader).child.pid) / 2 ** 20);

    const followers = everyone.filter((id) => id !== leader);
    const cpuBefore = { leader: fleet.cpuMicros([leader]), others: fleet.cpuMicros(followers) };
    const changesStarted = Date.now();
    const acks = [];
    const applied = [];
    for (let i = 0; i < plan.changes; i++) {
      const change = await timedChange(fleet, leader, 2 + (i % 20));
      acks.push(change.ackMs);
      applied.push(change.appliedEverywhereMs);
    }
    const changesWall = Date.now() - changesStarted;
    // CPU during the changes less what the same nodes burn idle over that time, per change.
    // p% of a core for w ms is p * 10 * w µs.
    const idleShare = (percent) => percent * 10 * changesWall;
    const leaderCpu = fleet.cpuMicros([leader]) - cpuBefore.leader - idleShare(row.idleCpuLeaderPercent);
    const othersCpu = fleet.cpuMicros(followers) - cpuBefore.others - idleShare(row.idleCpuAllPercent - row.idleCpuLeaderPercent);
    row.changeAckMs = summary(acks);
    row.changeAppliedEverywhereMs = summary(applied);
    row.cpuPerChangeLeaderMs = round1(leaderCpu / plan.changes / 1000);
    row.cpuPerChangeFollowerMs = round1(othersCpu / plan.changes / followers.length / 1000);
    log(
      `fleet L=${learners}: ${row.raftConnectionEnds} Raft connection ends; idle ${row.idleCpuAllPercent}% of a core for all; ` +
        `${plan.changes} changes applied everywhere p50 ${row.changeAppliedEverywhereMs.p50} ms; CPU per change leader ${row.cpuPerChangeLeaderMs} ms, follower ${row.cpuPerChangeFollowerMs} ms`,
    );

    // Failover: kill -9 the leader, then time a new leader the voters agree on and a change applied on every survivor.
    const killedAt = Date.now();
    killOwned(fleet.get(leader).child, 'SIGKILL');
    await until(async () => (fleet.get(leader).child === null ? true : undefined), `${leader} to exit`, 5000, 10);
    const survivors = VOTERS.filter((id) => id !== leader);
    const newLeader = await fleet.leader(survivors);
    row.failoverLeaderMs = Date.now() - killedAt;
    const change = await until(
      async () => {
        try {
          return await timedChange(fleet, newLeader, 99);
        } catch (error) {
          if (/answered 5\d\d/.test(error.message)) return undefined;
          throw error;
        }
      },
      'the first change after the failover',
      20_000,
      50,
    );
    row.failoverAppliedEverywhereMs = change.lastAppliedAt - killedAt;
    log(`fleet L=${learners}: leader ${leader} killed; ${newLeader} leads after ${row.failoverLeaderMs} ms; a change applied on all ${fleet.alive().length} survivors ${row.failoverAppliedEverywhereMs} ms after the kill`);
    row.status = 'measured';
  } catch (error) {
    row.status = `failed: ${error.message}`;
    log(`fleet L=${learners} FAILED: ${error.message}`);
  } finally {
    await fleet.stopAll();
  }
  return row;
}

/** Runs every fleet size in `plan.learners` in `workDir`; never throws (a failed size says so in its row). */
export async function measureFleetBench({ bin, workDir, log, plan }) {
  const root = join(workDir, 'fleet');
  mkdirSync(root, { recursive: true });
  const backends = await startBackends();
  const rows = [];
  try {
    for (const learners of plan.learners) rows.push(await measureFleet({ bin, root, learners, plan, log, backendPorts: backends.ports }));
  } finally {
    await backends.close();
  }
  return { status: 'measured', date: new Date().toISOString(), settings: { voters: VOTERS.length, ...plan }, rows };
}

const cell = (value) => (value === null || value === undefined ? '—' : String(value));

/** The markdown lines of the fleet section. */
export function renderFleetMarkdown(fleet) {
  const s = fleet.settings;
  const out = [
    `**Fleet** (${s.voters} voters and L learners, each its own \`balancer start\` process on this machine, shipped-size pool with health checks every 2 s; ` +
      `learners added one by one through the leader; ${s.changes} weight changes through the leader; idle CPU over ${s.idleMs / 1000} s, ` +
      `${s.settleMs / 1000} s after the last join and again ${s.steadyAfterMs / 1000} s after it (steady); measured ${fleet.date}):`,
    '',
    '| L | Raft connection ends | learner join p50 / p90 ms | change applied on every node p50 / p90 ms | idle CPU right after the joins, all nodes % of a core | steady idle CPU, all nodes % of a core | steady idle CPU per node % | CPU per change, leader ms | per follower ms | leader RSS MB | failover: new leader ms | first change on every survivor ms |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of fleet.rows) {
    if (r.status !== 'measured') {
      out.push(`| ${r.learners} | ${r.status} ||||||||||| |`);
      continue;
    }
    out.push(
      `| ${r.learners} | ${cell(r.raftConnectionEnds)} | ${cell(r.learnerJoinMs.p50)} / ${cell(r.learnerJoinMs.p90)} | ${cell(r.changeAppliedEverywhereMs.p50)} / ${cell(r.changeAppliedEverywhereMs.p90)} | ` +
        `${cell(r.idleCpuAfterJoinsPercent)} | ${cell(r.idleCpuAllPercent)} | ${cell(r.idleCpuPerNodePercent)} | ${cell(r.cpuPerChangeLeaderMs)} | ${cell(r.cpuPerChangeFollowerMs)} | ${cell(r.leaderRssMb)} | ${cell(r.failoverLeaderMs)} | ${cell(r.failoverAppliedEverywhereMs)} |`,
    );
  }
  return out;
}
