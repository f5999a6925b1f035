// `npm run bench`: the side-by-side benchmark. Starts three local backends and every target (two processes of each in
// full mode), measures them alternately (A B C, C B A, A B C ...), and writes bench/results/<date>.json, latest.json and
// a markdown table on stdout.
// Usage: node bench/run.js [--quick] [--only balancer,haproxy,...,cluster,fleet,strategies,http2] [--phases get,post,websocket,fixed-rate,idle,instructions]
//        [--processes N] [--baseline DIR] [--no-instructions] [--no-save]

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { measureClusterBench } from './cluster.js';
import { measureFleetBench } from './fleet.js';
import { measureStrategiesBench } from './strategies.js';
import { measureHttp2Bench } from './http2.js';
import { measureInstructions } from './lib/callgrind.js';
import { renderMarkdown } from './lib/format.js';
import {
  firstJsonLine,
  killAllOwnedSync,
  loadAverage,
  machineCpuShare,
  machineCpuTicks,
  runJsonChild,
  spawnOwned,
  stopAllOwned,
  stopOwned,
  treeCpuMicros,
  treeRssBytes,
} from './lib/proc.js';
import { instanceForRound, roundOrder } from './lib/schedule.js';
import { medians, ratio, sameRoundRatio } from './lib/stats.js';
import { TARGETS, balancerBuilt, baselineTarget, ensurePackages, hasCommand, startBackends, startTarget, toolVersions } from './lib/targets.js';
import { runAutocannon, runWrk, wrkAvailable, writeWrkScripts } from './lib/wrk.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = join(REPO, 'bench/results');
const POST_BYTES = 1024 * 1024;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    // The proxy phases to run for the selected targets (default all); instruction counts do not depend on the machine's load.
    phases: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    'no-instructions': { type: 'boolean', default: false },
    // Processes started per target (default 2, quick mode 1); the load phases' rounds take them in turn.
    processes: { type: 'string' },
    // A built checkout of an earlier balancer (e.g. a git worktree after npm ci), measured beside this one as 'baseline'.
    baseline: { type: 'string' },
  },
});

/**
 * Identical processes of one program differ on this machine by 3-13% in CPU per GET and up to 19% per POSTed MB, for
 * as long as they run (2026-12-02; not removed by pinning to a core or by touching memory first), so one process per
 * target cannot decide a ratio within ~10%. Two per target, started in interleaved order and measured in turn, put
 * both into every median.
 */
const PROCESSES_PER_TARGET = flags.processes === undefined ? (flags.quick ? 1 : 2) : Number(flags.processes);
if (!Number.isInteger(PROCESSES_PER_TARGET) || PROCESSES_PER_TARGET < 1 || PROCESSES_PER_TARGET > 4) {
  throw new Error(`--processes: expected a whole number from 1 to 4, got ${flags.processes}`);
}

/** Every phase's durations; quick mode keeps the shape but gives a single short run of each. */
const PLAN = flags.quick
  ? {
      http: { seconds: 2, warmupSeconds: 1, runs: 1, connections: 64, threads: 1 },
      post: { seconds: 2, warmupSeconds: 1, runs: 1, connections: 8, threads: 1 },
      websocket: { seconds: 2, warmupSeconds: 1, targetWarmupSeconds: 1, runs: 1, connections: 50, window: 4, size: 64 },
      fixedRate: { rate: 2000, seconds: 3, warmupSeconds: 1, targetWarmupSeconds: 1, runs: 1 },
      idle: { count: 10_000, settleSeconds: 5 },
      instructions: { warmup: 2_000, requests: 1_000 },
      cluster: { commits: 10, failoverRounds: 1 },
      fleet: { learners: [0, 3], changes: 5, settleMs: 2_000, idleMs: 3_000, steadyAfterMs: 8_000 },
      strategies: { rate: 200, seconds: 6, recoverySeconds: 26, warmupSeconds: 2, runs: 1 },
      http2: { seconds: 2, warmupSeconds: 1, runs: 1, connections: 8, streams: 10 },
    }
  : {
      // Eight alternating runs: on this shared machine one target's req/s moves by a third between runs. Rounds come in
      // fours so that each of a target's two processes is measured as often, and as often in each order (see alternate).
      http: { seconds: 5, warmupSeconds: 2, runs: 8, connections: 64, threads: 1 },
      // A Node process's first measured upload run after a 1 s warm-up cost 10-60% more CPU per MB than its next (every
      // Node target, both processes, two runs on 2026-12-02; HAProxy's did not): a warm-up as long as a run.
      post: { seconds: 5, warmupSeconds: 5, runs: 4, connections: 8, threads: 1 },
      // Each process also serves WebSocket echoes for targetWarmupSeconds, unmeasured, before round 1, as in the other
      // phases (it had none); warmupSeconds is the unmeasured start of every run.
      websocket: { seconds: 5, warmupSeconds: 1, targetWarmupSeconds: 5, runs: 4, connections: 50, window: 4, size: 64 },
      // Before round 1 each target serves the same rate for targetWarmupSeconds, unmeasured: run alone, this phase would
      // otherwise meet a process that has served nothing yet (code unoptimised, young generation still growing), and its
      // first round measured that (p99 224-296 ms against 3 ms in the rounds after).
      fixedRate: { rate: 2000, seconds: 8, warmupSeconds: 2, targetWarmupSeconds: 10, runs: 4 },
      // RSS is read 2 s after the last connection is up, and again once they have been held settleSeconds with no
      // traffic: V8 gives back the heap a burst grew only after its memory reducer has run, which took 20-45 s after the
      // 10,000 connections were opened (2026-12-01 and 2026-12-02; docs/operations.md).
      idle: { count: 10_000, settleSeconds: 60 },
      // Enough warm-up for V8 to finish optimising: with 1,500 the background compiler still added ~50% to the count.
      instructions: { warmup: 10_000, requests: 3_000 },
      cluster: { commits: 30, failoverRounds: 3 },
      // 3 voters and 0-40 learners: 43 processes fit this 2-core machine's memory; idle CPU is sampled over 10 s.
      fleet: { learners: [0, 10, 25, 40], changes: 30, settleMs: 5_000, idleMs: 10_000, steadyAfterMs: 60_000 },
      // The recovery runs last long enough for decay (10 s) to pass after the switch half-way, with room to spare.
      strategies: { rate: 200, seconds: 15, recoverySeconds: 30, warmupSeconds: 3, runs: 3 },
      // 8 connections x 10 streams: enough concurrency for h2 multiplexing to matter, few enough for one h2load thread.
      http2: { seconds: 5, warmupSeconds: 1, runs: 3, connections: 8, streams: 10 },
    };

