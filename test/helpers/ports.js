// Free ports for tests and benchmarks that must name a port before anything listens on it (Raft peers, "nothing listens here").
// Plain JavaScript so the benchmark (run by node, no TypeScript) uses this one too.

import net from 'node:net';
import { readFile } from 'node:fs/promises';

/**
 * A port that was free a moment ago. It is drawn below the kernel's ephemeral range, so outgoing connections (which
 * take their local ports from that range) cannot sit on it when a test or a restarted node binds it later.
 * Anything that can listen on port 0 and read the port back should do that instead.
 * @param {Set<number>} [taken] ports already handed out and not bound yet: skipped, and the new one added
 * @returns {Promise<number>}
 */
export async function freePort(taken) {
  const high = await ephemeralLow();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (high - 10_000));
    if (taken?.has(port) === true || !(await portIsFree(port))) continue;
    taken?.add(port);
    return port;
  }
  throw new Error(`no free port found between 10000 and ${high} in 200 tries`);
}

/**
 * The first port of the kernel's ephemeral range (outgoing connections take their local ports from there); ports
 * below it that nothing listens on stay free until someone binds them.
 * @returns {Promise<number>}
 */
export async function ephemeralLow() {
  const low = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').then(
    (text) => Number(text.trim().split(/\s+/)[0]),
    () => 32_768,
  );
  return Number.isInteger(low) && low > 12_000 ? low : 32_768;
}

/** @param {number} port @returns {Promise<boolean>} */
export function portIsFree(port) {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
