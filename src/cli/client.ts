// The client commands (status, backends ..., cluster ...): admin API calls with tables, --json and stable exit codes.
//
// Exit codes, for scripts:
//   0  done
//   1  the admin API refused the request (validation failed, not found, conflict, stale version)
//   2  usage error (bad or missing arguments, bad --admin URL)
//   3  the admin API could not be reached or did not answer in time (or is not a balancer admin API)
//   4  authentication failed: token missing (401), rejected (403) or none configured on the server
//   5  the server or the cluster is unavailable (5xx; 503 when there is no Raft leader)

import type { Writable } from 'node:stream';
import { Command, type CommanderError } from 'commander';
import type { BackendStatus, ClusterStatus, NodeStatus } from '../control/types.js';
import { paint, stateCell, table, wantsColour, type Cell } from './format.js';
import { parseDuration } from '../config/spec.js';
import { topCommand } from './top.js';
import { describeSource, type HistorySummary } from '../control/history.js';
import { CLI_USER_AGENT } from '../version.js';
import { MAX_WEIGHT } from '../config/file-spec.js';
import { errorMessage, type ErrorBody, type ProblemDetail } from '../errors.js';

export const EXIT_CODES = {
  ok: 0,
  refused: 1,
  usage: 2,
  unreachable: 3,
  auth: 4,
  unavailable: 5,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

/** Long enough for a cluster write to fail over to 503 on its own (the API answers within a few seconds). */
export const DEFAULT_CLIENT_TIMEOUT_MS = 15_000;

export interface ClientOptions {
  /** Admin API base: a URL (`http://127.0.0.1:9090`) or `host:port` as in the config's admin.listen. */
  admin: string;
  token?: string | null;
  /** Print the raw API JSON instead of tables and sentences. */
  json: boolean;
  out: Writable;
  err: Writable;
  timeoutMs?: number;
}

/**
 * `host:port` → `http://host:port`; wildcard listen addresses (0.0.0.0, ::) are dialled on loopback.
 * Returns null when the value is not usable.
 */
export function adminBaseUrl(admin: string): string | null {
  let text = admin.trim();
  if (text === '') return null;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `http://${text}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  if (url.hostname === '[::]') url.hostname = '[::1]';
  return url.toString().replace(/\/+$/, '');
}

function isApiError(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const error = (value as { error?: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}

/** `path:LINE:COL: message`, saying the path once when the validator's message already starts with it. */
function describeProblem(detail: ProblemDetail): string {
  const path = detail.path ?? '';
  const position = detail.line === undefined ? '' : `${detail.line}${detail.column === undefined ? '' : `:${detail.column}`}`;
  if (path !== '' && detail.message.startsWith(path)) {
    return position === '' ? detail.message : `${detail.message} (at ${position})`;
  }
  const where = [path, position].filter((part) => part !== '').join(':');
  return where === '' ? detail.message : `${where}: ${detail.message}`;
}

type CallResult = { ok: true; status: number; body: unknown } | { ok: false; code: ExitCode };

function errorCause(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return errorMessage(error);
}

/** One admin API call; on failure it has already told the user why and returns the exit code. */
export async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<CallResult> {
  const base = adminBaseUrl(opts.admin);
  if (base === null) {
    opts.err.write(`invalid --admin ${JSON.stringify(opts.admin)}: expected a URL like http://127.0.0.1:9090 or host:port\n`);
    return { ok: false, code: EXIT_CODES.usage };
  }
  const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': CLI_USER_AGENT };
  if (opts.token !== undefined && opts.token !== null && opts.token !== '') headers['Authorization'] = `Bearer ${opts.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;

  let res: Response;
  let text: string;
  try {
    res = await fetch(base + path, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
    text = await res.text();
  } catch (error) {
    if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
      opts.err.write(
        `admin API at ${base} did not answer within ${timeoutMs / 1000} s: is balancer running and healthy? use --admin URL\n`,
      );
    } else {
      opts.err.write(`cannot reach admin API at ${base} (${errorCause(error)}): is balancer running? use --admin URL\n`);
    }
    return { ok: false, code: EXIT_CODES.unreachable };
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    opts.err.write(
      `unexpected ${res.status} answer from ${base}${path} (${res.headers.get('content-type') ?? 'no content type'}): is this balancer's admin listener? use --admin URL\n`,
    );
    return { ok: false, code: EXIT_CODES.unreachable };
  }
  if (res.ok) return { ok: true, status: res.status, body: parsed };

  if (opts.json) opts.out.write(JSON.stringify(parsed, null, 2) + '\n');
  const apiError = isApiError(parsed) ? parsed.error : { code: 'UNKNOWN', message: text.trim(), details: [] };
  if (res.status === 401) {
    opts.err.write('token missing (401): set --token or BALANCER_ADMIN_TOKEN\n');
    return { ok: false, code: EXIT_CODES.auth };
  }
  if (res.status === 403) {
    if (apiError.code === 'ADMIN_TOKEN_NOT_SET') opts.err.write(`admin API refused (403): ${apiError.message}\n`);
    else opts.err.write('token rejected (403): set --token or BALANCER_ADMIN_TOKEN\n');
    return { ok: false, code: EXIT_CODES.auth };
  }
  const retry = res.headers.get('retry-after');
  const prefix = res.status >= 500 ? (res.status === 503 ? 'unavailable' : 'server error') : 'refused';
  opts.err.write(
    `${prefix} (${res.status} ${apiError.code}): ${apiError.message}${retry !== null ? `; retry in ${retry} s` : ''}\n`,
  );
  for (const detail of apiError.details ?? []) opts.err.write(`  - ${describeProblem(detail)}\n`);
  return { ok: false, code: res.status >= 500 ? EXIT_CODES.unavailable : EXIT_CODES.refused };
}