/** Every proxy target this run knows: the fixed ones, and the earlier build --baseline names, beside balancer. */
const ALL_TARGETS = flags.baseline === undefined ? TARGETS : TARGETS.flatMap((t) => (t.id === 'balancer' ? [t, baselineTarget(flags.baseline)] : [t]));

const PHASE_TARGETS = {
  http: ['direct', 'balancer', 'baseline', 'balancer-auto', 'naive', 'engine', 'reply-from', 'haproxy', 'nginx'],
  post: ['balancer', 'baseline', 'naive', 'engine', 'haproxy'],
  websocket: ['balancer', 'baseline', 'naive', 'haproxy'],
  fixedRate: ['balancer', 'baseline', 'naive', 'haproxy'],
  idle: ['balancer', 'baseline', 'naive', 'engine', 'haproxy'],
  instructions: ['balancer', 'naive', 'engine', 'reply-from', 'haproxy'],
};

function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

let workDir = null;
function cleanupSync() {
  killAllOwnedSync();
  if (workDir !== null) rmSync(workDir, { recursive: true, force: true });
  workDir = null;
}
process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    log(`${signal}: stopping every child process`);
    cleanupSync();
    process.exit(130);
  });
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    hostname: os.hostname(),
    loadAverageBefore: loadAverage(),
  };
}

/**
 * Starts PROCESSES_PER_TARGET processes ("instances") of every selected target, every other wave in reverse order (A1 B1
 * C1, C2 B2 A2) so that no target holds only the first-started or only the last-started processes. Returns id ->
 * { ...target, instances }. A target that cannot run is recorded with the reason, never silently dropped.
 */
async function startAll(selected, backends, skipped, toolMissing) {
  const startable = [];
  for (const target of ALL_TARGETS.filter((t) => selected.has(t.id))) {
    if ((target.kind === 'haproxy' || target.kind === 'nginx') && toolMissing.includes(target.kind)) {
      skipped[target.id] = `${target.kind} is not installed and apt-get could not install it`;
      log(`SKIPPED ${target.id}: ${skipped[target.id]}`);
    } else if (target.kind === 'balancer' && !balancerBuilt(target.repo)) {
      skipped[target.id] = `${target.repo ?? 'this checkout'}: dist/ is not built (run npm ci there)`;
      log(`SKIPPED ${target.id}: ${skipped[target.id]}`);
    } else startable.push(target);
  }
  const running = new Map();
  for (let wave = 0; wave < PROCESSES_PER_TARGET; wave++) {
    for (const target of wave % 2 === 0 ? startable : [...startable].reverse()) {
      // 'direct' is one of the backends, not a process of its own: it has one instance.
      if (skipped[target.id] !== undefined || (target.kind === 'direct' && wave > 0)) continue;
      const instances = running.get(target.id)?.instances ?? [];
      try {
        const started = await startTarget(target, backends, workDir);
        instances.push({ ...target, ...started, instance: instances.length + 1, crashed: null });
        running.set(target.id, { ...target, instances });
        log(`started ${target.id} #${instances.length} at ${started.url} (pid ${started.pid})`);
      } catch (error) {
        skipped[target.id] = `failed to start: ${error.message}`;
        log(`SKIPPED ${target.id}: ${skipped[target.id]}`);
        running.delete(target.id);
        for (const instance of instances) if (instance.child !== null) await stopOwned(instance.child);
      }
    }
  }
  return running;
}

/** What crashed among a target's instances, or null. */
function crashReport(target) {
  const crashed = target.instances.filter((instance) => instance.crashed !== null);
  return crashed.length === 0 ? null : crashed.map((instance) => `#${instance.instance}: ${instance.crashed}`).join('; ');
}

/** Marks an instance crashed if its process is gone, so later rounds skip it and the report says what happened. */
function checkAlive(instance) {
  if (instance.child === null || instance.crashed !== null) return instance.crashed === null;
  if (instance.child.exitCode !== null || instance.child.signalCode !== null) {
    instance.crashed = `process exited (${instance.child.exitCode ?? instance.child.signalCode}); stderr tail: ${instance.child.stderrText.trim().slice(-1500)}`;
    log(`CRASHED ${instance.id} #${instance.instance}: ${instance.crashed}`);
    return false;
  }
  return true;
}

