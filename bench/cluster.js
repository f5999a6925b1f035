// The benchmark's cluster numbers: three real `balancer start -c FILE` processes on loopback; how long a config change takes
// until every node applied it, and how long after kill -9 of the leader a survivor accepts writes again.

/*
 * Applied-on-a-node is read from that node's GET /api/v1/status `version` (its own state machine, not a linearizable read:
 * GET /api/v1/config would ask the leader and wait, which measures something else). Each node is polled on its own
 * loop every POLL_MS over a keep-alive connection, so "applied everywhere" carries up to about POLL_MS + one loopback
 * round trip of sampling error. Writes are sequential and nothing else writes, so the first version above the one all
 * nodes showed before a write is that write's.
 */

import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { killOwned, onJsonLines, spawnOwned, stopOwned } from './lib/proc.js';
import { freePort } from '../test/helpers/ports.js';
import { median } from './lib/stats.js';

const ADMIN_TOKEN = 'bench-admin-token';
const CLUSTER_SECRET = 'bench-cluster-secret-0123456789';
const ELECTION_TIMEOUT_MS = 1000; // the config default, written out so the file says what was measured
const HEARTBEAT_MS = 100;
const POLL_MS = 2;
const WRITE_RETRY_MS = 20;
const RETRY_ATTEMPT_MS = 250;
const POOL = 'web';
const BACKEND = 'web-1';
const START_TIMEOUT_MS = 20_000;
const APPLY_TIMEOUT_MS = 10_000;
const FAILOVER_TIMEOUT_MS = 30_000;
const CATCH_UP_TIMEOUT_MS = 30_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One keep-alive agent, so the 2 ms polls do not each pay a TCP handshake.
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/**
 * One admin API call with a deadline; resolves { status, body } or rejects on connection errors and timeouts.
 * @param {string} base
 * @param {string} method
 * @param {string} path
 * @param {{ body?: unknown, timeoutMs?: number }} [options]
 */
export function call(base, method, path, options = {}) {
  const { body, timeoutMs = 5000 } = options;
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const text = body === undefined ? undefined : JSON.stringify(body);
    if (text !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(text);
    }
    const req = http.request(`${base}${path}`, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`${method} ${path} timed out after ${timeoutMs} ms`), { code: 'TIMEOUT' })));
    req.on('error', reject);
    req.end(text);
  });
}

export async function getJson(base, path, timeoutMs = 2000) {
  const res = await call(base, 'GET', path, { timeoutMs });
  if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.body.slice(0, 200)}`);
  return JSON.parse(res.body);
}

/** Polls probe() until it returns something other than undefined; errors count as "not yet". Bounded by timeoutMs. */
export async function until(probe, what, timeoutMs, everyMs) {
  const deadline = performance.now() + timeoutMs;
  let lastError = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}`);
    await sleep(everyMs);
  }
}

/**
 * The leader all the nodes at `admins` name, if that node says it leads (and is not `excluded`), with their term;
 * undefined while they disagree or have none. One poll, for until().
 */
export async function agreedLeader(admins, { excluded = null, timeoutMs = 2000 } = {}) {
  const infos = await Promise.all(admins.map((admin) => getJson(admin, '/api/v1/cluster', timeoutMs)));
  const leader = infos[0].leader;
  if (leader === null || leader === excluded || !infos.every((info) => info.leader === leader)) return undefined;
  return infos.find((info) => info.nodeId === leader)?.role === 'leader' ? { leader, term: infos[0].term } : undefined;
}

/** Nearest-rank percentile; with 30 samples p99 is the largest, which the table says by showing max beside it. */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summarize(values) {
  const round = (v) => (v === null ? null : Math.round(v * 100) / 100);
  return { samples: values.length, p50Ms: round(percentile(values, 50)), p99Ms: round(percentile(values, 99)), maxMs: round(values.length ? Math.max(...values) : null) };
}

/** Three nodes in ROOT/<id>/, each with its own file and data dir; Raft ports reserved up front because peers name them. */
class BenchCluster {
  constructor(root, bin, log) {
    this.root = root;
    this.bin = bin;
    this.log = log;
    this.nodes = new Map();
  }

