// Opens many keep-alive client connections, sends one GET on each, then holds them idle until told to close.
// Usage: node bench/load/idle-conns.js --url http://127.0.0.1:PORT/ --count 10000 [--batch 500]
// Prints {"ready": true, "open": N, "failed": F} once all are idle, then exits when stdin ends (the harness measures in between).

import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    count: { type: 'string', default: '10000' },
    batch: { type: 'string', default: '500' },
  },
});
const target = new URL(values.url);
const count = Number(values.count);
const batch = Number(values.batch);
const REQUEST = `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`;
const sockets = [];
let failed = 0;
let closedEarly = 0;

function openOne() {
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.hostname, port: Number(target.port) });
    let answered = false;
    socket.on('connect', () => socket.write(REQUEST));
    socket.on('data', (chunk) => {
      // The tiny response arrives in one chunk; the connection then stays open and idle.
      if (!answered && chunk.toString('latin1').startsWith('HTTP/1.1 200')) {
        answered = true;
        sockets.push(socket);
        resolve();
      }
    });
    socket.on('error', () => {
      if (!answered) {
        failed++;
        resolve();
      }
    });
    socket.on('close', () => {
      if (answered) closedEarly++;
      else {
        failed++;
        resolve();
      }
    });
  });
}

const hardTimeout = setTimeout(() => process.exit(1), 120_000);
// Batches keep the accept queue from overflowing (SYN backlog drops would cost a 1 s retransmit each).
for (let started = 0; started < count; started += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, count - started) }, () => openOne()));
}
clearTimeout(hardTimeout);
process.stdout.write(`${JSON.stringify({ ready: true, open: sockets.length, failed })}\n`);
process.stdin.on('data', (chunk) => {
  if (chunk.toString().includes('status')) process.stdout.write(`${JSON.stringify({ open: sockets.length - closedEarly, closedEarly })}\n`);
});
process.stdin.on('end', () => {
  for (const socket of sockets) socket.destroy();
  process.exit(0);
});
process.stdin.resume();