/**
 * Runs measure(instance) for each target in turn, `runs` times, after one warm-up of each instance; records per-run CPU
 * and RSS. The order within a round and the instance a round measures come from lib/schedule.js.
 */
async function alternate(phase, targets, runs, warmup, measure) {
  const raw = Object.fromEntries(targets.map((t) => [t.id, []]));
  for (const instance of targets.flatMap((t) => t.instances)) {
    if (!checkAlive(instance) || warmup === null) continue;
    try {
      await warmup(instance);
    } catch (error) {
      log(`${phase} warm-up of ${instance.id} #${instance.instance} failed: ${error.message}`);
    }
  }
  for (let round = 1; round <= runs; round++) {
    for (const target of roundOrder(targets, round)) {
      const instance = target.instances[instanceForRound(round, target.instances.length)];
      const name = `${target.id}${target.instances.length > 1 ? ` #${instance.instance}` : ''}`;
      if (!checkAlive(instance)) {
        raw[target.id].push({ round, instance: instance.instance, error: instance.crashed });
        continue;
      }
      const cpuBefore = treeCpuMicros(instance.pid);
      const machineBefore = machineCpuTicks();
      const started = Date.now();
      try {
        const result = await measure(instance);
        const cpuAfter = treeCpuMicros(instance.pid);
        const run = {
          round,
          instance: instance.instance,
          ...result,
          cpuMicros: cpuAfter.micros - cpuBefore.micros,
          processes: Math.max(cpuBefore.processes, cpuAfter.processes),
          rssBytes: treeRssBytes(instance.pid),
          wallSeconds: (Date.now() - started) / 1000,
          loadAverage: loadAverage(),
          // Everything running, this target and the load generator included; high steal means another VM took the CPU.
          machineCpu: machineCpuShare(machineBefore, machineCpuTicks()),
        };
        raw[target.id].push(run);
        log(`${phase} round ${round} ${name}: ${describe(run)}`);
      } catch (error) {
        raw[target.id].push({ round, instance: instance.instance, error: error.message });
        log(`${phase} round ${round} ${name} FAILED: ${error.message}`);
        checkAlive(instance);
      }
    }
  }
  return raw;
}

function describe(run) {
  if (run.messagesPerSecond !== undefined) return `${Math.round(run.messagesPerSecond)} msg/s`;
  if (run.offeredRate !== undefined) return `p99 ${(run.latencyUs.p99 / 1000).toFixed(2)} ms, ${run.errors} errors`;
  const cpu = run.requests > 0 ? (run.cpuMicros / run.requests).toFixed(1) : '—';
  return `${Math.round(run.rps)} req/s, p99 ${(run.latencyUs.p99 / 1000).toFixed(2)} ms, ${cpu} µs CPU/req, ${run.errorCount} errors`;
}

function loadRun(loadTool, scripts, settings, url, kind) {
  if (loadTool === 'wrk') {
    return runWrk({ url, script: kind === 'post' ? scripts.post : scripts.get, seconds: settings.seconds, connections: settings.connections, threads: settings.threads });
  }
  return runAutocannon({
    url,
    seconds: settings.seconds,
    connections: settings.connections,
    method: kind === 'post' ? 'POST' : 'GET',
    body: kind === 'post' ? Buffer.alloc(POST_BYTES, 0x78) : undefined,
  });
}

function phaseTargets(running, phase) {
  return PHASE_TARGETS[phase].map((id) => running.get(id)).filter((t) => t !== undefined);
}

function phaseSkips(phase, selected, skipped) {
  return Object.fromEntries(PHASE_TARGETS[phase].filter((id) => selected.has(id) && skipped[id]).map((id) => [id, skipped[id]]));
}

async function measureHttp(running, loadTool, scripts, selected, skipped) {
  const settings = PLAN.http;
  const targets = phaseTargets(running, 'http');
  if (targets.length === 0) return null;
  log(`GET phase: ${targets.map((t) => t.id).join(', ')}`);
  const warmSettings = { ...settings, seconds: settings.warmupSeconds };
  const raw = await alternate('GET', targets, settings.runs, (t) => loadRun(loadTool, scripts, warmSettings, t.url, 'get'), (t) =>
    loadRun(loadTool, scripts, settings, t.url, 'get'),
  );
  const summary = {};
  for (const target of targets) {
    const s = medians(raw[target.id], {
      rps: (r) => r.rps,
      p50Us: (r) => r.latencyUs.p50,
      p99Us: (r) => r.latencyUs.p99,
      cpuUsPerRequest: (r) => r.cpuMicros / r.requests,
      rssBytes: (r) => r.rssBytes,
      processes: (r) => r.processes,
    });
    s.errors = raw[target.id].reduce((sum, r) => sum + (r.errorCount ?? 0), 0);
    s.failedRuns = raw[target.id].filter((r) => r.error !== undefined).length;
    s.label = target.label;
    if (target.id === 'direct') s.note = 'the ceiling: wrk cannot spread over three hosts, so this is one backend served directly; CPU is that backend\'s.';
    if (target.id === 'balancer-auto' && (s.processes ?? 1) <= 1) {
      s.label = 'balancer (workers: auto, ran as 1 process)';
      s.note = 'the configured `workers: auto` did not start worker processes in this build: the numbers are of one process.';
    }
    const crashed = crashReport(target);
    if (crashed !== null) s.note = `CRASHED: ${crashed}`;
    summary[target.id] = s;
  }
  for (const s of Object.values(summary)) {
    s.rpsVsHaproxy = ratio(s.rps, summary.haproxy?.rps);
    s.rpsVsNaive = ratio(s.rps, summary.naive?.rps);
    s.cpuVsHaproxy = ratio(s.cpuUsPerRequest, summary.haproxy?.cpuUsPerRequest);
    s.cpuVsNaive = ratio(s.cpuUsPerRequest, summary.naive?.cpuUsPerRequest);
  }
  // The same ratios paired round by round: the targets count as met only when both readings agree (evaluateTargets).
  const rps = (r) => r.rps;
  const cpu = (r) => r.cpuMicros / r.requests;
  for (const [id, s] of Object.entries(summary)) {
    const versus = (peer, pick) => (raw[peer] === undefined || peer === id ? null : sameRoundRatio(raw[id], raw[peer], pick));
    s.sameRound = {
      rpsVsNaive: versus('naive', rps),
      cpuVsNaive: versus('naive', cpu),
      cpuVsHaproxy: versus('haproxy', cpu),
      rpsVsReplyFrom: versus('reply-from', rps),
      cpuVsReplyFrom: versus('reply-from', cpu),
    };
  }
  return { settings, order: targets.map((t) => t.id), raw, summary, skipped: phaseSkips('http', selected, skipped) };
}

