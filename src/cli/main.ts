// The balancer command line: parses flags, loads config, starts the app or a client command, handles signals.

import { Command } from 'commander';
import { App } from '../app.js';
import { isBalancerError, errorMessage } from '../errors.js';
import { formatProblem } from '../config/validate.js';
import { loadConfigFile } from '../config/load.js';
import { EXIT_CODES } from './admin-call.js';
import { registerClientCommands } from './client.js';
import { VERSION } from '../version.js';

const DEFAULT_CONFIG = './balancer.yaml';

function printProblems(error: unknown): void {
  if (isBalancerError(error, 'CONFIG_INVALID') && error.details.length > 0) {
    const file = error.message.replace(/: config is invalid$/, '');
    for (const problem of error.details) process.stderr.write(`${formatProblem(file, problem)}\n`);
    return;
  }
  process.stderr.write(`balancer: ${errorMessage(error)}\n`);
}

async function startCommand(options: { config: string; demoBackends?: boolean }): Promise<void> {
  let app: App;
  try {
    app = await App.start({
      configPath: options.config,
      demoBackends: options.demoBackends === true,
      ...(process.env['BALANCER_ADMIN_TOKEN'] ? { envToken: process.env['BALANCER_ADMIN_TOKEN'] } : {}),
    });
  } catch (error) {
    printProblems(error);
    process.exitCode = 1;
    return;
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) {
      app.logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    app.logger.info('signal received', { signal });
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error('shutdown failed', { err: error });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  watchNpmParent(() => shutdown('npm start exited'));
  process.on('SIGHUP', () => void app.reload());
  // logrotate's postrotate: kill -USR1 (as for nginx). Listening for it also keeps Node's debugger off this signal.
  process.on('SIGUSR1', () => app.reopenLogs());
}

/** How often a balancer run by `npm start` checks that npm is still its parent. */
const PARENT_CHECK_MS = 1_000;

/**
 * Under `npm start` npm is the parent, and it passes on only SIGTERM and SIGINT: killed otherwise (kill -9,
 * SIGHUP when its terminal goes), it would leave the gateway running orphaned. Seeing itself re-parented, the
 * balancer stops as on SIGTERM. Not under a supervisor (systemd, a container runtime, a shell): they signal it.
 */
function watchNpmParent(onGone: () => void): void {
  if (process.env['npm_lifecycle_event'] !== 'start') return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, PARENT_CHECK_MS);
  timer.unref();
}

async function validateCommand(options: { config: string }): Promise<void> {
  // The full load checks the files the config names too (certificates, token and secret files).
  const loaded = await loadConfigFile(options.config);
  if (loaded.ok) {
    process.stdout.write(`${options.config}: valid\n`);
    return;
  }
  for (const problem of loaded.problems) process.stderr.write(`${formatProblem(options.config, problem)}\n`);
  process.exitCode = 1;
}

/** The admin address and token client commands use when --admin/--token are absent. */
async function clientDefaults(configPath: string): Promise<{ admin: string; token: string | null }> {
  const envToken = process.env['BALANCER_ADMIN_TOKEN'];
  const loaded = await loadConfigFile(configPath).catch(() => null);
  const admin = loaded?.ok ? loaded.config.admin.listen : '127.0.0.1:9090';
  const token = envToken !== undefined && envToken !== '' ? envToken : loaded?.ok ? loaded.config.admin.token : null;
  return { admin, token };
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = new Command();
  program.name('balancer').description('Layer-7 HTTP load balancer with health checks and Raft-replicated pool config').showHelpAfterError();
  program.version(VERSION, '-V, --version', 'print the version');
  // Every usage error (an unknown command or option, a missing argument) exits 2, as the README says; help and --version exit 0.
  program.exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_CODES.usage));
  // Positional: `balancer -c FILE status` sets the client defaults, while `start -c` and `validate -c` keep their own.
  program.enablePositionalOptions();
  program.option('-c, --config <file>', 'config file the client commands read --admin and --token defaults from', DEFAULT_CONFIG);

  program
    .command('start')
    .description('run the gateway')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('--demo-backends', 'also start demo HTTP backends for the loopback backends of the config')
    .action(startCommand);

  program
    .command('validate')
    .description('check a config file: exit 0 when valid, 1 with one FILE:LINE:COL line per problem')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .action(validateCommand);

  registerClientCommands(program, () => clientDefaults((program.opts() as { config: string }).config));
  await program.parseAsync(argv as string[]);
}