  async prepare(ids) {
    const taken = new Set();
    const backendPorts = [await freePort(taken), await freePort(taken)];
    for (const id of ids) this.nodes.set(id, { id, dir: join(this.root, id), raftPort: await freePort(taken), child: null, admin: null });
    const peers = ids.map((id) => `${id}: 127.0.0.1:${this.nodes.get(id).raftPort}`).join(', ');
    for (const node of this.nodes.values()) {
      mkdirSync(node.dir, { recursive: true });
      // The backends are never dialled for these numbers; no health check keeps the nodes' logs and CPU quiet.
      const yaml = [
        `# ${node.id}: written by bench/cluster.js`,
        'listen: 127.0.0.1:0',
        'admin:',
        '  listen: 127.0.0.1:0',
        `  token: ${ADMIN_TOKEN}`,
        "log: { level: info }", // 'balancer started' (the admin address) is an info line
        'cluster:',
        `  nodeId: ${node.id}`,
        `  listen: 127.0.0.1:${node.raftPort}`,
        '  dataDir: ./data',
        `  peers: { ${peers} }`,
        `  secret: ${CLUSTER_SECRET}`,
        `  electionTimeout: ${ELECTION_TIMEOUT_MS}ms`,
        `  heartbeatInterval: ${HEARTBEAT_MS}ms`,
        'routes:',
        '  - match: { pathPrefix: / }',
        `    pool: ${POOL}`,
        'pools:',
        `  ${POOL}:`,
        '    backends:',
        `      - { url: http://127.0.0.1:${backendPorts[0]}, id: ${BACKEND}, weight: 1 }`,
        `      - { url: http://127.0.0.1:${backendPorts[1]}, id: web-2 }`,
        '',
      ].join('\n');
      writeFileSync(join(node.dir, 'balancer.yaml'), yaml);
    }
  }

  ids() {
    return [...this.nodes.keys()];
  }

  alive() {
    return [...this.nodes.values()].filter((node) => node.child !== null);
  }

  /** Starts one node and resolves once it logged 'balancer started' (its admin address is read from that line). */
  async start(id) {
    const node = this.nodes.get(id);
    const env = { ...process.env };
    delete env.BALANCER_ADMIN_TOKEN;
    const child = spawnOwned(process.execPath, [this.bin, 'start', '-c', join(node.dir, 'balancer.yaml')], { cwd: node.dir, env });
    node.child = child;
    child.once('exit', () => {
      if (node.child === child) {
        node.child = null;
        node.admin = null;
      }
    });
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`${id}: no 'balancer started' within ${START_TIMEOUT_MS} ms; stderr: ${child.stderrText}`)), START_TIMEOUT_MS);
      const onExit = (code, signal) => finish(new Error(`${id} exited (${code ?? signal}) before it started; log tail: ${child.stderrText.slice(-2000)}`));
      // The JSON log goes to stderr (spawnOwned keeps reading it); stdout is drained too, so no pipe ever fills.
      child.stdout.resume();
      const stopReading = onJsonLines(child.stderr, (parsed) => {
        if (parsed.msg === 'balancer started') finish(null, parsed);
      });
      child.once('exit', onExit);
      function finish(error, value) {
        stopReading();
        clearTimeout(timer);
        child.off('exit', onExit);
        if (error) reject(error);
        else resolve(value);
      }
    });
    node.admin = `http://${line.admin}`;
    return node;
  }

  /** kill -9 of the whole process group; resolves once the process is gone. */
  async kill(id) {
    const node = this.nodes.get(id);
    const child = node.child;
    if (child === null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    killOwned(child, 'SIGKILL');
    await exited;
  }

  async stopAll() {
    await Promise.all(this.alive().map((node) => stopOwned(node.child, 3000)));
  }

  async version(id) {
    return (await getJson(this.nodes.get(id).admin, '/api/v1/status')).version;
  }

  /** Until every running node names the same leader (itself running) and that node says it leads. */
  async waitForLeader(timeoutMs) {
    const admins = this.alive().map((node) => node.admin);
    return (await until(() => agreedLeader(admins), 'a leader every running node agrees on', timeoutMs, 20)).leader;
  }

  /** Until every running node applied the same config version; returns it. */
  async waitForSameVersion(timeoutMs) {
    return until(
      async () => {
        const versions = await Promise.all(this.alive().map((node) => this.version(node.id)));
        return versions.every((v) => v === versions[0]) && versions[0] > 0 ? versions[0] : undefined;
      },
      'every node on the same config version',
      timeoutMs,
      20,
    );
  }
}