async function measurePost(running, loadTool, scripts, selected, skipped) {
  const settings = PLAN.post;
  const targets = phaseTargets(running, 'post');
  if (targets.length === 0) return null;
  log(`1 MB POST phase: ${targets.map((t) => t.id).join(', ')}`);
  const warmSettings = { ...settings, seconds: settings.warmupSeconds };
  const raw = await alternate('POST', targets, settings.runs, (t) => loadRun(loadTool, scripts, warmSettings, t.url, 'post'), (t) =>
    loadRun(loadTool, scripts, settings, t.url, 'post'),
  );
  const summary = {};
  for (const target of targets) {
    summary[target.id] = {
      label: target.label,
      ...medians(raw[target.id], {
        rps: (r) => r.rps,
        mbPerSecond: (r) => (r.requests * POST_BYTES) / (1024 * 1024) / r.seconds,
        p99Us: (r) => r.latencyUs.p99,
        cpuUsPerRequest: (r) => r.cpuMicros / r.requests,
      }),
      errors: raw[target.id].reduce((sum, r) => sum + (r.errorCount ?? 0), 0),
    };
  }
  return { settings: { ...settings, bodyBytes: POST_BYTES }, order: targets.map((t) => t.id), raw, summary, skipped: phaseSkips('post', selected, skipped) };
}

async function measureWebSocket(running, selected, skipped) {
  const settings = PLAN.websocket;
  const targets = phaseTargets(running, 'websocket');
  if (targets.length === 0) return null;
  log(`WebSocket phase: ${targets.map((t) => t.id).join(', ')}`);
  const client = join(REPO, 'bench/load/ws-client.js');
  const echo = (t, seconds, warmupSeconds) =>
    runJsonChild(
      process.execPath,
      [
        client,
        '--url', t.url.replace('http:', 'ws:'),
        '--connections', String(settings.connections),
        '--window', String(settings.window),
        '--size', String(settings.size),
        '--seconds', String(seconds),
        '--warmup', String(warmupSeconds),
      ],
      (seconds + warmupSeconds + 30) * 1000,
      `ws-client ${t.id}`,
    );
  const raw = await alternate(
    'WS',
    targets,
    settings.runs,
    (t) => echo(t, settings.targetWarmupSeconds, 0),
    (t) => echo(t, settings.seconds, settings.warmupSeconds),
  );
  const summary = {};
  for (const target of targets) {
    summary[target.id] = {
      label: target.label,
      ...medians(raw[target.id], {
        messagesPerSecond: (r) => r.messagesPerSecond,
        // CPU covers the warm-up second too, so it is divided by every message the run carried, estimated at the measured rate.
        cpuUsPerMessage: (r) => r.cpuMicros / (r.messagesPerSecond * (r.seconds + settings.warmupSeconds)),
      }),
      errors: raw[target.id].reduce((sum, r) => sum + (r.errors ?? 0), 0),
    };
  }
  return { settings, order: targets.map((t) => t.id), raw, summary, skipped: phaseSkips('websocket', selected, skipped) };
}

async function measureFixedRate(running, selected, skipped) {
  const settings = PLAN.fixedRate;
  const targets = phaseTargets(running, 'fixedRate');
  if (targets.length === 0) return null;
  log(`fixed-rate phase (${settings.rate} req/s): ${targets.map((t) => t.id).join(', ')}`);
  const generator = join(REPO, 'bench/load/constant-rate.js');
  const offer = (t, seconds, warmupSeconds) =>
    runJsonChild(
      process.execPath,
      [generator, '--url', t.url, '--rate', String(settings.rate), '--seconds', String(seconds), '--warmup', String(warmupSeconds)],
      (seconds + warmupSeconds + 30) * 1000,
      `constant-rate ${t.id}`,
    );
  const raw = await alternate(
    'RATE',
    targets,
    settings.runs,
    (t) => offer(t, settings.targetWarmupSeconds, 0),
    (t) => offer(t, settings.seconds, settings.warmupSeconds),
  );
  const summary = {};
  for (const target of targets) {
    summary[target.id] = {
      label: target.label,
      ...medians(raw[target.id], {
        p50Us: (r) => r.latencyUs.p50,
        p99Us: (r) => r.latencyUs.p99,
        p999Us: (r) => r.latencyUs.p999,
        maxUs: (r) => r.latencyUs.max,
        serviceP99Us: (r) => r.serviceUs.p99,
        achievedRate: (r) => r.achievedRate,
      }),
      errors: raw[target.id].reduce((sum, r) => sum + (r.errors ?? 0) + (r.incomplete ?? 0), 0),
    };
  }
  return { settings, order: targets.map((t) => t.id), raw, summary, skipped: phaseSkips('fixedRate', selected, skipped) };
}

