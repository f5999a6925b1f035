// The engine floor: node:http server, one undici Pool per backend, each response streamed into `res` through dispatch, round-robin; nothing else.
// Usage: node bench/engine-proxy.js <backend-url>...  (prints {"port": N})
//
// balancer forwards ordinary requests with exactly this engine (the same server, the same Pool, the same handler
// protocol). This script adds none of balancer's work: no request id, no X-Forwarded-*, no routing, no metrics, no
// retries, no timeouts of its own. Its row is the least CPU per request balancer could reach without changing engine.

import http from 'node:http';
import { createRequire } from 'node:module';
import { serveUntilStdinEnds } from './lib/proxy-script.js';

// From its own file, as balancer loads it (src/proxy/undici-parts.ts): undici's index would add fetch, WebSocket and
// the rest, several MB that balancer does not carry, to this row's memory.
/** @type {typeof import('undici').Pool} */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js');

const targets = process.argv.slice(2);
if (targets.length === 0) {
  process.stderr.write('usage: node bench/engine-proxy.js http://127.0.0.1:PORT ...\n');
  process.exit(2);
}
const pools = targets.map((url) => new Pool(url, { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 }));
let next = 0;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** One exchange, as an undici dispatch handler: the head written with one writeHead, the body chunk by chunk. */
class Exchange {
  /** @param {http.ServerResponse} res */
  constructor(res) {
    this.res = res;
    /** @type {(() => void) | null} */
    this.resume = null;
  }

  onConnect() {}

  /** @param {number} status @param {Buffer[]} raw @param {() => void} resume */
  onHeaders(status, raw, resume) {
    this.resume = resume;
    const list = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1');
      if (!HOP_BY_HOP.has(name.toLowerCase())) list.push(name, raw[i + 1].toString('latin1'));
    }
    this.res.writeHead(status, list);
    return true;
  }

  /** @param {Buffer} chunk */
  onData(chunk) {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', () => this.resume?.());
    return false;
  }

  onComplete() {
    this.res.end();
  }

  onError() {
    if (this.res.headersSent) this.res.destroy();
    else this.res.writeHead(502).end();
  }
}

const server = http.createServer((req, res) => {
  const pool = pools[next];
  next = (next + 1) % pools.length;
  const headers = req.headers;
  headers.connection = undefined;
  headers['keep-alive'] = undefined;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  headers['transfer-encoding'] = undefined;
  pool.dispatch(
    { path: req.url ?? '/', method: /** @type {import('undici').Dispatcher.HttpMethod} */ (req.method), headers: /** @type {Record<string, string>} */ (headers), body: hasBody ? req : null, reset: false },
    /** @type {import('undici').Dispatcher.DispatchHandler} */ (/** @type {unknown} */ (new Exchange(res))),
  );
});
serveUntilStdinEnds(server);