function printJson(opts: ClientOptions, body: unknown): void {
  opts.out.write(JSON.stringify(body, null, 2) + '\n');
}

function backendDetail(b: BackendStatus): string {
  if (b.reason !== '') return b.reason;
  if (b.lastCheck !== undefined && !b.lastCheck.ok) return `check failed: ${b.lastCheck.detail}`;
  return '';
}

function clusterSummary(c: ClusterStatus): string {
  if (c.role === 'standalone') return 'standalone (single node, no Raft)';
  const standing =
    c.membership === 'removed'
      ? 'REMOVED from the cluster (serves its last config, takes no part) · '
      : c.membership === 'waiting-to-join'
        ? 'waiting to be added to the cluster (balancer cluster add) · '
        : '';
  const summary = `${standing}role ${c.role} · term ${c.term} · leader ${c.leader ?? 'none'} · commit ${c.commitIndex} · applied ${c.appliedIndex}`;
  if (c.failure === undefined) return summary;
  return `${summary}\nRAFT STOPPED (${c.failure.kind}): ${c.failure.message}\n${c.failure.advice}`;
}

function membersTable(c: ClusterStatus, colour: boolean): string {
  const rows: Cell[][] = c.members.map((m) => [
    m.id === c.nodeId ? `${m.id} (this node)` : m.id,
    m.address,
    m.id === c.leader ? { text: 'leader', colour: 'bold' } : m.voter ? 'voter' : 'learner',
    m.matchIndex === null ? '-' : String(m.matchIndex),
    m.reachable === null ? '-' : m.reachable ? 'yes' : { text: 'no', colour: 'red' },
  ]);
  return table(
    [{ header: 'MEMBER' }, { header: 'ADDRESS' }, { header: 'ROLE' }, { header: 'MATCH', align: 'right' }, { header: 'REACHABLE' }],
    rows,
    colour,
  );
}

