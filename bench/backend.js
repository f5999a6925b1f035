// One benchmark backend process: a keep-alive node:http server answering "hello\n", sinking POST bodies and echoing WebSocket frames.
// Usage: node bench/backend.js   (prints {"port": N} on stdout once listening on 127.0.0.1)

import http from 'node:http';
import { acceptKey, encodeFrame, frameReader } from './lib/ws-frame.js';

const BODY = Buffer.from('hello\n');

const server = http.createServer((req, res) => {
  if (req.method === 'POST' || req.method === 'PUT') {
    let received = 0;
    req.on('data', (chunk) => {
      received += chunk.length;
    });
    req.on('end', () => {
      const answer = Buffer.from(`${received}\n`);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length });
      res.end(answer);
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});
// Longer than every proxy's idle timeout toward backends, so proxies close idle sockets first, as in production.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.maxRequestsPerSocket = 0;

server.on('upgrade', (req, socket, head) => {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || (req.headers['upgrade'] ?? '').toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    return;
  }
  /** @type {import('node:net').Socket} */ (socket).setNoDelay(true);
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`,
  );
  const push = frameReader((opcode, payload) => {
    if (opcode === 0x8) {
      socket.end(encodeFrame(Buffer.alloc(0), false, 0x8));
      return;
    }
    if (opcode === 0x1 || opcode === 0x2) socket.write(encodeFrame(payload, false, opcode));
  });
  socket.on('data', push);
  socket.on('error', () => socket.destroy());
  if (head.length > 0) push(head);
});

server.listen(0, '127.0.0.1', () => {
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
});

// The harness owns this process; leaving with it avoids orphans if the harness dies.
process.on('disconnect', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
