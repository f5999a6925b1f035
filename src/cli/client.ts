// The client commands (status, backends ..., config ..., routes ..., cluster ...): each an admin API call and its view, registered with commander.

import type { Writable } from 'node:stream';
import { Command, type CommanderError } from 'commander';
import type { ClusterStatus, NodeStatus } from '../control/types.js';
import { wantsColour } from './format.js';
import { parseDuration } from '../config/spec.js';
import { topCommand } from './top.js';
import type { HistorySummary } from '../control/history.js';
import { MAX_WEIGHT, WEIGHT_RULE } from '../config/file-spec.js';
import { call, EXIT_CODES, printJson, type ClientOptions, type ExitCode } from './admin-call.js';
import { formatCluster, formatHistory, formatRouteTest, formatRoutes, formatStatus, paintDiff, type RouteListingBody, type RouteTestBody } from './views.js';

function segment(value: string): string {
  return encodeURIComponent(value);
}

export async function statusCommand(opts: ClientOptions): Promise<ExitCode> {
  const result = await call(opts, 'GET', '/api/v1/status');
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(formatStatus(result.body as NodeStatus, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

export async function backendsAddCommand(
  opts: ClientOptions,
  pool: string,
  url: string,
  extra: { weight?: number; id?: string; backup?: boolean } = {},
): Promise<ExitCode> {
  const result = await call(opts, 'POST', `/api/v1/pools/${segment(pool)}/backends`, { url, ...extra });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    const { version, backend } = result.body as { version: number; backend: { id: string; url: string; weight: number } };
    const role = extra.backup === true ? ', backup' : '';
    opts.out.write(`added backend ${backend.id} (${backend.url}, weight ${backend.weight}${role}) to pool ${pool}; config version ${version}\n`);
  }
  return EXIT_CODES.ok;
}

/** `force`: remove it even when it is the last backend of a pool that routes send traffic to. */
export async function backendsRemoveCommand(opts: ClientOptions, pool: string, id: string, force = false): Promise<ExitCode> {
  const result = await call(opts, 'DELETE', `/api/v1/pools/${segment(pool)}/backends/${segment(id)}${force ? '?force=true' : ''}`);
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(`removed backend ${id} from pool ${pool}; config version ${(result.body as { version: number }).version}\n`);
  return EXIT_CODES.ok;
}

/** drain=false puts a drained backend back into rotation. */
export async function backendsDrainCommand(opts: ClientOptions, pool: string, id: string, drain = true): Promise<ExitCode> {
  const result = await call(opts, 'PATCH', `/api/v1/pools/${segment(pool)}/backends/${segment(id)}`, { drain });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    const version = (result.body as { version: number }).version;
    opts.out.write(
      drain
        ? `draining backend ${id} in pool ${pool}: no new requests, in-flight ones finish; config version ${version}\n`
        : `backend ${id} in pool ${pool} is back in rotation; config version ${version}\n`,
    );
  }
  return EXIT_CODES.ok;
}

export async function backendsWeightCommand(opts: ClientOptions, pool: string, id: string, weight: number): Promise<ExitCode> {
  const result = await call(opts, 'PATCH', `/api/v1/pools/${segment(pool)}/backends/${segment(id)}`, { weight });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    const version = (result.body as { version: number }).version;
    opts.out.write(`set weight of backend ${id} in pool ${pool} to ${weight}; config version ${version}\n`);
  }
  return EXIT_CODES.ok;
}

