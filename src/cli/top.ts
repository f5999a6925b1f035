// `balancer top`: pools and backends of a running node, refreshed every second, for a box without a browser.
//
// On a terminal it redraws one screen (q or Ctrl-C quits); when stdout is not a terminal it prints plain lines,
// one per backend per refresh, each starting with the time, for logs and scripts.

import { parseRequestCounters, requestRates, sumCounters, type RequestCounters, type RequestRates } from '../metrics/request-counters.js';
import type { NodeStatus } from '../control/types.js';
import { adminBaseUrl, call, EXIT_CODES, type ClientOptions, type ExitCode } from './admin-call.js';
import { paint, stateCell, strategyText, table, wantsColour, type Cell } from './format.js';

export interface TopOptions {
  readonly intervalMs: number;
  /** Stop after this many refreshes (default: until q, Ctrl-C or the end of the input). */
  readonly count?: number;
}

interface Sample {
  readonly at: number;
  readonly counters: Map<string, RequestCounters>;
}

const DASH = '-';

function fmtRate(v: number | undefined): string {
  return v === undefined ? DASH : v >= 100 ? v.toFixed(0) : v.toFixed(1);
}
function fmtPct(v: number | null | undefined): string {
  return v === undefined || v === null ? DASH : `${(v * 100).toFixed(v >= 0.1 ? 0 : 1)}%`;
}
function fmtSeconds(v: number | null | undefined): string {
  if (v === undefined || v === null) return DASH;
  const ms = v * 1000;
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : ms >= 10 ? `${ms.toFixed(0)}ms` : `${ms.toFixed(1)}ms`;
}

/** The pool's rates over all its rows (backends and requests answered without one), buckets merged. */
function poolRates(rows: ReadonlyArray<{ before: RequestCounters; after: RequestCounters }>, seconds: number): RequestRates | null {
  if (rows.length === 0) return null;
  const pool = rows[0]!.after.pool;
  return requestRates(sumCounters(pool, rows.map((r) => r.before)), sumCounters(pool, rows.map((r) => r.after)), seconds);
}

export interface TopView {
  readonly status: NodeStatus;
  /** pool\u0000backend -> rates over the last interval; empty on the first refresh. */
  readonly rates: ReadonlyMap<string, RequestRates>;
  readonly poolRates: ReadonlyMap<string, RequestRates>;
}

function buildView(status: NodeStatus, previous: Sample | null, current: Sample): TopView {
  const rates = new Map<string, RequestRates>();
  const pools = new Map<string, RequestRates>();
  if (previous !== null) {
    const seconds = (current.at - previous.at) / 1000;
    const byPool = new Map<string, Array<{ before: RequestCounters; after: RequestCounters }>>();
    for (const [key, after] of current.counters) {
      const before = previous.counters.get(key) ?? { ...after, requests: 0, errors: 0, buckets: after.buckets.map(([b]): [number, number] => [b, 0]) };
      const r = requestRates(before, after, seconds);
      if (r !== null) rates.set(key, r);
      const list = byPool.get(after.pool) ?? [];
      list.push({ before, after });
      byPool.set(after.pool, list);
    }
    for (const [pool, rows] of byPool) {
      const r = poolRates(rows, seconds);
      if (r !== null) pools.set(pool, r);
    }
  }
  return { status, rates, poolRates: pools };
}

function header(status: NodeStatus, colour: boolean): string {
  const c = status.cluster;
  const cluster = c.role === 'standalone' ? 'single node' : `${c.role} · term ${c.term} · leader ${c.leader ?? 'none'}`;
  const ready = status.ready ? paint('ready', 'green', colour) : paint('not ready', 'red', colour);
  return `${paint('balancer top', 'bold', colour)}  node ${status.node} · config v${status.version} · ${ready} · ${cluster} · ${new Date().toLocaleTimeString()}`;
}

