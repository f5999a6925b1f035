// One benchmark backend that answers every request after a fixed delay, as a slower host would; the harness
// changes the delay at run time by writing `delay MS` on its stdin (the "slow backend recovers" scenario).
// Usage: node bench/delay-backend.js --delay 50   (prints {"port": N} on stdout once listening on 127.0.0.1)

import http from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { delay: { type: 'string', default: '0' } } });
let delayMs = Number(values.delay);
const BODY = Buffer.from('hello\n');

const server = http.createServer((req, res) => {
  // Health checks are answered at once: the delay is the application's, not the host's.
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-length': 0 }).end();
    return;
  }
  req.resume();
  const answer = () => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length }).end(BODY);
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: /** @type {import('node:net').AddressInfo} */ (server.address()).port })}\n`);
});

createInterface({ input: process.stdin }).on('line', (line) => {
  const match = /^delay (\d+(?:\.\d+)?)$/.exec(line.trim());
  if (match) {
    delayMs = Number(match[1]);
    process.stdout.write(`${JSON.stringify({ delayMs })}\n`);
  }
});
// The harness owns this process; leaving with it avoids orphans if the harness dies.
process.on('disconnect', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
