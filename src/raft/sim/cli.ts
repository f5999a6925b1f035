// Long-mode simulator entry: `npm run sim -- --seeds N --from S` (seeds S..S+N-1), plus fault-mix flags; `--storage` runs the storage crash simulator.

import { SimulationFailure, runSeed, type SimOptions } from './simulator.js';
import { StorageSimulationFailure, runStorageSeed, type StorageBug, type StorageSimOptions } from './storage-sim.js';

interface CliArgs {
  seeds: number;
  from: number;
  trace: boolean;
  options: SimOptions;
  /** Run the storage crash simulator (real RaftNodes and DiskStorage on simulated disks) instead of the core's. */
  storage: boolean;
  storageOptions: StorageSimOptions;
}

const STORAGE_BUGS: readonly StorageBug[] = ['skip-wal-fsync', 'late-hard-state'];

function parseArgs(argv: readonly string[]): CliArgs {
  const args: CliArgs = { seeds: 100, from: 1, trace: false, options: {}, storage: false, storageOptions: {} };
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
        args.storageOptions = { ...args.storageOptions, fullTrace: true };
        break;
      case '--storage':
        args.storage = true;
        break;
      case '--steps':
        args.storageOptions = { ...args.storageOptions, faultSteps: numberAfter(i++, flag) };
        break;
      case '--bug': {
        const bug = argv[++i] as StorageBug;
        if (!STORAGE_BUGS.includes(bug)) throw new Error(`--bug needs one of ${STORAGE_BUGS.join(', ')}`);
        args.storageOptions = { ...args.storageOptions, bug };
        break;
      }
      case '--help':
        process.stdout.write(
          'usage: npm run sim -- [--seeds N] [--from S] [--nodes K] [--ticks T] [--drop R] [--no-prevote] [--no-membership] [--trace]\n' +
            '       npm run sim -- --storage [--seeds N] [--from S] [--steps T] [--bug skip-wal-fsync|late-hard-state] [--trace]\n',
        );
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${String(flag)}`);
    }
  }
  return args;
}

async function runStorage(args: CliArgs): Promise<number> {
  const started = performance.now();
  let failures = 0;
  const totals = { crashes: 0, restarts: 0, committed: 0, acknowledged: 0, snapshots: 0 };
  const operations: Record<string, number> = {};
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    try {
      const result = await runStorageSeed(seed, args.storageOptions);
      totals.crashes += result.crashes.before + result.crashes.after + result.crashes.between;
      totals.restarts += result.restarts;
      totals.committed += result.committed;
      totals.acknowledged += result.acknowledged;
      totals.snapshots += result.snapshotsInstalled;
      for (const [kind, count] of Object.entries(result.crashedOperations)) operations[kind] = (operations[kind] ?? 0) + count;
      if (args.trace) process.stdout.write(result.trace.join('\n') + '\n');
    } catch (error) {
      failures++;
      if (error instanceof StorageSimulationFailure) {
        process.stderr.write(`FAIL ${error.message}\n`);
        if (args.trace) process.stderr.write(error.trace.join('\n') + '\n');
      } else {
        process.stderr.write(`FAIL storage seed ${seed}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      }
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const byOperation = Object.entries(operations)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  process.stdout.write(
    `${args.seeds - failures}/${args.seeds} storage seeds passed (from ${args.from})${args.storageOptions.bug === undefined ? '' : ` with bug ${args.storageOptions.bug}`} in ${seconds}s; ` +
      `${totals.crashes} crashes (at file operations: ${byOperation}), ${totals.restarts} restarts, ${totals.snapshots} snapshots installed, ` +
      `${totals.committed} entries committed, ${totals.acknowledged} writes acknowledged\n`,
  );
  return failures === 0 ? 0 : 1;
}

function main(args: CliArgs): number {
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

const cliArgs = parseArgs(process.argv.slice(2));
if (cliArgs.storage) {
  void runStorage(cliArgs).then((code) => {
    process.exitCode = code;
  });
} else {
  process.exitCode = main(cliArgs);
}