export function formatStatus(status: NodeStatus, colour: boolean): string {
  const parts: string[] = [];
  const reasons = (status.notReady ?? []).map((item) => item.reason).join('; ');
  const ready = status.ready ? paint('ready', 'green', colour) : paint(reasons === '' ? 'not ready' : `not ready: ${reasons}`, 'red', colour);
  parts.push(`${paint('node', 'dim', colour)} ${status.node}  ${paint('config', 'dim', colour)} v${status.version}  ${ready}\n`);
  for (const pool of status.pools) {
    const panic = pool.panic ? '  ' + paint('PANIC: too few healthy backends, spreading over all', 'red', colour) : '';
    parts.push(`\n${paint('pool', 'dim', colour)} ${paint(pool.name, 'bold', colour)}  ${pool.strategy}${panic}\n`);
    if (pool.backends.length === 0) {
      parts.push('  (no backends)\n');
      continue;
    }
    parts.push(
      table(
        [
          { header: 'BACKEND' },
          { header: 'URL' },
          { header: 'STATE' },
          { header: 'WEIGHT', align: 'right' },
          { header: 'EFFECTIVE', align: 'right' },
          { header: 'IN-FLIGHT', align: 'right' },
          { header: 'DETAIL' },
        ],
        pool.backends.map((b) => [
          b.id,
          b.url,
          stateCell(b.state),
          String(b.weight),
          String(b.effectiveWeight),
          String(b.inflight),
          backendDetail(b),
        ]),
        colour,
      ),
    );
  }
  parts.push(`\n${paint('cluster', 'dim', colour)} ${clusterSummary(status.cluster)}\n`);
  if (status.cluster.members.length > 0) parts.push(membersTable(status.cluster, colour));
  return parts.join('');
}

