// One HTTP/2 benchmark backend process (h2c, prior knowledge): GET answers "hello\n"; a gRPC call (content-type
// application/grpc) gets its request message back with grpc-status 0; grpc.health.v1.Health/Check answers SERVING.
// Usage: node bench/h2-backend.js   (prints {"port": N} on stdout once listening on 127.0.0.1)

import http2 from 'node:http2';

const BODY = Buffer.from('hello\n');
/** A gRPC message holding HealthCheckResponse { status: SERVING }. */
const SERVING = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);

const server = http2.createServer({ peerMaxConcurrentStreams: 1000 });
server.on('stream', (stream, headers) => {
  stream.on('error', () => stream.destroy());
  const type = headers['content-type'];
  if (typeof type === 'string' && type.startsWith('application/grpc')) {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => {
      const message = headers[':path'] === '/grpc.health.v1.Health/Check' ? SERVING : Buffer.concat(chunks);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(message);
    });
    return;
  }
  stream.resume();
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': BODY.length });
  stream.end(BODY);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: /** @type {import('node:net').AddressInfo} */ (server.address()).port })}\n`);
});

// The harness owns this process; leaving with it avoids orphans if the harness dies.
process.on('disconnect', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