/**
 * Holds N idle keep-alive connections from a separate process and reads the target's RSS while they are open, for each
 * instance in turn; a target's figures are the medians over its instances, each instance's reading kept beside them.
 */
async function measureIdle(running, selected, skipped) {
  const settings = PLAN.idle;
  const targets = phaseTargets(running, 'idle');
  if (targets.length === 0) return null;
  log(`idle-connections phase (${settings.count}): ${targets.map((t) => t.id).join(', ')}`);
  const summary = {};
  for (const target of targets) {
    const readings = [];
    for (const instance of target.instances) readings.push({ instance: instance.instance, ...(await holdIdleConnections(instance, settings)) });
    const succeeded = readings.filter((reading) => reading.error === undefined);
    summary[target.id] =
      succeeded.length === 0
        ? { label: target.label, error: readings.map((reading) => `#${reading.instance}: ${reading.error}`).join('; ') }
        : {
            label: target.label,
            ...medians(succeeded, {
              rssBeforeBytes: (r) => r.rssBeforeBytes,
              rssWithBytes: (r) => r.rssWithBytes,
              rssSettledBytes: (r) => r.rssSettledBytes,
              bytesPerConnection: (r) => r.bytesPerConnection,
            }),
            // The fewest any instance held (none, for one that failed): a target meets the count only if every instance did.
            held: Math.min(...readings.map((reading) => reading.held ?? 0)),
            heldSettled: Math.min(...readings.map((reading) => reading.heldSettled ?? 0)),
            readings,
          };
  }
  return { settings, order: targets.map((t) => t.id), summary, skipped: phaseSkips('idle', selected, skipped) };
}

async function holdIdleConnections(instance, { count, settleSeconds }) {
  const name = `${instance.id} #${instance.instance}`;
  if (!checkAlive(instance)) return { error: instance.crashed };
  const rssBeforeBytes = treeRssBytes(instance.pid);
  const holder = spawnOwned(process.execPath, [join(REPO, 'bench/load/idle-conns.js'), '--url', instance.url, '--count', String(count)]);
  const stillOpen = () => {
    holder.stdin.write('status\n');
    return firstJsonLine(holder, 5000, `idle-conns status ${name}`);
  };
  try {
    const ready = await firstJsonLine(holder, 130_000, `idle-conns ${name}`);
    // Let the target finish any per-connection bookkeeping before reading memory.
    await sleep(2000);
    const status = await stillOpen();
    const rssWithBytes = treeRssBytes(instance.pid);
    await sleep(Math.max(0, settleSeconds * 1000 - 2000));
    const settled = await stillOpen();
    const rssSettledBytes = treeRssBytes(instance.pid);
    const mb = (bytes) => (bytes / 2 ** 20).toFixed(0);
    log(`idle ${name}: ${status.open} held, RSS ${mb(rssBeforeBytes)} -> ${mb(rssWithBytes)} MB; ${settled.open} held after ${settleSeconds} s, RSS ${mb(rssSettledBytes)} MB`);
    return {
      opened: ready.open,
      failed: ready.failed,
      held: status.open,
      heldSettled: settled.open,
      closedByServer: settled.closedEarly,
      rssBeforeBytes,
      rssWithBytes,
      rssSettledBytes,
      bytesPerConnection: status.open > 0 ? (rssWithBytes - rssBeforeBytes) / status.open : null,
    };
  } catch (error) {
    log(`idle ${name} FAILED: ${error.message}`);
    return { error: error.message };
  } finally {
    holder.stdin.end();
    await stopOwned(holder);
    checkAlive(instance);
  }
}

/** Instructions per request under callgrind, one target at a time, on instances of their own (the load phases' ones sit idle meanwhile). */
async function measureInstructionPhase(selected, backends) {
  if (flags['no-instructions']) return null;
  const targets = TARGETS.filter((t) => PHASE_TARGETS.instructions.includes(t.id) && selected.has(t.id));
  if (targets.length === 0) return null;
  if (ensurePackages(['valgrind'], log).missing.length > 0) return { settings: PLAN.instructions, summary: {}, skipped: { all: 'valgrind is not installed' } };
  const summary = {};
  const skipped = {};
  for (const target of targets) {
    try {
      summary[target.id] = await measureInstructions({ target, backends, workDir, log, ...PLAN.instructions });
    } catch (error) {
      skipped[target.id] = `failed: ${error.message.split('\n')[0]}`;
      log(`instructions: ${target.id} ${skipped[target.id]}`);
    }
  }
  for (const entry of Object.values(summary)) {
    entry.vsNaive = ratio(entry.instructionsPerRequest, summary.naive?.instructionsPerRequest);
    entry.vsHaproxy = ratio(entry.instructionsPerRequest, summary.haproxy?.instructionsPerRequest);
  }
  return { settings: PLAN.instructions, order: targets.map((t) => t.id), labels: Object.fromEntries(targets.map((t) => [t.id, t.label])), summary, skipped };
}

