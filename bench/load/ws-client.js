// WebSocket echo load: each connection keeps a window of messages in flight and counts echoes over a fixed time.
// Usage: node bench/load/ws-client.js --url ws://127.0.0.1:PORT/ [--connections 50] [--window 4] [--size 64] [--seconds 5] [--warmup 1]
// Prints one JSON line: { messages, seconds, messagesPerSecond, connections, errors }.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { encodeFrame, frameReader, newClientKey } from '../lib/ws-frame.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    connections: { type: 'string', default: '50' },
    window: { type: 'string', default: '4' },
    size: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
  },
});
const target = new URL(values.url);
const connections = Number(values.connections);
const windowSize = Number(values.window);
const seconds = Number(values.seconds);
const warmupMs = Number(values.warmup) * 1000;
const payload = Buffer.alloc(Number(values.size), 0x61);

let counting = false;
let counted = 0;
let errors = 0;
let established = 0;
let stopped = false;

function connect() {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.hostname, port: Number(target.port) });
    socket.setNoDelay(true);
    let handshake = Buffer.alloc(0);
    let upgraded = false;
    const push = frameReader((opcode) => {
      if (opcode !== 0x1 && opcode !== 0x2) return;
      if (counting) counted++;
      if (!stopped) socket.write(encodeFrame(payload, true));
    });
    socket.on('connect', () => {
      socket.write(
        `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${newClientKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('data', (chunk) => {
      if (upgraded) {
        push(chunk);
        return;
      }
      handshake = Buffer.concat([handshake, chunk]);
      const end = handshake.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!handshake.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) {
        reject(new Error(`upgrade refused: ${handshake.subarray(0, end).toString().split('\r\n')[0]}`));
        socket.destroy();
        return;
      }
      upgraded = true;
      established++;
      for (let i = 0; i < windowSize; i++) socket.write(encodeFrame(payload, true));
      resolve(socket);
      if (handshake.length > end + 4) push(handshake.subarray(end + 4));
    });
    socket.on('error', (error) => {
      errors++;
      reject(error);
    });
  });
}

const hardTimeout = setTimeout(() => {
  process.stderr.write('ws-client: hard timeout\n');
  process.exit(1);
}, (seconds + Number(values.warmup) + 20) * 1000);

const sockets = await Promise.all(Array.from({ length: connections }, () => connect()));
await new Promise((resolve) => setTimeout(resolve, warmupMs));
counting = true;
const start = performance.now();
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
counting = false;
const elapsed = (performance.now() - start) / 1000;
stopped = true;
for (const socket of sockets) socket.destroy();
clearTimeout(hardTimeout);
process.stdout.write(
  `${JSON.stringify({ messages: counted, seconds: elapsed, messagesPerSecond: counted / elapsed, connections: established, errors })}\n`,
);
process.exit(0);
