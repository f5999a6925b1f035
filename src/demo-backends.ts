// Small HTTP servers standing in for real backends, so `npm start` shows load balancing on a fresh machine.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ReplicatedConfig } from './config/schema.js';
import type { Logger } from './log.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export interface DemoBackends {
  close(): Promise<void>;
}

/** Starts one demo server per loopback backend of the config whose port is free; each answers with its own id. */
export async function startDemoBackends(config: ReplicatedConfig, logger: Logger): Promise<DemoBackends> {
  const servers: http.Server[] = [];
  for (const pool of Object.values(config.pools)) {
    for (const backend of pool.backends) {
      const url = new URL(backend.url);
      if (url.protocol !== 'http:' || !LOOPBACK.has(url.hostname)) continue;
      const server = http.createServer((req, res) => {
        if (req.url === '/healthz') {
          res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
          return;
        }
        const body = `hello from ${backend.id} (pool ${pool.name}): ${req.method} ${req.url}\n`;
        res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': backend.id }).end(body);
      });
      const hostname = url.hostname === '[::1]' ? '::1' : url.hostname;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(Number(url.port || 80), hostname, () => resolve());
        });
        servers.push(server);
        const address = server.address() as AddressInfo;
        logger.info('demo backend listening', { pool: pool.name, backend: backend.id, port: address.port });
      } catch (error) {
        logger.warn('demo backend not started: port in use or not bindable', { backend: backend.id, url: backend.url, err: error });
      }
    }
  }
  return {
    close: async () => {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.closeAllConnections();
              server.close(() => resolve());
            }),
        ),
      );
    },
  };
}
