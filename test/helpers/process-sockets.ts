// Counts the TCP sockets a process holds, from /proc: its socket fds matched to /proc/net/tcp{,6} by inode.

import { readdirSync, readlinkSync } from 'node:fs';
import { tcpSockets } from './tcp-sockets.js';

export interface HeldSocket {
  readonly localPort: number;
  readonly state: string;
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed between the listing and the read
    }
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match !== null) inodes.add(match[1]!);
  }
  return inodes;
}

/** Every TCP socket `pid` has open (listening ones included). */
export function heldTcpSockets(pid: number): HeldSocket[] {
  const inodes = socketInodes(pid);
  return tcpSockets()
    .filter((socket) => inodes.has(socket.inode))
    .map((socket) => ({ localPort: socket.localPort, state: socket.state }));
}

/** The connections (not the listening socket) `pid` holds on its local `port`. */
export function connectionsOnPort(pid: number, port: number): HeldSocket[] {
  return heldTcpSockets(pid).filter((socket) => socket.localPort === port && socket.state !== 'LISTEN');
}
