// Child processes of the benchmark: spawning with a raised fd limit, waiting for readiness, /proc CPU and RSS of process trees, and cleanup.

import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ; Linux exposes 100 on every mainstream architecture.
const PAGE_SIZE_BYTES = 4096;
/** 65536, or the hard limit when it is lower (containers often cannot raise it, even as root). */
export const FD_LIMIT = Math.min(65536, hardFdLimit());

function hardFdLimit() {
  try {
    const value = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    return value === 'unlimited' ? 65536 : Number(value);
  } catch {
    return 1024;
  }
}

/** A child spawned by spawnOwned, with the tail of its stderr kept for error messages. */
/** @typedef {import('node:child_process').ChildProcessWithoutNullStreams & { stderrText: string }} OwnedChild */

const owned = new Set();

/**
 * Spawns a command in its own process group (so a signal reaches its whole tree) with the soft fd limit raised
 * to FD_LIMIT through prlimit, which keeps the spawned pid the real program's pid.
 * @returns {OwnedChild}
 */
export function spawnOwned(command, args, options = {}) {
  const child = /** @type {OwnedChild} */ (
    spawn('prlimit', [`--nofile=${FD_LIMIT}:${FD_LIMIT}`, '--', command, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    ...options,
  })
  );
  owned.add(child);
  child.stderrText = '';
  child.stderr.on('data', (chunk) => {
    // Keep only the tail: enough to explain a failure, bounded for a chatty process.
    child.stderrText = (child.stderrText + chunk.toString()).slice(-8000);
  });
  child.on('exit', () => owned.delete(child));
  return child;
}

export function killOwned(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Stops one child and waits for it, escalating to SIGKILL after graceMs. */
export async function stopOwned(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  killOwned(child, 'SIGTERM');
  const timer = setTimeout(() => killOwned(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export function killAllOwnedSync() {
  for (const child of owned) killOwned(child, 'SIGKILL');
}

export async function stopAllOwned() {
  await Promise.all([...owned].map((child) => stopOwned(child)));
}

/**
 * Calls `onLine` with each JSON object `stream` prints, one per line (other lines are skipped); keeps at most 64 kB of a
 * partial line. Returns a function that stops reading.
 */
export function onJsonLines(stream, onLine) {
  let buffered = '';
  const listener = (chunk) => {
    buffered += chunk.toString();
    for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        continue;
      }
      onLine(line);
    }
    buffered = buffered.slice(-64_000);
  };
  stream.on('data', listener);
  return () => stream.off('data', listener);
}

/** Resolves with the first JSON object the child prints on stdout, or rejects on exit or timeout. */
export function firstJsonLine(child, timeoutMs, label) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => finish(new Error(`${label}: no ready line within ${timeoutMs} ms; stderr: ${child.stderrText}`)), timeoutMs);
    const onData = (chunk) => {
      buffered += chunk.toString();
      // Bounded: each pass removes one line.
      for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line.startsWith('{')) {
          try {
            finish(null, JSON.parse(line));
            return;
          } catch {
            // not our line
          }
        }
      }
    };
    const onExit = (code, signal) => finish(new Error(`${label} exited (${code ?? signal}) before ready; stderr: ${child.stderrText}`));
    function finish(error, value) {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(value);
    }
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Runs a measuring child to completion; its result is the last JSON line on stdout. */
export function runJsonChild(command, args, timeoutMs, label) {
  return new Promise((resolve, reject) => {
    const child = spawnOwned(command, args);
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk.toString();
    });
    child.stdin.end();
    const timer = setTimeout(() => {
      killOwned(child, 'SIGKILL');
      reject(new Error(`${label}: hard timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const lines = out.trim().split('\n').filter((line) => line.startsWith('{'));
      const last = lines[lines.length - 1];
      if (code !== 0 || last === undefined) {
        reject(new Error(`${label} failed (${code ?? signal}): ${child.stderrText.trim() || out.trim()}`));
        return;
      }
      resolve(JSON.parse(last));
    });
  });
}

function statFields(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces and parentheses; fields after the last ')' are fixed.
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

function childrenOf() {
  const byParent = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const parent = Number(statFields(entry)[1]);
      if (!byParent.has(parent)) byParent.set(parent, []);
      byParent.get(parent).push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return byParent;
}

export function processTree(rootPid) {
  const byParent = childrenOf();
  const pids = [];
  const queue = [rootPid];
  // Bounded by the number of live processes.
  while (queue.length > 0 && pids.length < 10_000) {
    const pid = queue.shift();
    pids.push(pid);
    for (const child of byParent.get(pid) ?? []) queue.push(child);
  }
  return pids;
}

/** The inodes of the sockets a process tree holds open, from its /proc/PID/fd links. */
function socketInodes(rootPid) {
  const inodes = new Set();
  for (const pid of processTree(rootPid)) {
    let fds = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited while we looked
    }
    for (const fd of fds) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match !== null) inodes.add(match[1]);
      } catch {
        // closed while we looked
      }
    }
  }
  return inodes;
}

/**
 * Established TCP connections a process tree holds to any of `ports` (remote ports), from /proc/net/tcp and tcp6:
 * how many backend connections a proxy keeps open.
 */
export function connectionsTo(rootPid, ports) {
  const inodes = socketInodes(rootPid);
  const wanted = new Set(ports);
  let count = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines = [];
    try {
      lines = readFileSync(table, 'utf8').split('\n').slice(1);
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of lines) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '01') continue;
      const remotePort = parseInt(fields[2].slice(fields[2].lastIndexOf(':') + 1), 16);
      if (wanted.has(remotePort) && inodes.has(fields[9])) count++;
    }
  }
  return count;
}

/**
 * CPU time of a process tree in microseconds: utime+stime of every live process, plus the root's
 * cutime+cstime so workers that exited and were reaped still count.
 */
export function treeCpuMicros(rootPid) {
  let ticks = 0;
  const pids = processTree(rootPid);
  for (const pid of pids) {
    try {
      const fields = statFields(pid);
      // After the ')' split: [0]=state, utime=field 14 -> index 11, stime 12, cutime 13, cstime 14.
      ticks += Number(fields[11]) + Number(fields[12]);
      if (pid === rootPid) ticks += Number(fields[13]) + Number(fields[14]);
    } catch {
      // exited while we looked
    }
  }
  return { micros: (ticks * 1e6) / CLOCK_TICKS_PER_SECOND, processes: pids.length };
}

export function treeRssBytes(rootPid) {
  let pages = 0;
  for (const pid of processTree(rootPid)) {
    try {
      pages += Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    } catch {
      // exited while we looked
    }
  }
  return pages * PAGE_SIZE_BYTES;
}

/** Polls GET url until it answers 200 (proxies may take a moment to see backends as up). */
export async function waitForHttp200(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    const status = await new Promise((resolve) => {
      // Under valgrind one request can take seconds (undici compiles its llhttp WebAssembly on the first one).
      const req = http.get(url, { agent: false, timeout: Math.min(10_000, timeoutMs) }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (error) => resolve(error.message));
    });
    if (status === 200) return;
    last = String(status);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

export function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/** Machine-wide CPU counters from /proc/stat, to show how busy other tenants kept the machine during a run. */
export function machineCpuTicks() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal: steal ?? 0 };
}

/** Busy and steal shares of all CPUs between two machineCpuTicks() samples. */
export function machineCpuShare(before, after) {
  const busy = after.busy - before.busy;
  const idle = after.idle - before.idle;
  const steal = after.steal - before.steal;
  const total = busy + idle + steal;
  return total > 0 ? { busyPercent: (100 * busy) / total, stealPercent: (100 * steal) / total } : null;
}