/** The full screen of one refresh. */
function renderScreen(view: TopView, colour: boolean): string {
  const rows: Cell[][] = [];
  for (const pool of view.status.pools) {
    const total = view.poolRates.get(pool.name);
    const up = pool.backends.filter((b) => b.state === 'up').length;
    rows.push([
      { text: pool.name, colour: 'bold' },
      { text: `${strategyText(pool)}${pool.backupsServing === true ? ' BACKUPS' : ''}${pool.panic ? ' PANIC' : ''}`, colour: pool.panic ? 'red' : pool.backupsServing === true ? 'yellow' : 'dim' },
      { text: `${up}/${pool.backends.length} up`, colour: up < pool.backends.length ? 'yellow' : 'dim' },
      fmtRate(total?.requestsPerSecond),
      total?.errorRatio ? { text: fmtPct(total.errorRatio), colour: 'red' } : fmtPct(total?.errorRatio),
      fmtSeconds(total?.p50),
      fmtSeconds(total?.p99),
      '',
      '',
    ]);
    for (const b of pool.backends) {
      const r = view.rates.get(`${pool.name}\u0000${b.id}`);
      rows.push([
        '',
        b.id,
        stateCell(b.state),
        fmtRate(r?.requestsPerSecond),
        (r?.errorRatio ?? 0) > 0.05 ? { text: fmtPct(r?.errorRatio), colour: 'red' } : fmtPct(r?.errorRatio),
        fmtSeconds(r?.p50),
        fmtSeconds(r?.p99),
        String(b.inflight),
        b.latencyMeasured ? fmtSeconds(b.latencyEwmaMs / 1000) : { text: fmtSeconds(b.latencyEwmaMs / 1000), colour: 'dim' },
      ]);
    }
  }
  const columns = [
    { header: 'POOL' },
    { header: 'BACKEND' },
    { header: 'STATE' },
    { header: 'REQ/S', align: 'right' as const },
    { header: '5XX', align: 'right' as const },
    { header: 'P50', align: 'right' as const },
    { header: 'P99', align: 'right' as const },
    { header: 'INFLIGHT', align: 'right' as const },
    { header: 'EWMA', align: 'right' as const },
  ];
  return `${header(view.status, colour)}\n\n${table(columns, rows, colour)}\n${paint('q quits · rates over the last refresh · EWMA: peak-EWMA latency (dim until measured)', 'dim', colour)}\n`;
}

/** One line per backend: `TIME pool=P backend=B state=S rps=.. 5xx=.. p50=.. p99=.. inflight=.. ewma=..`. */
function renderLines(view: TopView, at: Date): string {
  const time = at.toISOString();
  const lines: string[] = [];
  for (const pool of view.status.pools) {
    for (const b of pool.backends) {
      const r = view.rates.get(`${pool.name}\u0000${b.id}`);
      lines.push(
        `${time} pool=${pool.name} backend=${b.id} state=${b.state} rps=${fmtRate(r?.requestsPerSecond)} 5xx=${fmtPct(r?.errorRatio)} ` +
          `p50=${fmtSeconds(r?.p50)} p99=${fmtSeconds(r?.p99)} inflight=${b.inflight} ewma=${fmtSeconds(b.latencyEwmaMs / 1000)}`,
      );
    }
  }
  return lines.join('\n') + (lines.length > 0 ? '\n' : '');
}

async function readCounters(opts: ClientOptions): Promise<Map<string, RequestCounters>> {
  const base = adminBaseUrl(opts.admin);
  if (base === null) return new Map();
  try {
    const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000) });
    return res.ok ? parseRequestCounters(await res.text()) : new Map();
  } catch {
    return new Map();
  }
}

export async function topCommand(opts: ClientOptions, options: TopOptions): Promise<ExitCode> {
  const out = opts.out as NodeJS.WriteStream;
  const tty = out.isTTY === true;
  const colour = wantsColour(opts.out);
  let stop = false;
  let wake: (() => void) | null = null;
  const quit = (): void => {
    stop = true;
    wake?.();
  };
  const stdin = process.stdin;
  const keys = (data: Buffer): void => {
    const key = data.toString();
    if (key === 'q' || key === 'Q' || key === '\u0003') quit();
  };
  if (tty && stdin.isTTY) {
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', keys);
  }
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  if (tty) out.write('\u001b[?25l'); // hide the cursor while redrawing
  let previous: Sample | null = null;
  let refreshes = 0;
  let code: ExitCode = EXIT_CODES.ok;
  try {
    while (!stop) {
      const result = await call({ ...opts, timeoutMs: opts.timeoutMs ?? 5_000 }, 'GET', '/api/v1/status');
      if (!result.ok) {
        // A node that never answered is a wrong --admin; one that stops answering may come back.
        if (previous === null) {
          code = result.code;
          break;
        }
      } else {
        const current: Sample = { at: performance.now(), counters: await readCounters(opts) };
        const view = buildView(result.body as NodeStatus, previous, current);
        previous = current;
        if (tty) out.write(`\u001b[H\u001b[2J${renderScreen(view, colour)}`);
        else out.write(renderLines(view, new Date()));
      }
      refreshes++;
      if (options.count !== undefined && refreshes >= options.count) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    process.off('SIGINT', quit);
    process.off('SIGTERM', quit);
    if (tty) out.write('\u001b[?25h');
    if (tty && stdin.isTTY) {
      stdin.off('data', keys);
      stdin.setRawMode(false);
      stdin.pause();
    }
  }
  return code;
}

