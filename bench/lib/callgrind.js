// Instructions per request under valgrind's callgrind: a cost measure that machine noise does not move.
//
// Wall-clock CPU per request on a shared 2-core machine swings by tens of percent from run to run; callgrind
// counts the user-space instructions a process executes, which repeat to within about 1% for the same build
// and load. Each target runs under callgrind, is warmed up, its counters are zeroed, a fixed number of
// keep-alive GETs is sent, and the counters are dumped per thread. Kernel work (the socket syscalls) is not
// counted, so the ratios here say how much user-space work each proxy does, not how much time it takes.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { stopOwned } from './proc.js';
import { startTarget } from './targets.js';

/** Under valgrind a Node process takes 10-20 s to start. */
const READY_TIMEOUT_MS = 180_000;
const CONCURRENCY = 8;

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
 * Measures one target on an instance of its own and returns { requests, instructionsPerRequest, mainThreadPerRequest }.
 * Run targets one after another, never together, so none shares the machine's second core with another.
 */
export async function measureInstructions({ target, backends, workDir, log, warmup, requests }) {
  const prefix = `callgrind-${target.id}`;
  const wrapper = ['valgrind', '--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(workDir, prefix)}`];
  log(`instructions: ${target.id} under callgrind (start-up takes a while)`);
  const started = await startTarget(target, backends, workDir, { wrapper, readyTimeoutMs: READY_TIMEOUT_MS });
  try {
    await sendRequests(started.url, warmup);
    execFileSync('callgrind_control', ['--zero', String(started.pid)], { stdio: 'ignore' });
    await sendRequests(started.url, requests);
    execFileSync('callgrind_control', ['--dump', String(started.pid)], { stdio: 'ignore' });
  } finally {
    await stopOwned(started.child, 30_000);
  }
  const counts = readDump(workDir, prefix, 1);
  if (counts.all === 0) throw new Error(`callgrind wrote no counts for ${target.id}`);
  const result = { requests, instructionsPerRequest: Math.round(counts.all / requests), mainThreadPerRequest: Math.round(counts.main / requests) };
  log(`  ${target.id}: ${result.instructionsPerRequest} instructions/request (${result.mainThreadPerRequest} on the main thread)`);
  return result;
}
