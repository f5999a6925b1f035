// Long-mode simulator entry: `npm run sim -- --seeds N --from S` (seeds S..S+N-1), plus fault-mix flags.

import { SimulationFailure, runSeed, type SimOptions } from './simulator.js';

interface CliArgs {
  seeds: number;
  from: number;
  trace: boolean;
  options: SimOptions;
}

function parseArgs(argv: readonly string[]): CliArgs {
  const args: CliArgs = { seeds: 100, from: 1, trace: false, options: {} };
  const numberAfter = (i: number, flag: string): number => {
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value < 0) throw new Error(`${flag} needs a non-negative integer`);
    return value;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    switch (flag) {
      case '--seeds':
        args.seeds = numberAfter(i++, flag);
        break;
      case '--from':
        args.from = numberAfter(i++, flag);
        break;
      case '--nodes':
        args.options = { ...args.options, nodes: numberAfter(i++, flag) };
        break;
      case '--ticks':
        args.options = { ...args.options, faultTicks: numberAfter(i++, flag) };
        break;
      case '--drop': {
        const rate = Number(argv[++i]);
        if (!(rate >= 0 && rate < 1)) throw new Error('--drop needs a rate in [0, 1)');
        args.options = { ...args.options, dropRate: rate };
        break;
      }
      case '--no-prevote':
        args.options = { ...args.options, node: { ...args.options.node, preVote: false, checkQuorum: false } };
        break;
      case '--no-membership':
        args.options = { ...args.options, membershipChanges: false };
        break;
      case '--trace':
        args.trace = true;
        args.options = { ...args.options, fullTrace: true };
        break;
      case '--help':
        process.stdout.write('usage: npm run sim -- [--seeds N] [--from S] [--nodes K] [--ticks T] [--drop R] [--no-prevote] [--no-membership] [--trace]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${String(flag)}`);
    }
  }
  return args;
}

function main(): number {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  let failures = 0;
  let committed = 0;
  let acknowledged = 0;
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    try {
      const result = runSeed(seed, args.options);
      committed += result.committed;
      acknowledged += result.acknowledged;
      if (args.trace) process.stdout.write(result.trace.join('\n') + '\n');
    } catch (error) {
      failures++;
      if (error instanceof SimulationFailure) {
        process.stderr.write(`FAIL ${error.message}\n`);
        if (args.trace) process.stderr.write(error.trace.join('\n') + '\n');
      } else {
        process.stderr.write(`FAIL seed ${seed}: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
      }
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(
    `${args.seeds - failures}/${args.seeds} seeds passed (from ${args.from}) in ${seconds}s; ` +
      `${committed} entries committed, ${acknowledged} writes acknowledged\n`,
  );
  return failures === 0 ? 0 : 1;
}

process.exitCode = main();
