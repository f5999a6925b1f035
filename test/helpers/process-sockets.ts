// Counts the TCP sockets a process holds, from /proc: its socket fds matched to /proc/net/tcp{,6} by inode.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** TCP states of /proc/net/tcp, by their hex code. */
const TCP_STATES: Readonly<Record<string, string>> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

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
  const held: HeldSocket[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || !inodes.has(fields[9]!)) continue;
      const localPort = parseInt(fields[1]!.split(':').pop()!, 16);
      held.push({ localPort, state: TCP_STATES[fields[3]!] ?? fields[3]! });
    }
  }
  return held;
}

/** The connections (not the listening socket) `pid` holds on its local `port`. */
export function connectionsOnPort(pid: number, port: number): HeldSocket[] {
  return heldTcpSockets(pid).filter((socket) => socket.localPort === port && socket.state !== 'LISTEN');
}
