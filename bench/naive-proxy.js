// The naive baseline: the minimal node-http-proxy gateway a user would write, with a keep-alive agent and round-robin.
// Usage: node bench/naive-proxy.js <backend-url>...  (prints {"port": N})

import http from 'node:http';
import httpProxy from 'http-proxy';
import { serveUntilStdinEnds } from './lib/proxy-script.js';

const targets = process.argv.slice(2);
if (targets.length === 0) {
  process.stderr.write('usage: node bench/naive-proxy.js http://127.0.0.1:PORT ...\n');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ agent });
let next = 0;
function pick() {
  const target = targets[next];
  next = (next + 1) % targets.length;
  return target;
}
proxy.on('error', (_error, _req, res) => {
  if (res instanceof http.ServerResponse) {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  } else {
    res.destroy();
  }
});
const server = http.createServer((req, res) => proxy.web(req, res, { target: pick() }));
server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head, { target: pick() }));
serveUntilStdinEnds(server);
