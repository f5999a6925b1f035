#!/usr/bin/env -S node --initial-old-space-size=64
// Entry point: runs the compiled CLI (npm install builds dist/).
// The V8 flag gives the old generation room above the young one; the README's Design section says why.
import { main } from '../dist/cli/main.js';

main(process.argv).catch((error) => {
  process.stderr.write(`balancer: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