/** One PATCH through `writer`, timed to the 200 and to the moment every node's own status shows a newer version. */
async function timedChange(cluster, writer, weight, before) {
  const started = performance.now();
  const appliedAt = new Map();
  const watchers = cluster.alive().map(async (node) => {
    const deadline = started + APPLY_TIMEOUT_MS;
    // Bounded by the deadline; each pass is one loopback GET plus POLL_MS.
    while (performance.now() < deadline) {
      try {
        if ((await cluster.version(node.id)) > before) {
          appliedAt.set(node.id, performance.now() - started);
          return;
        }
      } catch {
        // a slow answer counts as not yet applied
      }
      await sleep(POLL_MS);
    }
  });
  const res = await call(cluster.nodes.get(writer).admin, 'PATCH', `/api/v1/pools/${POOL}/backends/${BACKEND}`, { body: { weight }, timeoutMs: APPLY_TIMEOUT_MS });
  const ackMs = performance.now() - started;
  await Promise.all(watchers);
  if (res.status !== 200) throw new Error(`PATCH through ${writer} answered ${res.status}: ${res.body.slice(0, 300)}`);
  const version = JSON.parse(res.body).version;
  if (appliedAt.size !== cluster.alive().length) {
    throw new Error(`version ${version} was not applied on every node within ${APPLY_TIMEOUT_MS} ms (applied on ${[...appliedAt.keys()].join(', ') || 'none'})`);
  }
  return { ackMs, appliedMs: Math.max(...appliedAt.values()), version };
}

async function measureCommits(cluster, count, log) {
  const leader = await cluster.waitForLeader(15_000);
  const follower = cluster.ids().find((id) => id !== leader);
  const out = {};
  let weight = 1;
  for (const [label, writer] of [
    ['viaLeader', leader],
    ['viaFollower', follower],
  ]) {
    const acks = [];
    const applied = [];
    for (let i = 0; i < count; i++) {
      const before = await cluster.waitForSameVersion(APPLY_TIMEOUT_MS);
      weight = (weight % 100) + 1; // differs from the previous write every time
      const sample = await timedChange(cluster, writer, weight, before);
      acks.push(sample.ackMs);
      applied.push(sample.appliedMs);
    }
    out[label] = { writer, acknowledged: summarize(acks), appliedEverywhere: summarize(applied), rawAckMs: acks.map(round2), rawAppliedMs: applied.map(round2) };
    log(
      `cluster commit ${label} (${writer}): ack p50 ${out[label].acknowledged.p50Ms} ms, applied everywhere p50 ${out[label].appliedEverywhere.p50Ms} / p99 ${out[label].appliedEverywhere.p99Ms} / max ${out[label].appliedEverywhere.maxMs} ms`,
    );
  }
  return out;
}

function round2(value) {
  return value === null ? null : Math.round(value * 100) / 100;
}

/** PATCHes through `writer` until one answers 200, each attempt allowed attemptTimeoutMs; times are from `started`. */
async function writeUntilAccepted(cluster, writer, weight, started, attemptTimeoutMs) {
  let attempts = 0;
  const statuses = {};
  const changes = [];
  const deadline = started + FAILOVER_TIMEOUT_MS;
  // Bounded by the deadline; a failed attempt is retried WRITE_RETRY_MS later.
  while (performance.now() < deadline) {
    attempts++;
    let status;
    try {
      const res = await call(cluster.nodes.get(writer).admin, 'PATCH', `/api/v1/pools/${POOL}/backends/${BACKEND}`, {
        body: { weight },
        timeoutMs: Math.max(50, Math.min(attemptTimeoutMs, deadline - performance.now())),
      });
      status = res.status;
    } catch (error) {
      status = error.code ?? 'error';
    }
    statuses[status] = (statuses[status] ?? 0) + 1;
    // When each kind of answer first came: shows where the time between "leader known" and "write accepted" goes.
    const atMs = round2(performance.now() - started);
    if (changes.length === 0 || changes[changes.length - 1].status !== status) changes.push({ status, atMs });
    if (status === 200) return { ms: performance.now() - started, attempts, statuses, changes };
    await sleep(WRITE_RETRY_MS);
  }
  throw new Error(`no write through ${writer} succeeded within ${FAILOVER_TIMEOUT_MS} ms (answers: ${JSON.stringify(statuses)})`);
}

