#!/usr/bin/env node
// `npm run lint`: ESLint (import boundaries), tsc over the tests and tsc over the bench, on two lanes at once; fails if any fails.
//
// The three are single-threaded and independent, so on two cores the type check of the tests (the longest) runs
// beside ESLint followed by the bench check: about 40 s instead of 75 s on a quiet machine. Each step's output is
// printed whole when it ends, under its command line, so two steps never interleave.

import { spawn } from 'node:child_process';

/** @type {ReadonlyArray<ReadonlyArray<readonly [string, readonly string[]]>>} */
const LANES = [
  [['tsc', ['-p', 'test/tsconfig.json']]],
  [
    // The cache (results per file, by content; no rule here reads types across files) is kept out of git like tsc's build info.
    ['eslint', ['--max-warnings', '0', '--cache', '--cache-strategy', 'content', '--cache-location', 'node_modules/.cache/balancer/eslint/', '.']],
    ['tsc', ['-p', 'bench/tsconfig.json']],
  ],
];

/**
 * @param {string} command
 * @param {readonly string[]} args
 * @returns {Promise<boolean>} whether it exited 0
 */
function step(command, args) {
  return new Promise((resolve) => {
    // npm puts node_modules/.bin on PATH for scripts; this runs the same binaries `npm run lint` always did.
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    /** @type {Buffer[]} */
    const output = [];
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.on('error', (error) => {
      process.stderr.write(`lint: cannot run ${command}: ${error.message}\n`);
      resolve(false);
    });
    child.on('close', (code) => {
      const text = Buffer.concat(output).toString('utf8');
      process.stdout.write(`> ${[command, ...args].join(' ')}${code === 0 ? '' : ` (exit ${String(code)})`}\n${text}${text === '' || text.endsWith('\n') ? '' : '\n'}`);
      resolve(code === 0);
    });
  });
}

/**
 * @param {ReadonlyArray<readonly [string, readonly string[]]>} lane
 * @returns {Promise<boolean>} whether every step passed (a lane stops at its first failure)
 */
async function runLane(lane) {
  for (const [command, args] of lane) if (!(await step(command, args))) return false;
  return true;
}

const results = await Promise.all(LANES.map(runLane));
process.exitCode = results.every(Boolean) ? 0 : 1;
