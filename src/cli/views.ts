// The admin API's answers as the CLI prints them: status and cluster tables, history, diffs, routes and route tests.

import type { BackendStatus, ClusterStatus, DiscoveryStatusView, NodeStatus } from '../control/types.js';
import { describeSource, type HistorySummary } from '../control/history.js';
import { paint, stateCell, strategyText, table, type Cell } from './format.js';

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

/** `dns A web.internal (127.0.0.1:5353): 3 found`, and the failures while DNS does not answer. */
function discoveryLine(dns: DiscoveryStatusView, colour: boolean): string {
  const via = dns.servers === null ? '' : ` (${dns.servers.join(', ')})`;
  const failing = dns.failures === 0 ? '' : paint(`  ${dns.failures} failed lookup(s), keeping the last answer: ${dns.lastError ?? ''}`, 'yellow', colour);
  return `${paint('dns', 'dim', colour)} ${dns.type} ${dns.name}${via}: ${dns.found} found${failing}`;
}

export function formatStatus(status: NodeStatus, colour: boolean): string {
  const parts: string[] = [];
  const reasons = (status.notReady ?? []).map((item) => item.reason).join('; ');
  const ready = status.ready ? paint('ready', 'green', colour) : paint(reasons === '' ? 'not ready' : `not ready: ${reasons}`, 'red', colour);
  parts.push(`${paint('node', 'dim', colour)} ${status.node}  ${paint('config', 'dim', colour)} v${status.version}  ${ready}\n`);
  for (const pool of status.pools) {
    const panic = pool.panic ? '  ' + paint('PANIC: too few healthy backends, spreading over all', 'red', colour) : '';
    const backups = pool.backupsServing === true ? '  ' + paint('BACKUPS SERVING: no primary backend is up', 'yellow', colour) : '';
    parts.push(`\n${paint('pool', 'dim', colour)} ${paint(pool.name, 'bold', colour)}  ${strategyText(pool)}${backups}${panic}\n`);
    if (pool.discovery !== undefined) parts.push(`  ${discoveryLine(pool.discovery, colour)}\n`);
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
          b.backup === true ? `${b.id} (backup)` : b.id,
          // Where a backend came from and where its connections go, when that is not plain from the URL.
          `${b.url}${b.address === undefined ? '' : ` -> ${b.address}`}${b.discovered === true ? ' (dns)' : ''}`,
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

/** Colours a unified diff: removed lines red, added green, hunk headers dim. */
export function paintDiff(diff: string, colour: boolean): string {
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

export interface RouteListingBody {
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

export interface RouteTestBody {
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
