// A cluster of real `balancer start -c FILE` child processes on loopback, every peer link through its own TcpRelay.

/*
 * Each node lives in ROOT/<id>/ with its own balancer.yaml and data dir. Proxy and admin listen on
 * port 0 and are read back from the 'balancer started' log line. Raft ports cannot be 0 (peers must
 * name them), so each node's port is reserved by binding port 0 and closing; if another process takes
 * it in between, the node fails with EADDRINUSE and is started again on a fresh port. That is cheap
 * because no node names another's real port: node A reaches B at relay(A->B), and only the relay is
 * retargeted when B's port changes.
 *
 * Every child is SIGKILLed if the test process exits without stopAll(), so no test leaves a cluster behind.
 */

import http from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { START_TIMEOUT_MS, startCli, type RunningNode } from './process.js';
import { TcpRelay } from './tcp-relay.js';
import { startBackend, type TestBackend } from './backend.js';
import { freePort } from './ports.js';
import { eventually } from './wait.js';

export const ADMIN_TOKEN = 'test-admin-token';
export const CLUSTER_SECRET = 'process-test-cluster-secret';

export interface HarnessOptions {
  /** The voters that bootstrap the cluster (default n1, n2, n3). */
  readonly ids?: readonly string[];
  readonly electionTimeoutMs?: number;
  readonly heartbeatMs?: number;
  /** The replicated sections (routes/pools YAML, top level) each node's file starts with. */
  readonly replicated: string | ((id: string) => string);
  readonly logLevel?: 'debug' | 'info' | 'warn';
  readonly snapshotEvery?: number;
}

export interface NodeStartOptions {
  readonly secret?: string;
  /** cluster.join: the node starts empty and waits to be added. */
  readonly join?: boolean;
  /** Rewrite the file from the harness template even if one exists (first start always writes it). */
  readonly freshFile?: boolean;
  /** Resolve on exit as well (a start expected to fail). */
  readonly expectFailure?: boolean;
}

export interface NodeAddresses {
  readonly proxy: string;
  readonly admin: string;
  readonly raftPort: number;
}

export interface HttpResult {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  json<T = unknown>(): T;
}

export interface ClusterInfo {
  readonly nodeId: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly members: readonly { id: string; address: string; voter: boolean; matchIndex: number | null }[];
}

export interface ConfigView {
  readonly version: number;
  readonly routes: unknown;
  readonly pools: Record<string, { backends: { id: string; url: string; weight?: number }[] } & Record<string, unknown>>;
}

export class NodeProcess {
  /** One entry per start; `current` is the last. */
  readonly runs: RunningNode[] = [];
  /** Starts that failed because another process held the Raft port (the harness moved the node and retried). */
  readonly portClashes: RunningNode[] = [];
  addresses: NodeAddresses | null = null;
  raftPort = 0;
  /** The process exists (from spawn until exit). */
  alive = false;
  /** It logged 'balancer started' and has not exited: its listeners answer. */
  serving = false;

  constructor(
    readonly id: string,
    readonly dir: string,
  ) {}

  get file(): string {
    return join(this.dir, 'balancer.yaml');
  }

  get dataDir(): string {
    return join(this.dir, 'data');
  }

  get current(): RunningNode {
    const run = this.runs[this.runs.length - 1];
    if (run === undefined) throw new Error(`${this.id} was never started`);
    return run;
  }

  get admin(): string {
    if (this.addresses === null || !this.alive) throw new Error(`${this.id} is not running`);
    return this.addresses.admin;
  }

  get proxy(): string {
    if (this.addresses === null || !this.alive) throw new Error(`${this.id} is not running`);
    return this.addresses.proxy;
  }

  /** Every log line of every run, for post-mortems. */
  allLines(): Record<string, unknown>[] {
    return this.runs.flatMap((run) => run.lines);
  }
}

const liveChildren = new Set<RunningNode>();
process.once('exit', () => {
  for (const run of liveChildren) run.child.kill('SIGKILL');
});

