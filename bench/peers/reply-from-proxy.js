// The best-known Node peer: fastify with @fastify/reply-from, configured as its README recommends (an array `base`
// makes it load-balance round-robin over an undici BalancedPool; undici is its default client).
// Usage: node bench/peers/reply-from-proxy.js <backend-url>...  (prints {"port": N}); lives here so it resolves
// fastify from bench/peers/node_modules, which the benchmark installs on demand.

import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const targets = process.argv.slice(2);
if (targets.length === 0) {
  process.stderr.write('usage: node bench/peers/reply-from-proxy.js http://127.0.0.1:PORT ...\n');
  process.exit(2);
}
const proxy = Fastify({ logger: false, keepAliveTimeout: 120_000 });
await proxy.register(replyFrom, { base: targets.length === 1 ? targets[0] : targets });
proxy.all('/*', (request, reply) => reply.from(request.url));
await proxy.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ port: proxy.server.address().port })}\n`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