/** Kills the leader, times a new leader known to both survivors and the first write a survivor accepts, then restarts it. */
async function failoverRound(cluster, round, log) {
  const killed = await cluster.waitForLeader(15_000);
  await cluster.waitForSameVersion(CATCH_UP_TIMEOUT_MS);
  const before = await getJson(cluster.nodes.get(killed).admin, '/api/v1/cluster');
  const survivors = cluster.ids().filter((id) => id !== killed);
  // Alternate which survivor takes the writes, so a round is not always written through the one that wins.
  const writer = survivors[round % survivors.length];
  const started = performance.now();
  await cluster.kill(killed);
  const killedAfterMs = performance.now() - started;

  const leaderKnown = (async () => {
    const admins = survivors.map((id) => cluster.nodes.get(id).admin);
    const leader = await until(() => agreedLeader(admins, { excluded: killed, timeoutMs: 1000 }), 'a new leader both survivors know', FAILOVER_TIMEOUT_MS, POLL_MS * 5);
    return { ...leader, ms: performance.now() - started };
  })();

  // Two clients write through the same survivor: one sends a single request and waits for its answer, the other gives
  // each attempt RETRY_ATTEMPT_MS and tries again; they differ when the node holds a request across the election.
  const waiting = writeUntilAccepted(cluster, writer, 100 + round, started, FAILOVER_TIMEOUT_MS);
  const retrying = writeUntilAccepted(cluster, writer, 200 + round, started, RETRY_ATTEMPT_MS);
  const [known, waited, retried] = await Promise.all([leaderKnown, waiting, retrying]);
  const result = {
    round,
    killed,
    termBefore: before.term,
    newLeader: known.leader,
    termAfter: known.term,
    writer,
    killedAfterMs: round2(killedAfterMs),
    leaderKnownMs: round2(known.ms),
    writeOkMs: round2(waited.ms),
    retryingWriteOkMs: round2(retried.ms),
    waitingWrite: waited,
    retryingWrite: retried,
  };
  const answers = (w) => w.changes.map((c) => `${c.status} at ${c.atMs} ms`).join(', ');
  log(
    `cluster failover round ${round}: killed ${killed}, ${known.leader} known after ${result.leaderKnownMs} ms; through ${writer}: ` +
      `waiting write ok after ${result.writeOkMs} ms (${answers(waited)}), retrying write ok after ${result.retryingWriteOkMs} ms (${answers(retried)})`,
  );

  const restartedAt = performance.now();
  await cluster.start(killed);
  await cluster.waitForLeader(15_000);
  await cluster.waitForSameVersion(CATCH_UP_TIMEOUT_MS);
  result.restartCatchUpMs = round2(performance.now() - restartedAt);
  return result;
}

/**
 * Runs the whole cluster measurement in `workDir` and returns the results section; never throws (a failure is
 * recorded in `status` and `error`, with whatever was measured before it). Every node is stopped before it returns.
 */