// ---------------------------------------------------------------------------------------------
// Cluster numbers hook: config-change commit latency (until applied on every node) and failover
// time, measured on three real balancer processes by bench/cluster.js.
// ---------------------------------------------------------------------------------------------
async function measureCluster(selected) {
  if (!selected.has('cluster')) return null;
  const runtime = join(REPO, 'dist/raft/runtime/node.js');
  if (!existsSync(runtime)) {
    return { status: 'not measured: cluster runtime not available (dist/raft/runtime/node.js is not built)' };
  }
  log(`cluster phase: 3 nodes, ${PLAN.cluster.commits} changes per writer, ${PLAN.cluster.failoverRounds} failover round(s)`);
  return measureClusterBench({ bin: join(REPO, 'bin/balancer.js'), workDir, log, ...PLAN.cluster });
}

// Fleet of 3 voters and L learners (bench/fleet.js).
async function measureFleet(selected) {
  if (!selected.has('fleet')) return null;
  if (!balancerBuilt()) return { status: 'not measured: dist/ is not built (run npm run build)' };
  log(`fleet phase: 3 voters and ${PLAN.fleet.learners.join(', ')} learners`);
  return measureFleetBench({ bin: join(REPO, 'bin/balancer.js'), workDir, log, plan: PLAN.fleet });
}

// Strategy comparison: latency of each strategy over backends that answer in 1, 5 and 50 ms (bench/strategies.js).
async function measureStrategies(selected) {
  if (!selected.has('strategies')) return null;
  if (!balancerBuilt()) return { status: 'not measured: dist/ is not built (run npm run build)' };
  log(`strategies phase: ${PLAN.strategies.rate} req/s, ${PLAN.strategies.runs} round(s)`);
  return measureStrategiesBench({ bin: join(REPO, 'bin/balancer.js'), workDir, log, plan: PLAN.strategies });
}

// HTTP/2 rows: h2 GETs and gRPC unary calls through balancer, HAProxy and nginx next to direct (bench/http2.js).
async function measureHttp2(selected) {
  if (!selected.has('http2')) return null;
  if (!balancerBuilt()) return { status: 'not measured: dist/ is not built (run npm run build)' };
  if (!hasCommand('h2load')) return { status: 'not measured: h2load is not installed (apt-get install nghttp2-client)' };
  ensurePackages(['haproxy', 'nginx'], log);
  log(`http2 phase: ${PLAN.http2.runs} round(s) of ${PLAN.http2.seconds} s`);
  return measureHttp2Bench({ bin: join(REPO, 'bin/balancer.js'), workDir, log, plan: PLAN.http2, hasCommand });
}

