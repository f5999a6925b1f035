// The bench's count of a proxy's backend connections (bench/lib/proc.js connectionsTo), against sockets this test opens.

import { afterEach, describe, expect, it } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { connectionsTo } from '../../bench/lib/proc.js';

const opened: net.Socket[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const socket of opened.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

async function listening(): Promise<number> {
  const server = net.createServer((socket) => opened.push(socket));
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function connect(port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  opened.push(socket);
  await once(socket, 'connect');
}

describe('connectionsTo', () => {
  it('counts the established connections this process holds to the given ports, and only those', async () => {
    const backend = await listening();
    const other = await listening();
    await connect(backend);
    await connect(backend);
    await connect(other);
    expect(connectionsTo(process.pid, [backend])).toBe(2);
    expect(connectionsTo(process.pid, [backend, other])).toBe(3);
    // The server side of those connections has the backend's port as its local port, not its remote one.
    expect(connectionsTo(process.pid, [await listening()])).toBe(0);
  });
});
