// Closed-loop HTTP load: wrk when installed (its Lua done() hook reports exact counts and microsecond percentiles), else autocannon.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runJsonChild } from './proc.js';

export function wrkAvailable() {
  try {
    execFileSync('wrk', ['-v'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // wrk -v exits 1 after printing its version on some builds; only "not found" means absent.
    return error.code !== 'ENOENT';
  }
}

const REPORT_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

/** Writes the wrk scripts once into workDir; the POST script carries a body of postBytes. */
export function writeWrkScripts(workDir, postBytes) {
  const get = join(workDir, 'get.lua');
  const post = join(workDir, 'post.lua');
  writeFileSync(get, REPORT_LUA);
  writeFileSync(
    post,
    `wrk.method = "POST"\nwrk.body = string.rep("x", ${postBytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n${REPORT_LUA}`,
  );
  return { get, post };
}

/**
 * One closed-loop run. Returns { requests, seconds, rps, bytes, errors, latencyUs } or throws.
 * The hard timeout is the run's duration plus a margin, so a wedged target cannot hang the bench.
 */
export async function runWrk({ url, script, seconds, connections, threads }) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', '-s', script, url];
  const result = await runJsonChild('wrk', args, (seconds + 15) * 1000, `wrk ${url}`);
  const errorCount = Object.values(result.errors).reduce((sum, n) => sum + n, 0);
  return {
    requests: result.requests,
    seconds: result.durationUs / 1e6,
    rps: result.requests / (result.durationUs / 1e6),
    bytes: result.bytes,
    errors: result.errors,
    errorCount,
    latencyUs: result.latencyUs,
  };
}

/** The autocannon fallback, used only when wrk is missing; autocannon is not a dependency, so it must be installed by hand. */
export async function runAutocannon({ url, seconds, connections, method = 'GET', body }) {
  let autocannon;
  try {
    // Not a dependency: a computed name keeps the type checker from looking for it.
    const optionalModule = 'autocannon';
    autocannon = (await import(optionalModule)).default;
  } catch {
    throw new Error('neither wrk nor autocannon is available: apt-get install wrk (or npm install --no-save autocannon)');
  }
  const result = await autocannon({ url, duration: seconds, connections, method, body });
  return {
    requests: result.requests.total,
    seconds: result.duration,
    rps: result.requests.total / result.duration,
    bytes: result.throughput.total,
    errors: { errors: result.errors, timeouts: result.timeouts, non2xx: result.non2xx },
    errorCount: result.errors + result.timeouts + result.non2xx,
    latencyUs: { p50: result.latency.p50 * 1000, p90: result.latency.p90 * 1000, p99: result.latency.p99 * 1000, max: result.latency.max * 1000, mean: result.latency.mean * 1000 },
  };
}
