// What every measured Node proxy script of the bench does around its server: client keep-alive longer than any phase, a loopback port (PORT or any), {"port": N} on stdout, exit when stdin ends.

/** @param {import('node:http').Server} server */
export function serveUntilStdinEnds(server) {
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: /** @type {import('node:net').AddressInfo} */ (server.address()).port })}\n`);
  });
  // The harness ends stdin to stop the script, so no child outlives a run that is killed.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