function evaluateTargets(results) {
  const http = results.http?.summary ?? {};
  const fixed = results.fixedRate?.summary ?? {};
  const idle = results.idleConnections?.summary ?? {};
  const b = http.balancer;
  const f = (value, digits = 2) => (typeof value !== 'number' || !Number.isFinite(value) ? '—' : value.toFixed(digits));
  const fx = (value) => (f(value) === '—' ? '—' : `${f(value)}x`);
  const check = (name, value, ok, measured) => ({ name, value, met: value === null || value === undefined ? null : ok(value), measured });
  // A GET ratio is read two ways, the ratio of the two targets' medians and the median of their same-round ratios; it
  // counts as met only when both readings meet it, so drift of the machine's speed during a run cannot pass a target.
  const sameRound = b?.sameRound ?? {};
  const checkGet = (name, value, paired, ok, measured) => {
    const entry = check(name, value, ok, typeof paired === 'number' ? `${measured}; same-round ${fx(paired)}` : measured);
    if (entry.met === true && typeof paired === 'number' && !ok(paired)) entry.met = false;
    return { ...entry, sameRound: paired ?? null };
  };
  const post = results.post?.summary ?? {};
  const ws = results.websocket?.summary ?? {};
  const rpsRatio = ratio(b?.rps, http.naive?.rps);
  const cpuVsNaive = ratio(b?.cpuUsPerRequest, http.naive?.cpuUsPerRequest);
  const cpuVsHaproxy = ratio(b?.cpuUsPerRequest, http.haproxy?.cpuUsPerRequest);
  const rpsVsReplyFrom = ratio(b?.rps, http['reply-from']?.rps);
  const cpuVsReplyFrom = ratio(b?.cpuUsPerRequest, http['reply-from']?.cpuUsPerRequest);
  const postCpuVsNaive = ratio(post.balancer?.cpuUsPerRequest, post.naive?.cpuUsPerRequest);
  // WebSocket frames still go through http-proxy, as in the naive script: the naive row is the same engine's yardstick.
  const wsVsNaive = ratio(ws.balancer?.messagesPerSecond, ws.naive?.messagesPerSecond);
  const p99Ratio = ratio(fixed.balancer?.p99Us, fixed.haproxy?.p99Us);
  const us = (value) => f(value, 1);
  // The same ratio for balancer's engine alone, when its row ran: how far trimming balancer's own work could go.
  const engine = http.engine;
  const engineToo = (value) => (value === null || value === undefined ? '' : `; engine alone ${fx(value)}`);
  const heldAll = (row) => row?.held >= (results.idleConnections?.settings.count ?? Infinity);
  const mb = (bytes) => `${f(bytes / 2 ** 20, 0)} MB`;
  // The targets are read 2 s after the connections are up, as before the settled reading existed; the reading once they
  // have been held settleSeconds with no traffic (every one still open) is given beside it.
  const settleSeconds = results.idleConnections?.settings.settleSeconds;
  const settledAll = (row) => row?.heldSettled >= (results.idleConnections?.settings.count ?? Infinity) && typeof row.rssSettledBytes === 'number';
  const settledText = (row) => (settledAll(row) ? `, ${mb(row.rssSettledBytes)} after ${settleSeconds} s held` : '');
  const engineIdle = heldAll(idle.engine) ? `; engine alone ${mb(idle.engine.rssWithBytes)}${settledText(idle.engine)}` : '';
  const idleRss = heldAll(idle.balancer) ? idle.balancer.rssWithBytes : null;
  // The two targets phrased against balancer as it was ("not worse than today"), read against that build itself when
  // --baseline ran it beside this one.
  const againstBaseline = [];
  if (ws.baseline !== undefined) {
    const wsVsBaseline = ratio(ws.balancer?.messagesPerSecond, ws.baseline.messagesPerSecond);
    againstBaseline.push(check('WebSocket messages/s not below the --baseline build, side by side', wsVsBaseline, (v) => v >= 1, `${fx(wsVsBaseline)} (${f(ws.balancer?.messagesPerSecond, 0)} vs ${f(ws.baseline.messagesPerSecond, 0)} msg/s)`));
  }
  if (heldAll(idle.baseline)) {
    const idleVsBaseline = idleRss === null ? null : ratio(idleRss, idle.baseline.rssWithBytes);
    againstBaseline.push(check('10,000 idle client connections: RSS not above the --baseline build\'s, side by side', idleVsBaseline, (v) => v <= 1, idleRss === null ? `not all connections held (${idle.balancer?.held ?? 0})` : `${fx(idleVsBaseline)} (${mb(idleRss)} vs ${mb(idle.baseline.rssWithBytes)}${settledAll(idle.balancer) && settledAll(idle.baseline) ? `; after ${settleSeconds} s held ${mb(idle.balancer.rssSettledBytes)} vs ${mb(idle.baseline.rssSettledBytes)}` : ''})`));
  }
  return [
    checkGet('GET CPU per request at most 0.6x the naive baseline', cpuVsNaive, sameRound.cpuVsNaive, (v) => v <= 0.6, `${fx(cpuVsNaive)} (${us(b?.cpuUsPerRequest)} vs ${us(http.naive?.cpuUsPerRequest)} µs${engineToo(ratio(engine?.cpuUsPerRequest, http.naive?.cpuUsPerRequest))})`),
    checkGet('GET CPU per request at most 2.5x HAProxy', cpuVsHaproxy, sameRound.cpuVsHaproxy, (v) => v <= 2.5, `${fx(cpuVsHaproxy)} (${us(b?.cpuUsPerRequest)} vs ${us(http.haproxy?.cpuUsPerRequest)} µs${engineToo(ratio(engine?.cpuUsPerRequest, http.haproxy?.cpuUsPerRequest))})`),
    checkGet('GET req/s at least 1.6x the naive baseline', rpsRatio, sameRound.rpsVsNaive, (v) => v >= 1.6, `${fx(rpsRatio)} (${f(b?.rps, 0)} vs ${f(http.naive?.rps, 0)} req/s${engineToo(ratio(engine?.rps, http.naive?.rps))})`),
    checkGet('GET req/s ahead of fastify + @fastify/reply-from', rpsVsReplyFrom, sameRound.rpsVsReplyFrom, (v) => v > 1, `${fx(rpsVsReplyFrom)} (${f(b?.rps, 0)} vs ${f(http['reply-from']?.rps, 0)} req/s)`),
    checkGet('GET CPU per request below fastify + @fastify/reply-from', cpuVsReplyFrom, sameRound.cpuVsReplyFrom, (v) => v < 1, `${fx(cpuVsReplyFrom)} (${us(b?.cpuUsPerRequest)} vs ${us(http['reply-from']?.cpuUsPerRequest)} µs)`),
    check('1 MB POST CPU at most the naive baseline', postCpuVsNaive, (v) => v <= 1, `${fx(postCpuVsNaive)} (${us(post.balancer?.cpuUsPerRequest)} vs ${us(post.naive?.cpuUsPerRequest)} µs per MB${engineToo(ratio(post.engine?.cpuUsPerRequest, post.naive?.cpuUsPerRequest))})`),
    check('WebSocket messages/s not below the naive baseline (same http-proxy engine)', wsVsNaive, (v) => v >= 1, `${fx(wsVsNaive)} (${f(ws.balancer?.messagesPerSecond, 0)} vs ${f(ws.naive?.messagesPerSecond, 0)} msg/s)`),
    check('p99 at 2,000 req/s at most 1.5x HAProxy', p99Ratio, (v) => v <= 1.5, `${fx(p99Ratio)} (${f((fixed.balancer?.p99Us ?? NaN) / 1000)} vs ${f((fixed.haproxy?.p99Us ?? NaN) / 1000)} ms)`),
    check(
      '10,000 idle client connections: RSS at most 150 MB (before undici: about 150 MB)',
      idleRss,
      (v) => v <= 150 * 1024 * 1024,
      idleRss === null ? `not all connections held (${idle.balancer?.held ?? 0})` : `${mb(idleRss)} 2 s after opening${settledText(idle.balancer)}${engineIdle}`,
    ),
    ...againstBaseline,
  ];
}

function stamp(date) {
  return date.toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
}