/** One HTTP call with a deadline; never hangs. Rejects on connection errors and timeouts (error.code says which). */
export function httpCall(
  url: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string; timeoutMs?: number; agent?: http.Agent | false } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T });
      });
      res.on('error', reject);
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => {
      const error = new Error(`${options.method ?? 'GET'} ${url} timed out`) as NodeJS.ErrnoException;
      error.code = 'TEST_TIMEOUT';
      req.destroy(error);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sums every sample of a metric family in Prometheus text (all label sets). */
export function sumMetric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

export class ProcessCluster {
  readonly nodes = new Map<string, NodeProcess>();
  /** relays.get(from).get(to): the relay `from` dials to reach `to`. */
  private readonly relays = new Map<string, Map<string, TcpRelay>>();
  private readonly ids: string[];
  private stopped = false;

  private constructor(
    readonly root: string,
    private readonly options: HarnessOptions,
  ) {
    this.ids = [...(options.ids ?? ['n1', 'n2', 'n3'])];
  }

  /** Creates the temp dir and the relays for the bootstrap voters; no process runs yet. */
  static async create(options: HarnessOptions): Promise<ProcessCluster> {
    const root = await mkdtemp(join(tmpdir(), 'balancer-proc-'));
    const cluster = new ProcessCluster(root, options);
    for (const id of cluster.ids) await cluster.addNodeSlot(id);
    return cluster;
  }

  /** The bootstrap voter ids. */
  get voterIds(): readonly string[] {
    return this.ids;
  }

  node(id: string): NodeProcess {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  running(): NodeProcess[] {
    return [...this.nodes.values()].filter((node) => node.alive);
  }

  /** Nodes whose listeners answer (started and not killed or stopped). */
  serving(): NodeProcess[] {
    return [...this.nodes.values()].filter((node) => node.serving);
  }

  relay(from: string, to: string): TcpRelay {
    const relay = this.relays.get(from)?.get(to);
    if (relay === undefined) throw new Error(`no relay ${from}->${to}`);
    return relay;
  }

  /** Cuts every link between the two groups, both ways. */
  partition(groupA: readonly string[], groupB: readonly string[]): void {
    for (const a of groupA) {
      for (const b of groupB) {
        this.relay(a, b).cut();
        this.relay(b, a).cut();
      }
    }
  }

  healAll(): void {
    for (const byTarget of this.relays.values()) for (const relay of byTarget.values()) relay.heal();
  }

  /** Registers a node (its dir, a reserved Raft port, relays to and from every other node). */
  async addNodeSlot(id: string): Promise<NodeProcess> {
    if (this.nodes.has(id)) return this.node(id);
    const node = new NodeProcess(id, join(this.root, id));
    node.raftPort = await freePort();
    for (const other of this.nodes.values()) {
      await this.makeRelay(id, other);
      await this.makeRelay(other.id, node);
    }
    this.nodes.set(id, node);
    return node;
  }

  private async makeRelay(from: string, to: NodeProcess): Promise<void> {
    const relay = new TcpRelay({ host: '127.0.0.1', port: to.raftPort }, `${from}->${to.id}`);
    await relay.start();
    let byTarget = this.relays.get(from);
    if (byTarget === undefined) {
      byTarget = new Map();
      this.relays.set(from, byTarget);
    }
    byTarget.set(to.id, relay);
  }

  /** The file the harness writes for `id` (peers: every bootstrap voter plus itself, each through a relay). */
  nodeYaml(id: string, options: NodeStartOptions = {}): string {
    const node = this.node(id);
    const peerIds = [...new Set([...this.ids, id])];
    const peers = peerIds.map((peer) => `${peer}: ${peer === id ? `127.0.0.1:${node.raftPort}` : this.relay(id, peer).address}`);
    const replicated = typeof this.options.replicated === 'function' ? this.options.replicated(id) : this.options.replicated;
    return [
      `# ${id}: written by the test harness; this comment must survive the cluster's rewrites`,
      'listen: 127.0.0.1:0',
      'admin:',
      '  listen: 127.0.0.1:0',
      `  token: ${ADMIN_TOKEN}`,
      `log: { level: ${this.options.logLevel ?? 'info'} }`,
      'cluster:',
      `  nodeId: ${id}`,
      `  listen: 127.0.0.1:${node.raftPort}`,
      '  dataDir: ./data',
      `  peers: { ${peers.join(', ')} }`,
      `  secret: ${options.secret ?? CLUSTER_SECRET}`,
      `  electionTimeout: ${this.options.electionTimeoutMs ?? 300}ms`,
      `  heartbeatInterval: ${this.options.heartbeatMs ?? 50}ms`,
      ...(options.join === true ? ['  join: true'] : []),
      ...(this.options.snapshotEvery === undefined ? [] : [`  snapshotEvery: ${this.options.snapshotEvery}`]),
      replicated.trimEnd(),
      '',
    ].join('\n');
  }

  async startAll(): Promise<void> {
    await Promise.all(this.ids.map((id) => this.start(id)));
  }

  /**
   * Starts (or restarts, keeping file and data dir) one node and resolves with its addresses once it
   * logged 'balancer started'. With expectFailure, resolves with null when the process exits instead.
   */
  async start(id: string, options: NodeStartOptions = {}): Promise<NodeAddresses | null> {
    if (this.stopped) throw new Error('the cluster was stopped');
    const node = this.nodes.get(id) ?? (await this.addNodeSlot(id));
    if (node.alive) throw new Error(`${id} is already running`);
    await mkdir(node.dir, { recursive: true });
    const exists = await readFile(node.file, 'utf8').then(
      () => true,
      () => false,
    );
    if (!exists || options.freshFile === true) await writeFile(node.file, this.nodeYaml(id, options));
    for (let attempt = 1; attempt <= 5; attempt++) {
      const run = startCli(['start', '-c', node.file], { cwd: node.dir, env: { BALANCER_ADMIN_TOKEN: '' } });
      liveChildren.add(run);
      node.runs.push(run);
      node.alive = true;
      void run.exited.then(() => {
        liveChildren.delete(run);
        if (node.runs[node.runs.length - 1] === run) {
          node.alive = false;
          node.serving = false;
        }
      });
      const outcome = await Promise.race([
        run.waitFor((line) => line['msg'] === 'balancer started', `${id} to start`, START_TIMEOUT_MS).then((line) => ({ line })),
        run.exited.then((code) => ({ code })),
      ]);
      if ('line' in outcome) {
        const line = outcome.line;
        const addresses: NodeAddresses = {
          proxy: `http://${String(line['proxy'])}`,
          admin: `http://${String(line['admin'])}`,
          raftPort: Number(line['raftPort']),
        };
        node.addresses = addresses;
        node.serving = true;
        return addresses;
      }
      node.alive = false;
      const output = run.lines.map((l) => String(l['msg'])).join('\n');
      if (/EADDRINUSE/.test(output) && attempt < 5) {
        // Not a run of the node: a start the harness retries. Kept apart so crash checks over `runs` stay exact.
        node.runs.pop();
        node.portClashes.push(run);
        // Someone took the reserved port: move this node (its relays follow) and try again.
        node.raftPort = await freePort();
        await this.rewriteListen(node);
        for (const byTarget of this.relays.values()) byTarget.get(id)?.retarget({ host: '127.0.0.1', port: node.raftPort });
        continue;
      }
      if (options.expectFailure === true) return null;
      throw new Error(`${id} exited with code ${String(outcome.code)} before it started:\n${output}`);
    }
    throw new Error(`${id}: no free Raft port after 5 attempts`);
  }

  private async rewriteListen(node: NodeProcess): Promise<void> {
    const doc = parseDocument(await readFile(node.file, 'utf8'));
    doc.setIn(['cluster', 'listen'], `127.0.0.1:${node.raftPort}`);
    doc.setIn(['cluster', 'peers', node.id], `127.0.0.1:${node.raftPort}`);
    await writeFile(node.file, doc.toString());
  }

  /** kill -9, and wait until the process is gone. */
  async kill(id: string): Promise<void> {
    const node = this.node(id);
    if (!node.alive) return;
    const run = node.current;
    node.serving = false;
    run.child.kill('SIGKILL');
    await run.exited;
    node.alive = false;
  }

  /** SIGTERM (graceful), then SIGKILL after `graceMs`. */
  async stop(id: string, graceMs = 5_000): Promise<void> {
    const node = this.node(id);
    if (!node.alive) return;
    const run = node.current;
    node.serving = false;
    run.child.kill('SIGTERM');
    const timer = setTimeout(() => run.child.kill('SIGKILL'), graceMs);
    await run.exited;
    clearTimeout(timer);
    node.alive = false;
  }

  async restart(id: string, options: NodeStartOptions = {}): Promise<NodeAddresses | null> {
    await this.kill(id);
    return this.start(id, options);
  }

  /** Always call from afterAll/finally: stops every node, SIGKILLs stragglers, closes the relays, removes the temp dir. */
  async stopAll(options: { keepDir?: boolean } = {}): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.nodes.keys()].map((id) => this.stop(id, 3_000).catch(() => undefined)));
    for (const byTarget of this.relays.values()) for (const relay of byTarget.values()) await relay.close();
    if (options.keepDir !== true) await rm(this.root, { recursive: true, force: true });
  }

  // ---- admin API ----

  async api(id: string, method: string, path: string, options: { body?: unknown; headers?: http.OutgoingHttpHeaders; timeoutMs?: number } = {}): Promise<HttpResult> {
    const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${ADMIN_TOKEN}`, ...options.headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    return httpCall(`${this.node(id).admin}${path}`, { method, headers, ...(body === undefined ? {} : { body }), timeoutMs: options.timeoutMs ?? 10_000 });
  }

  async clusterInfo(id: string): Promise<ClusterInfo> {
    const res = await this.api(id, 'GET', '/api/v1/cluster', { timeoutMs: 2_000 });
    if (res.status !== 200) throw new Error(`${id}: GET /api/v1/cluster answered ${res.status}: ${res.body}`);
    return res.json<ClusterInfo>();
  }

  async config(id: string, timeoutMs = 8_000): Promise<ConfigView> {
    const res = await this.api(id, 'GET', '/api/v1/config', { timeoutMs });
    if (res.status !== 200) throw new Error(`${id}: GET /api/v1/config answered ${res.status}: ${res.body}`);
    return res.json<ConfigView>();
  }

  async metrics(id: string): Promise<string> {
    const res = await httpCall(`${this.node(id).admin}/metrics`, { timeoutMs: 5_000 });
    return res.body;
  }

  /**
   * Until every listed running node names the same leader, itself among them and reporting role leader. The 45 s
   * bounds here only catch a cluster that never gets there: a node restarted at a load of 15 took longer than 15 s.
   */
  async waitForLeader(ids: readonly string[] = this.running().map((node) => node.id), timeoutMs = 45_000): Promise<string> {
    return eventually(
      async () => {
        const infos = await Promise.all(ids.map((id) => this.clusterInfo(id)));
        const leader = infos[0]?.leader ?? null;
        if (leader === null || !ids.includes(leader)) return undefined;
        if (!infos.every((info) => info.leader === leader && info.term === infos[0]!.term)) return undefined;
        return infos.find((info) => info.nodeId === leader)?.role === 'leader' ? leader : undefined;
      },
      `a leader all of ${ids.join(', ')} agree on`,
      timeoutMs,
    );
  }

  /** Until GET /api/v1/config on each node shows at least `version`; returns the views. */
  async waitForVersion(ids: readonly string[], version: number, timeoutMs = 45_000): Promise<ConfigView[]> {
    return eventually(
      async () => {
        const views = await Promise.all(ids.map((id) => this.config(id, 3_000)));
        return views.every((view) => view.version >= version) ? views : undefined;
      },
      `config version ${version} on ${ids.join(', ')}`,
      timeoutMs,
    );
  }

  /** The replicated sections of `id`'s file as YAML data, plus the whole text. */
  async fileConfig(id: string): Promise<{ text: string; pools: ConfigView['pools'] }> {
    const text = await readFile(this.node(id).file, 'utf8');
    const data = parseDocument(text).toJS() as { pools?: ConfigView['pools'] };
    return { text, pools: data.pools ?? {} };
  }

  /** Which backend answers a GET through `id`'s proxy (the test backends' x-backend header). */
  async servedBy(id: string, path = '/'): Promise<string | null> {
    const res = await httpCall(`${this.node(id).proxy}${path}`, { timeoutMs: 5_000 });
    const header = res.headers['x-backend'];
    return res.status === 200 && typeof header === 'string' ? header : null;
  }
}

/** A running three-node cluster whose one pool `web` holds one test backend, every node at the seed version. */
export async function startSeededCluster(
  ids: readonly string[],
  backendName: string,
  backendId: string,
  timing: Pick<HarnessOptions, 'electionTimeoutMs' | 'heartbeatMs'> = {},
): Promise<{ cluster: ProcessCluster; backend: TestBackend }> {
  const backend = await startBackend(backendName);
  const cluster = await ProcessCluster.create({ ...timing, replicated: `pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: ${backendId} }` });
  await cluster.startAll();
  await cluster.waitForLeader(ids);
  await cluster.waitForVersion(ids, 1);
  return { cluster, backend };
}
