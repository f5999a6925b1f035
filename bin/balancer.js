#!/usr/bin/env node
// Entry point: runs the compiled CLI (npm install builds dist/).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((error) => {
  process.stderr.write(`balancer: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