export function formatCluster(cluster: ClusterStatus, colour: boolean): string {
  const head = `${paint('node', 'dim', colour)} ${cluster.nodeId}  ${clusterSummary(cluster)}\n`;
  return cluster.members.length > 0 ? head + membersTable(cluster, colour) : head;
}

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
  extra: { weight?: number; id?: string } = {},
): Promise<ExitCode> {
  const result = await call(opts, 'POST', `/api/v1/pools/${segment(pool)}/backends`, { url, ...extra });
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else {
    const { version, backend } = result.body as { version: number; backend: { id: string; url: string; weight: number } };
    opts.out.write(`added backend ${backend.id} (${backend.url}, weight ${backend.weight}) to pool ${pool}; config version ${version}\n`);
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

/** `2026-11-30T01:02:03.456Z` -> `2026-11-30 01:02:03Z`: the history's times, readable and still exact to the second. */
function shortTime(iso: string | null): string {
  return iso === null ? '-' : iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function formatHistory(body: { current: number; versions: readonly HistorySummary[] }, colour: boolean): string {
  if (body.versions.length === 0) return 'no config versions yet\n';
  const rows: Cell[][] = body.versions.map((entry) => [
    entry.version === body.current ? { text: `v${entry.version} *`, colour: 'bold' } : `v${entry.version}`,
    shortTime(entry.at),
    describeSource(entry.source),
    entry.change,
    entry.clientRequestId === undefined ? entry.requestId : `${entry.requestId} (${entry.clientRequestId})`,
  ]);
  return (
    table([{ header: 'VERSION' }, { header: 'WHEN' }, { header: 'FROM' }, { header: 'CHANGE' }, { header: 'REQUEST ID' }], rows, colour) +
    `${paint('* current', 'dim', colour)}\n`
  );
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

/** Colours a unified diff: removed lines red, added green, hunk headers dim. */
function paintDiff(diff: string, colour: boolean): string {
  return diff
    .split('\n')
    .map((line) => {
      if (line.startsWith('---') || line.startsWith('+++')) return paint(line, 'bold', colour);
      if (line.startsWith('@@')) return paint(line, 'dim', colour);
      if (line.startsWith('-')) return paint(line, 'red', colour);
      if (line.startsWith('+')) return paint(line, 'green', colour);
      return line;
    })
    .join('\n');
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

interface RouteListingBody {
  readonly version: number;
  readonly routes: readonly { readonly index: number; readonly label: string; readonly route: Record<string, unknown> }[];
}

/** `{pathPrefix: /api, methods: [GET]}` as `pathPrefix=/api methods=GET`: one cell of the routes table. */
function describeFields(fields: unknown): string {
  if (typeof fields !== 'object' || fields === null) return '';
  return Object.entries(fields as Record<string, unknown>)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
}

export function formatRoutes(body: RouteListingBody, colour: boolean): string {
  if (body.routes.length === 0) return `no routes (config version ${body.version}): with exactly one pool, it takes every request\n`;
  const rows: Cell[][] = body.routes.map(({ index, label, route }) => {
    const target =
      typeof route['pool'] === 'string'
        ? `pool ${route['pool']}`
        : route['redirect'] !== undefined
          ? `redirect ${describeFields(route['redirect'])}`
          : `respond ${describeFields(route['respond'])}`;
    const extra = [route['rewrite'] === undefined ? '' : `rewrite ${describeFields(route['rewrite'])}`, route['headers'] === undefined ? '' : 'header rules'].filter((part) => part !== '');
    return [String(index), label === String(index) ? '-' : label, describeFields(route['match']) || 'every request', target, extra.join('; ')];
  });
  return table([{ header: '#', align: 'right' }, { header: 'NAME' }, { header: 'MATCH' }, { header: 'TO' }, { header: 'ALSO' }], rows, colour) + `${paint(`config version ${body.version}; the first match wins`, 'dim', colour)}\n`;
}

export async function routesListCommand(opts: ClientOptions): Promise<ExitCode> {
  const result = await call(opts, 'GET', '/api/v1/routes');
  if (!result.ok) return result.code;
  if (opts.json) printJson(opts, result.body);
  else opts.out.write(formatRoutes(result.body as RouteListingBody, wantsColour(opts.out)));
  return EXIT_CODES.ok;
}

interface RouteTestBody {
  readonly outcome: 'rejected' | 'no-route' | 'forward' | 'redirect' | 'respond';
  readonly status?: number;
  readonly message?: string;
  readonly path?: string;
  readonly route?: { readonly index: number; readonly label: string } | null;
  readonly pool?: string;
  readonly upstream?: { readonly method: string; readonly target: string; readonly host: string | null; readonly headers: Record<string, string | string[]> };
  readonly answer?: { readonly status: number; readonly headers: Record<string, string | string[]> };
}

function headerLines(headers: Record<string, string | string[]>): string {
  return Object.entries(headers)
    .flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((item) => `  ${name}: ${item}\n`))
    .join('');
}

export function formatRouteTest(body: RouteTestBody): string {
  if (body.outcome === 'rejected') return `refused with ${body.status ?? 400} before routing: ${body.message ?? ''}\n`;
  if (body.outcome === 'no-route') return `no route matches ${body.path ?? ''}: the client gets 404 NO_ROUTE\n`;
  const route = body.route == null ? 'no routes: the only pool takes every request' : `route #${body.route.index}${body.route.label === String(body.route.index) ? '' : ` (${body.route.label})`}`;
  let out = `matched ${route} (path ${body.path ?? ''})\n`;
  if (body.outcome === 'forward' && body.upstream !== undefined) {
    const up = body.upstream;
    out += `forwarded to pool ${body.pool ?? ''} as:\n  ${up.method} ${up.target}\n  host: ${up.host ?? "(each backend's own host:port)"}\n${headerLines(up.headers)}`;
  } else if (body.answer !== undefined) {
    out += `answered by the route (${body.outcome}) with ${body.answer.status}:\n${headerLines(body.answer.headers)}`;
  }
  return out;
}

export async function routesTestCommand(opts: ClientOptions, method: string, url: string, headerFlags: readonly string[]): Promise<ExitCode> {
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
    throw new UsageError(`weight must be a whole number from 1 to ${MAX_WEIGHT} (to stop sending to a backend, drain it), got ${JSON.stringify(text)}`);
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
        io.err.write(`${command.name()}: ${error.message}\n`);
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
    .action(
      run((opts, pool: string, url: string, flags: { weight?: string; id?: string }) =>
        backendsAddCommand(opts, pool, url, {
          ...(flags.weight === undefined ? {} : { weight: parseWeight(flags.weight) }),
          ...(flags.id === undefined ? {} : { id: flags.id }),
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