async function main() {
  const started = new Date();
  // 'cluster', 'fleet', 'strategies' and 'http2' select phases that run their own balancer processes rather than a proxy target.
  const known = new Set([...ALL_TARGETS.map((t) => t.id), 'cluster', 'fleet', 'strategies', 'http2']);
  const selected = new Set(flags.only ? flags.only.split(',').map((s) => s.trim()).filter(Boolean) : known);
  for (const id of selected) if (!known.has(id)) throw new Error(`--only: unknown target ${id} (known: ${[...known].join(', ')})`);
  const proxyTargets = ALL_TARGETS.some((t) => selected.has(t.id));
  const PROXY_PHASES = ['get', 'post', 'websocket', 'fixed-rate', 'idle', 'instructions'];
  const phases = new Set(flags.phases ? flags.phases.split(',').map((s) => s.trim()).filter(Boolean) : PROXY_PHASES);
  for (const phase of phases) if (!PROXY_PHASES.includes(phase)) throw new Error(`--phases: unknown phase ${phase} (known: ${PROXY_PHASES.join(', ')})`);
  const loadPhases = proxyTargets && PROXY_PHASES.slice(0, 5).some((phase) => phases.has(phase));

  const wanted = ['wrk', ...['haproxy', 'nginx'].filter((name) => selected.has(name))];
  const { missing } = loadPhases ? ensurePackages(wanted, log) : { missing: [] };
  const loadTool = wrkAvailable() ? 'wrk' : 'autocannon';
  if (proxyTargets && loadTool !== 'wrk') log('wrk is unavailable: falling back to autocannon');

  const results = {
    date: started.toISOString(),
    mode: flags.quick ? 'quick' : 'full',
    only: flags.only ? [...selected] : null,
    machine: machineInfo(),
    versions: toolVersions(),
    loadTool,
    method:
      'Three node:http backends (one process each, keep-alive, body "hello\\n"). Every proxy does round-robin over them with keep-alive both ' +
      'sides and no access log; balancer and HAProxy also run 2 s health checks. Targets are measured in alternation, every other round in reverse (A B C, C B A, ...) ' +
      `so machine noise hits all alike. Each target runs as ${PROCESSES_PER_TARGET} process(es), started in interleaved order; every two rounds move on to its next process, so each median covers all of them. ` +
      'CPU is utime+stime from /proc of the proxy process tree, sampled around each run.',
    processesPerTarget: PROCESSES_PER_TARGET,
  };
  workDir = mkdtempSync(join(os.tmpdir(), 'balancer-bench-'));
  const skipped = {};
  const backends = proxyTargets ? await startBackends(3) : [];
  if (proxyTargets) log(`backends on ports ${backends.map((b) => b.port).join(', ')}`);
  const running = loadPhases ? await startAll(selected, backends, skipped, missing) : new Map();
  const scripts = writeWrkScripts(workDir, POST_BYTES);

  results.http = phases.has('get') ? await measureHttp(running, loadTool, scripts, selected, skipped) : null;
  results.post = phases.has('post') ? await measurePost(running, loadTool, scripts, selected, skipped) : null;
  results.websocket = phases.has('websocket') ? await measureWebSocket(running, selected, skipped) : null;
  results.fixedRate = phases.has('fixed-rate') ? await measureFixedRate(running, selected, skipped) : null;
  results.idleConnections = phases.has('idle') ? await measureIdle(running, selected, skipped) : null;
  results.instructions = phases.has('instructions') ? await measureInstructionPhase(selected, backends) : null;
  results.cluster = await measureCluster(selected);
  results.fleet = await measureFleet(selected);
  results.strategies = await measureStrategies(selected);
  results.http2 = await measureHttp2(selected);
  results.skipped = skipped;
  results.crashed = Object.fromEntries([...running.values()].map((t) => [t.id, crashReport(t)]).filter(([, report]) => report !== null));
  results.targets = loadPhases ? evaluateTargets(results) : null;
  results.machine.loadAverageAfter = loadAverage();
  results.durationSeconds = (Date.now() - started.getTime()) / 1000;

  await stopAllOwned();
  const markdown = renderMarkdown(results);
  process.stdout.write(`\n${markdown}\n`);
  if (!flags['no-save']) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const partial = flags.quick || flags.only || flags.phases;
    const file = join(RESULTS_DIR, `${stamp(started)}${flags.quick ? '-quick' : ''}${flags.only || flags.phases ? '-partial' : ''}.json`);
    const text = `${JSON.stringify(results, null, 2)}\n`;
    writeFileSync(file, text);
    // latest.json feeds docs/benchmarks.md, so only a full run of every target replaces it; a full-mode run that measured
    // the cluster, the fleet, the strategies or the instruction counts replaces just those sections of latest.json (each carries its own date and machine).
    const latest = join(RESULTS_DIR, 'latest.json');
    let note = ' and bench/results/latest.json';
    const sections = ['cluster', 'fleet', 'strategies', 'instructions', 'http2'].filter((name) => results[name]);
    if (!partial) writeFileSync(latest, text);
    else if (!flags.quick && sections.length > 0 && existsSync(latest)) {
      const merged = JSON.parse(readFileSync(latest, 'utf8'));
      for (const name of sections) merged[name] = { ...results[name], date: results.date, machine: results.machine, resultsFile: file.slice(RESULTS_DIR.length + 1) };
      writeFileSync(latest, `${JSON.stringify(merged, null, 2)}\n`);
      note = ` (partial run: only the ${sections.join(' and ')} section(s) of bench/results/latest.json replaced)`;
    } else note = ' (quick/partial run: latest.json left as it was)';
    log(`results: ${file}${note}`);
  }
}

main()
  .catch((error) => {
    log(`failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  })
  .finally(cleanupSync);
