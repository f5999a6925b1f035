// Clients that never read and never hang up: every error answer must end with the server's socket destroyed.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, startBackend, type TestBackend } from '../helpers/backend.js';
import { START_TIMEOUT_MS, startCli, type RunningNode } from '../helpers/process.js';
import { connectionsOnPort } from '../helpers/process-sockets.js';
import { eventually } from '../helpers/wait.js';

const HEADERS_TIMEOUT_MS = 1_000;
/** The head timeout, Node's check period, the linger after the answer, and room for a loaded machine. */
const RELEASE_DEADLINE_MS = HEADERS_TIMEOUT_MS + 1_000 + 1_000 + 12_000;
const DRIBBLERS = 20;

let dir: string;
let backend: TestBackend;
let node: RunningNode;
let proxyPort: number;
let adminPort: number;
const clients: net.Socket[] = [];
let drip: NodeJS.Timeout | null = null;

function portOf(address: unknown): number {
  return Number(String(address).split(':').pop());
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'balancer-slow-'));
  const file = join(dir, 'balancer.yaml');
  // The backend answers upgrades like any request (it has no upgrade handler): a refused upgrade.
  backend = await startBackend('b');
  await writeFile(
    file,
    `listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0, token: t }\nlimits: { headersTimeout: ${HEADERS_TIMEOUT_MS}ms }\n` +
      `pools:\n  web:\n    backends:\n      - { url: "${backend.url}" }\n`,
  );
  node = startCli(['start', '-c', file]);
  const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'balancer to start', START_TIMEOUT_MS);
  proxyPort = portOf(started['proxy']);
  adminPort = portOf(started['admin']);
});

afterAll(async () => {
  if (drip !== null) clearInterval(drip);
  for (const client of clients) client.destroy();
  node.child.kill('SIGKILL');
  await node.exited;
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

/** A client that sends `head` and never reads: paused, so the answer stays in its receive buffer. */
function nonReadingClient(port: number, head: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.pause();
    socket.on('error', () => undefined); // the server's reset, once it gives up on us
    socket.once('connect', () => {
      socket.write(head);
      clients.push(socket);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

describe('clients that never read', () => {
  it('lose their server sockets shortly after the head timeout, on the proxy and the admin listener', async () => {
    const pid = node.child.pid!;
    expect(connectionsOnPort(pid, proxyPort)).toEqual([]);
    expect(connectionsOnPort(pid, adminPort)).toEqual([]);

    const slow: net.Socket[] = [];
    const others: Array<Promise<net.Socket>> = [];
    for (const port of [proxyPort, adminPort]) {
      // Slowloris: a header line now and then, never the end of the head (408 after headersTimeout).
      for (let i = 0; i < DRIBBLERS; i++) slow.push(await nonReadingClient(port, 'GET / HTTP/1.1\r\nHost: x\r\n'));
      // A malformed head (400), answered at once; the client neither reads nor closes.
      for (let i = 0; i < 5; i++) others.push(nonReadingClient(port, 'GET / HTTP/1.1\r\nHost x\r\n\r\n'));
    }
    for (let i = 0; i < 5; i++) {
      // Raw-socket answers of the proxy: CONNECT (405) and an upgrade for a foreign host (400).
      others.push(nonReadingClient(proxyPort, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'));
      others.push(nonReadingClient(proxyPort, 'GET http://evil.example/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'));
      // An upgrade the backend refuses: its answer is relayed, then the connection must end.
      others.push(nonReadingClient(proxyPort, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'));
    }
    await Promise.all(others);
    let line = 0;
    drip = setInterval(() => {
      line += 1;
      for (const socket of slow) if (!socket.destroyed) socket.write(`X-Drip-${line}: x\r\n`);
    }, 100);

    // The slow clients are held while their head is incomplete...
    await eventually(
      () => connectionsOnPort(pid, proxyPort).length >= DRIBBLERS && connectionsOnPort(pid, adminPort).length >= DRIBBLERS,
      'the slow clients to be connected',
    );
    // ...and released, every one, once the head timeout answered them, though none of them reads or closes.
    const held = (): number => connectionsOnPort(pid, proxyPort).length + connectionsOnPort(pid, adminPort).length;
    await eventually(() => held() === 0, 'every server-side socket to be closed', RELEASE_DEADLINE_MS, 100).catch((error: unknown) => {
      const still = { proxy: connectionsOnPort(pid, proxyPort), admin: connectionsOnPort(pid, adminPort) };
      throw new Error(`${String(error)}; still held: ${JSON.stringify(still)}`);
    });
    clearInterval(drip);
    drip = null;

    // The node still serves both listeners.
    expect((await request(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
    expect((await request(`http://127.0.0.1:${proxyPort}/`)).status).toBe(200);
    expect(backend.seen.filter((seen) => seen.headers.upgrade === 'websocket').length).toBe(5);
  });
});
