// Free ports for tests that must name a port before anything listens on it (Raft peers, "nothing listens here").

import net from 'node:net';
import { readFile } from 'node:fs/promises';

/**
 * A port that was free a moment ago. It is drawn below the kernel's ephemeral range, so outgoing connections (which
 * take their local ports from that range) cannot sit on it when a test or a restarted node binds it later.
 * Anything that can listen on port 0 and read the port back should do that instead.
 */
export async function freePort(): Promise<number> {
  const ephemeralLow = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').then(
    (text) => Number(text.trim().split(/\s+/)[0]),
    () => 32_768,
  );
  const high = Number.isInteger(ephemeralLow) && ephemeralLow > 12_000 ? ephemeralLow : 32_768;
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (high - 10_000));
    if (await portIsFree(port)) return port;
  }
  throw new Error(`no free port found between 10000 and ${high} in 50 tries`);
}

function portIsFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
