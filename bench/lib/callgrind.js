// Instructions per request under valgrind's callgrind: a cost measure that machine noise does not move.
//
// Wall-clock CPU per request on a shared 2-core machine swings by tens of percent from run to run; callgrind
// counts the user-space instructions a process executes, which repeat to within about 1% for the same build
// and load. Each target runs under callgrind, is warmed up, its counters are zeroed, a fixed number of
// keep-alive GETs is sent, and the counters are dumped per thread. Kernel work (the socket syscalls) is not
// counted, so the ratios here say how much user-space work each proxy does, not how much time it takes.
//
// A target's periodic work (health checks, balancer's once-a-second dashboard sampler, which renders the request
// counters while they change) runs by the clock, not per request, and under valgrind 3,000 requests take one to two
// minutes instead of a fraction of a second: counted raw, that work lands on each request a hundred times over its
// real share, and more so the slower a loaded machine lets valgrind run (the same balancer build measured 326k and
// 406k instructions per GET). So a second window follows on the same instance, as long, with one request a second
// (so every clock-driven job does what it does while requests arrive), and the two windows give the two unknowns:
//   window:  C1 = N * perRequest + T1 * perSecond        second window:  C2 = n * perRequest + T2 * perSecond
// solved for the main thread, where those jobs run. The raw count and the periodic rate are reported beside.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { stopOwned } from './proc.js';
import { startTarget } from './targets.js';

/** Under valgrind a Node process takes 10-20 s to start. */
const READY_TIMEOUT_MS = 180_000;
const CONCURRENCY = 8;
/** The second window: long enough for several rounds of every periodic job (health checks every 2 s, a sampler every 1 s). */
const PERIODIC_WINDOW_MS = 20_000;
const PERIODIC_REQUEST_EVERY_MS = 1_000;

/** Sends `count` keep-alive GETs over CONCURRENCY connections; rejects on the first failure. */
function sendRequests(url, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  return new Promise((resolve, reject) => {
    let started = 0;
    let finished = 0;
    const next = () => {
      if (started >= count) return;
      started++;
      http
        .get(url, { agent }, (res) => {
          if (res.statusCode !== 200) {
            reject(new Error(`${url} answered ${res.statusCode}`));
            return;
          }
          res.resume();
          res.on('end', () => {
            finished++;
            if (finished === count) {
              agent.destroy();
              resolve();
            } else next();
          });
        })
        .on('error', reject);
    };
    for (let i = 0; i < Math.min(CONCURRENCY, count); i++) next();
  });
}

/** One GET every `everyMs` for `durationMs` over one keep-alive connection; resolves with how many were answered. */
async function trickle(url, durationMs, everyMs) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const end = performance.now() + durationMs;
  let answered = 0;
  try {
    while (performance.now() + everyMs <= end) {
      const sent = performance.now();
      await new Promise((resolve, reject) => {
        http
          .get(url, { agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      });
      answered++;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, sent + everyMs - performance.now())));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, end - performance.now())));
  } finally {
    agent.destroy();
  }
  return answered;
}

/** Sums the `summary:` line of every per-thread file of dump number `dump`; thread 1 is the main thread. */
function readDump(dir, prefix, dump) {
  let main = 0;
  let all = 0;
  for (const name of readdirSync(dir)) {
    const match = new RegExp(`^${prefix}\\.${dump}-(\\d+)$`).exec(name);
    if (match === null) continue;
    const summary = /^summary:\s+(\d+)/m.exec(readFileSync(join(dir, name), 'utf8'));
    if (summary === null) continue;
    const count = Number(summary[1]);
    all += count;
    if (Number(match[1]) === 1) main = count;
  }
  return { main, all };
}

/**
 * Measures one target on an instance of its own and returns { requests, instructionsPerRequest, mainThreadPerRequest }
 * (periodic work taken off; the raw counts, the periodic rate and the window's length beside them).
 * Run targets one after another, never together, so none shares the machine's second core with another.
 */
export async function measureInstructions({ target, backends, workDir, log, warmup, requests }) {
  const prefix = `callgrind-${target.id}`;
  const wrapper = ['valgrind', '--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(workDir, prefix)}`];
  log(`instructions: ${target.id} under callgrind (start-up takes a while)`);
  const started = await startTarget(target, backends, workDir, { wrapper, readyTimeoutMs: READY_TIMEOUT_MS });
  let windowSeconds;
  let periodicSeconds;
  let periodicRequests;
  try {
    // Warm-up over two sets of connections: when the first set closes, V8 throws away much of the code it optimised
    // (the closed sockets change shape) and compiles it again, once. Over a single set, that happened at the start of
    // the measured window, which then counted the recompilation and the unoptimised code meanwhile.
    await sendRequests(started.url, Math.ceil(warmup / 2));
    await sendRequests(started.url, Math.floor(warmup / 2));
    execFileSync('callgrind_control', ['--zero', String(started.pid)], { stdio: 'ignore' });
    const windowStart = performance.now();
    await sendRequests(started.url, requests);
    execFileSync('callgrind_control', ['--dump', String(started.pid)], { stdio: 'ignore' });
    windowSeconds = (performance.now() - windowStart) / 1000;
    execFileSync('callgrind_control', ['--zero', String(started.pid)], { stdio: 'ignore' });
    const periodicStart = performance.now();
    periodicRequests = await trickle(started.url, PERIODIC_WINDOW_MS, PERIODIC_REQUEST_EVERY_MS);
    execFileSync('callgrind_control', ['--dump', String(started.pid)], { stdio: 'ignore' });
    periodicSeconds = (performance.now() - periodicStart) / 1000;
  } finally {
    await stopOwned(started.child, 30_000);
  }
  const counts = readDump(workDir, prefix, 1);
  if (counts.all === 0) throw new Error(`callgrind wrote no counts for ${target.id}`);
  const periodic = readDump(workDir, prefix, 2);
  // The two windows' equations solved for the main thread's per-request count (see the top of this file): the periodic
  // jobs run there. The helper threads (V8's compiler and GC) are counted as they are: in the second window they did
  // work of their own (compiling what the trickle ran) that is no rate to take off.
  const scale = windowSeconds / periodicSeconds;
  const main = Math.max(0, (counts.main - periodic.main * scale) / (requests - periodicRequests * scale));
  const helpers = (counts.all - counts.main) / requests;
  const result = {
    requests,
    instructionsPerRequest: Math.round(main + helpers),
    mainThreadPerRequest: Math.round(main),
    rawInstructionsPerRequest: Math.round(counts.all / requests),
    rawMainThreadPerRequest: Math.round(counts.main / requests),
    periodicInstructionsPerSecond: Math.round(Math.max(0, periodic.main - periodicRequests * main) / periodicSeconds),
    windowSeconds: Math.round(windowSeconds * 10) / 10,
  };
  log(
    `  ${target.id}: ${result.instructionsPerRequest} instructions/request (${result.mainThreadPerRequest} on the main thread); ` +
      `raw ${result.rawInstructionsPerRequest} over ${result.windowSeconds} s, periodic work ${result.periodicInstructionsPerSecond}/s`,
  );
  return result;
}