export async function configHistoryCommand(opts: ClientOptions, limit?: number): Promise<ExitCode> {
  const result = await call(opts, 'GET', '/api/v1/config/history');
  if (!result.ok) return result.code;
  const body = result.body as { current: number; versions: HistorySummary[] };
  const shown = { ...body, versions: limit === undefined ? body.versions : body.versions.slice(0, limit) };
  if (opts.json) printJson(opts, shown);
  else opts.out.write(formatHistory(shown, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

export async function configDiffCommand(opts: ClientOptions, from: number, to: number): Promise<ExitCode> {
  const result = await call(opts, 'GET', `/api/v1/config/diff?from=${from}&to=${to}`);
  if (!result.ok) return result.code;
  const body = result.body as { from: number; to: number; diff: string };
  if (opts.json) printJson(opts, body);
  else opts.out.write(body.diff === '' ? `v${from} and v${to} have the same routes and pools\n` : paintDiff(body.diff, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

export async function configRollbackCommand(opts: ClientOptions, version: number, force = false): Promise<ExitCode> {
  const result = await call(opts, 'POST', `/api/v1/config/rollback${force ? '?force=true' : ''}`, { version });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(`rolled back to the config of v${version}: it is now version ${(result.body as { version: number }).version}\n`);
  return EXIT_CODES.ok;
}

async function routesListCommand(opts: ClientOptions): Promise<ExitCode> {
  const result = await call(opts, 'GET', '/api/v1/routes');
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(formatRoutes(result.body as RouteListingBody, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

async function routesTestCommand(opts: ClientOptions, method: string, url: string, headerFlags: readonly string[]): Promise<ExitCode> {
  const headers: Record<string, string> = {};
  for (const flag of headerFlags) {
    const colon = flag.indexOf(':');
    if (colon <= 0) throw new UsageError(`-H takes name:value, got ${JSON.stringify(flag)}`);
    headers[flag.slice(0, colon).trim()] = flag.slice(colon + 1).trim();
  }
  const result = await call(opts, 'POST', '/api/v1/routes/test', { method, url, headers });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(formatRouteTest(result.body as RouteTestBody));
  return EXIT_CODES.ok;
}

export async function clusterStatusCommand(opts: ClientOptions): Promise<ExitCode> {
  const result = await call(opts, 'GET', '/api/v1/cluster');
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(formatCluster(result.body as ClusterStatus, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

export async function clusterAddCommand(opts: ClientOptions, id: string, address: string, learner: boolean): Promise<ExitCode> {
  const result = await call(opts, 'POST', '/api/v1/cluster/members', { id, address, learner });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    opts.out.write(`added ${id} (${address}) as a ${learner ? 'learner' : 'voter'}\n`);
    opts.out.write(formatCluster(result.body as ClusterStatus, wantsColour(opts.out)));
  }
  return EXIT_CODES.ok;
}

export async function clusterRemoveCommand(opts: ClientOptions, id: string): Promise<ExitCode> {
  const result = await call(opts, 'DELETE', `/api/v1/cluster/members/${segment(id)}`);
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    opts.out.write(`removed ${id} from the cluster\n`);
    opts.out.write(formatCluster(result.body as ClusterStatus, wantsColour(opts.out)));
  }
  return EXIT_CODES.ok;
}

export async function clusterTransferCommand(opts: ClientOptions, id: string): Promise<ExitCode> {
  const result = await call(opts, 'POST', '/api/v1/cluster/leader', { id });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    const cluster = result.body as ClusterStatus;
    opts.out.write(
      cluster.leader === id
        ? `${id} is now the leader (term ${cluster.term})\n`
        : `asked ${id} to take over leadership; leader is ${cluster.leader ?? 'not yet known'} (term ${cluster.term})\n`,
    );
  }
  return EXIT_CODES.ok;
}

interface ConnectionFlags {
  config?: string;
  admin?: string;
  token?: string;
  json?: boolean;
}

class UsageError extends Error {}

/** The words a user typed to reach this command, e.g. "balancer backends weight". */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at !== null; at = at.parent) names.unshift(at.name());
  return names.join(' ');
}
function parseVersionArgument(text: string): number {
  const version = Number(text.replace(/^v/, ''));
  if (!/^v?\d+$/.test(text) || !Number.isSafeInteger(version) || version < 1) {
    throw new UsageError(`a config version is a whole number from 1 (as \`balancer config history\` lists them), got ${JSON.stringify(text)}`);
  }
  return version;
}

function parseCount(text: string): number {
  const count = Number(text);
  if (!/^\d+$/.test(text) || count < 1) throw new UsageError(`--limit must be a whole number from 1, got ${JSON.stringify(text)}`);
  return count;
}

/** As the config file and the admin API take it: 1 to 10000 (to take a backend out of rotation, drain it). */
function parseWeight(text: string): number {
  const weight = Number(text);
  if (text.trim() === '' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
    throw new UsageError(`weight ${WEIGHT_RULE}, got ${JSON.stringify(text)}`);
  }
  return weight;
}

/**
 * Adds `status`, `backends ...` and `cluster ...` to a commander program. Each action sets
 * process.exitCode to one of EXIT_CODES; commander's own usage errors exit with EXIT_CODES.usage.
 */
export function registerClientCommands(
  program: Command,
  resolveDefaults: () => Promise<{ admin: string; token: string | null }>,
  io: { out: Writable; err: Writable } = { out: process.stdout, err: process.stderr },
): void {
  const usageExit = (error: CommanderError): never => {
    process.exit(error.exitCode === 0 ? 0 : EXIT_CODES.usage);
  };

  const connection = (command: Command): Command =>
    command
      .option('--admin <url>', "admin API URL or host:port (default: the config's admin.listen)")
      .option('--token <token>', "admin token (default: $BALANCER_ADMIN_TOKEN, then the config's admin.token/tokenFile)")
      .option('--json', 'print the raw API JSON')
      .option('-c, --config <file>', 'config file to take the --admin and --token defaults from')
      .exitOverride(usageExit)
      .configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) });

  const clientOptions = async (flags: ConnectionFlags): Promise<ClientOptions> => {
    let admin = flags.admin;
    let token: string | null = flags.token ?? null;
    if (admin === undefined || token === null) {
      // `balancer status -c FILE` as well as `balancer -c FILE status`: hand the file to the caller's resolver.
      if (flags.config !== undefined) program.setOptionValue('config', flags.config);
      // Defaults come from the config file; a missing or broken file must not stop an explicit --admin from working.
      const defaults = await resolveDefaults().catch(() => ({ admin: '127.0.0.1:9090', token: process.env['BALANCER_ADMIN_TOKEN'] ?? null }));
      admin ??= defaults.admin;
      token ??= defaults.token;
    }
    return { admin, token, json: flags.json === true, out: io.out, err: io.err };
  };

  const run =
    <A extends unknown[]>(body: (opts: ClientOptions, ...args: A) => Promise<ExitCode>) =>
    async (...args: A): Promise<void> => {
      // Commander passes the command object last and the options just before it.
      const command = args[args.length - 1] as Command;
      const flags = command.opts<ConnectionFlags>();
      try {
        process.exitCode = await body(await clientOptions(flags), ...args);
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        // Commander's own usage errors read "error: ..."; ours say the same and where the command's help is.
        io.err.write(`error: ${error.message}\n(see \`${commandPath(command)} --help\`)\n`);
        process.exitCode = EXIT_CODES.usage;
      }
    };

  connection(program.command('status').description('pools, backends with their health, and the cluster role/term/leader')).action(
    run((opts) => statusCommand(opts)),
  );

  connection(program.command('top').description('pools and backends refreshed every second: rates, 5xx, p50/p99, state (plain lines when not a terminal)'))
    .option('--interval <duration>', 'time between refreshes (250ms to 1m)', '1s')
    .option('--count <n>', 'stop after this many refreshes')
    .action(
      run((opts, flags: { interval: string; count?: string }) => {
        const interval = parseDuration(flags.interval);
        if ('error' in interval || interval.value < 250 || interval.value > 60_000) {
          throw new UsageError(`--interval must be a duration from 250ms to 1m, got ${JSON.stringify(flags.interval)}`);
        }
        const count = flags.count === undefined ? undefined : Number(flags.count);
        if (count !== undefined && !(Number.isInteger(count) && count > 0)) throw new UsageError(`--count must be a positive integer, got ${JSON.stringify(flags.count)}`);
        return topCommand(opts, { intervalMs: interval.value, ...(count === undefined ? {} : { count }) });
      }),
    );

  const backends = program
    .command('backends')
    .description('edit the replicated pool config through the admin API')
    .exitOverride(usageExit);
  connection(backends.command('add').argument('<pool>').argument('<url>').description('add a backend to a pool'))
    .option('--weight <n>', 'weight (default 1)')
    .option('--id <id>', 'backend id (default host:port)')
    .option('--backup', 'a backup backend: it serves only while no primary backend of the pool is up')
    .action(
      run((opts, pool: string, url: string, flags: { weight?: string; id?: string; backup?: boolean }) =>
        backendsAddCommand(opts, pool, url, {
          ...(flags.weight === undefined ? {} : { weight: parseWeight(flags.weight) }),
          ...(flags.id === undefined ? {} : { id: flags.id }),
          ...(flags.backup === true ? { backup: true } : {}),
        }),
      ),
    );
  connection(backends.command('remove').argument('<pool>').argument('<id>').description('remove a backend'))
    .option('--force', 'remove it even if it is the last backend of a routed pool (its requests then get 503)')
    .action(run((opts, pool: string, id: string, flags: { force?: boolean }) => backendsRemoveCommand(opts, pool, id, flags.force === true)));
  connection(backends.command('drain').argument('<pool>').argument('<id>').description('stop sending new requests to a backend'))
    .option('--undo', 'put a drained backend back into rotation')
    .action(run((opts, pool: string, id: string, flags: { undo?: boolean }) => backendsDrainCommand(opts, pool, id, flags.undo !== true)));
  connection(backends.command('weight').argument('<pool>').argument('<id>').argument('<n>').description("set a backend's weight")).action(
    run((opts, pool: string, id: string, n: string) => backendsWeightCommand(opts, pool, id, parseWeight(n))),
  );

  const config = program.command('config').description('the replicated config: history, diff, rollback').exitOverride(usageExit);
  connection(config.command('history').description('the last config versions: when, from where, what changed, request id'))
    .option('--limit <n>', 'show only the newest N')
    .action(run((opts, flags: { limit?: string }) => configHistoryCommand(opts, flags.limit === undefined ? undefined : parseCount(flags.limit))));
  connection(config.command('diff').argument('<v1>').argument('<v2>').description('what changed in routes and pools from version V1 to V2 (unified diff)')).action(
    run((opts, v1: string, v2: string) => configDiffCommand(opts, parseVersionArgument(v1), parseVersionArgument(v2))),
  );
  connection(config.command('rollback').argument('<version>').description('make the config of VERSION current again (a new version; compare-and-set)'))
    .option('--force', 'even if it would take traffic down (a routed pool without backends, every route or pool removed)')
    .action(run((opts, version: string, flags: { force?: boolean }) => configRollbackCommand(opts, parseVersionArgument(version), flags.force === true)));

  const routes = program.command('routes').description('the routes of the replicated config, and what they do with a request').exitOverride(usageExit);
  connection(routes.command('list').description('every route in match order: what it matches, where it sends, its rewrite and header rules')).action(
    run((opts) => routesListCommand(opts)),
  );
  connection(
    routes
      .command('test')
      .argument('<method>')
      .argument('<url>', 'a path (/api/x?y=1) or an absolute URL (https://shop.example.com/api/x)')
      .description('which route a request matches and what the backend would receive after normalisation, rewriting and header rules (nothing is sent)'),
  )
    .option('-H, --header <name:value>', 'a request header (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .action(run((opts, method: string, url: string, flags: { header: string[] }) => routesTestCommand(opts, method, url, flags.header)));

  const cluster = program.command('cluster').description('Raft membership and leadership').exitOverride(usageExit);
  connection(cluster.command('status').description('members, leader, term, commit and applied index')).action(
    run((opts) => clusterStatusCommand(opts)),
  );
  connection(cluster.command('add').argument('<id>').argument('<address>').description('add a member (host:port of its peer listener)'))
    .option('--learner', 'add as a non-voting learner')
    .action(run((opts, id: string, address: string, flags: { learner?: boolean }) => clusterAddCommand(opts, id, address, flags.learner === true)));
  connection(cluster.command('remove').argument('<id>').description('remove a member')).action(
    run((opts, id: string) => clusterRemoveCommand(opts, id)),
  );
  connection(cluster.command('transfer').argument('<id>').description('hand leadership to a member')).action(
    run((opts, id: string) => clusterTransferCommand(opts, id)),
  );
}
