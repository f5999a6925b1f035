// The machine's TCP sockets as /proc/net/tcp and /proc/net/tcp6 list them: ports, state and inode.
// Plain JavaScript so the benchmark (run by node, no TypeScript) uses this one too.

import { readFileSync } from 'node:fs';

/** TCP states of /proc/net/tcp, by their hex code. */
const TCP_STATES = {
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

/**
 * @typedef {object} TcpSocket
 * @property {number} localPort
 * @property {number} remotePort
 * @property {string} state ESTABLISHED, LISTEN, ... (the hex code when unknown)
 * @property {string} inode what /proc/<pid>/fd/N links to as socket:[inode]
 */

/** @returns {TcpSocket[]} every IPv4 and IPv6 TCP socket of this network namespace */
export function tcpSockets() {
  /** @type {TcpSocket[]} */
  const sockets = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      sockets.push({
        localPort: parseInt(fields[1].split(':').pop(), 16),
        remotePort: parseInt(fields[2].split(':').pop(), 16),
        state: TCP_STATES[fields[3]] ?? fields[3],
        inode: fields[9],
      });
    }
  }
  return sockets;
}