export async function measureClusterBench({ bin, workDir, log, commits = 30, failoverRounds = 3 }) {
  const settings = {
    nodes: 3,
    electionTimeoutMs: ELECTION_TIMEOUT_MS,
    heartbeatIntervalMs: HEARTBEAT_MS,
    commitsPerWriter: commits,
    pollEveryMs: POLL_MS,
    failoverRounds,
    writeRetryMs: WRITE_RETRY_MS,
    retryAttemptTimeoutMs: RETRY_ATTEMPT_MS,
  };
  const result = { status: 'measured', date: new Date().toISOString(), settings, commit: null, failover: null };
  const root = join(workDir, 'cluster');
  mkdirSync(root, { recursive: true });
  const cluster = new BenchCluster(root, bin, log);
  try {
    await cluster.prepare(['n1', 'n2', 'n3']);
    await Promise.all(cluster.ids().map((id) => cluster.start(id)));
    log(`cluster: n1, n2, n3 started (admin ${cluster.alive().map((n) => n.admin).join(', ')})`);
    await cluster.waitForLeader(15_000);
    await cluster.waitForSameVersion(15_000);
    result.commit = await measureCommits(cluster, commits, log);
    const rounds = [];
    result.failover = { rounds };
    for (let round = 1; round <= failoverRounds; round++) {
      rounds.push(await failoverRound(cluster, round, log));
      result.failover.median = {
        leaderKnownMs: median(rounds.map((r) => r.leaderKnownMs)),
        writeOkMs: median(rounds.map((r) => r.writeOkMs)),
        retryingWriteOkMs: median(rounds.map((r) => r.retryingWriteOkMs)),
      };
    }
  } catch (error) {
    result.status = `failed: ${error.message}`;
    result.error = error.stack ?? error.message;
    log(`cluster measurement FAILED: ${error.message}`);
    for (const node of cluster.nodes.values()) {
      if (node.child !== null) log(`cluster ${node.id} stderr tail: ${node.child.stderrText.trim().slice(-1500)}`);
    }
  } finally {
    await cluster.stopAll();
    agent.destroy();
  }
  return result;
}

function ms(value) {
  return value === null || value === undefined ? '—' : value.toFixed(1);
}

/** The markdown lines of the cluster section, for the stdout table and bench/report.js. */
export function renderClusterMarkdown(cluster) {
  if (!cluster.commit && !cluster.failover) return [`**Cluster**: ${cluster.status}`];
  const s = cluster.settings;
  const out = [
    `**Cluster config changes** (${s.nodes} balancer processes on loopback, electionTimeout ${s.electionTimeoutMs} ms, heartbeat ${s.heartbeatIntervalMs} ms; ` +
      `${s.commitsPerWriter} sequential PATCH weight changes per writer; "applied everywhere" is until every node's own ` +
      `/api/v1/status shows the new version, polled every ${s.pollEveryMs} ms; measured ${cluster.date}):`,
    '',
    '| written through | ack p50 ms | ack p99 ms | ack max ms | applied everywhere p50 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [label, name] of [
    ['viaLeader', 'the leader'],
    ['viaFollower', 'a follower (forwarded)'],
  ]) {
    const c = cluster.commit?.[label];
    if (!c) continue;
    out.push(
      `| ${name} | ${ms(c.acknowledged.p50Ms)} | ${ms(c.acknowledged.p99Ms)} | ${ms(c.acknowledged.maxMs)} | ${ms(c.appliedEverywhere.p50Ms)} | ${ms(c.appliedEverywhere.p99Ms)} | ${ms(c.appliedEverywhere.maxMs)} |`,
    );
  }
  const f = cluster.failover;
  if (f && f.rounds.length > 0) {
    out.push('');
    out.push(
      `**Failover** (kill -9 of the leader; "new leader known" is until both survivors' /api/v1/cluster name the same new leader; ` +
        `"write, waiting" is one PATCH sent through a survivor right after the kill, until its 200; "write, retrying" is a PATCH through the same survivor ` +
        `given ${s.retryAttemptTimeoutMs} ms per attempt and retried ${s.writeRetryMs} ms after each failure, until the first 200; ` +
        'the killed node is restarted and caught up between rounds):',
    );
    out.push('');
    out.push('| round | killed | new leader | new leader known ms | write, waiting ms | write, retrying ms |');
    out.push('|---|---|---|---:|---:|---:|');
    for (const r of f.rounds) out.push(`| ${r.round} | ${r.killed} | ${r.newLeader} | ${ms(r.leaderKnownMs)} | ${ms(r.writeOkMs)} | ${ms(r.retryingWriteOkMs)} |`);
    if (f.median) {
      out.push(`| **median** | | | **${ms(f.median.leaderKnownMs)}** | **${ms(f.median.writeOkMs)}** | **${ms(f.median.retryingWriteOkMs)}** |`);
    }
  }
  if (cluster.status !== 'measured') out.push('', `- cluster: ${cluster.status}`);
  return out;
}
