// In-process cluster for tests: ClusterStores on real DiskStorage in temp dirs, real PeerTransports on 127.0.0.1 port 0, real config files and watchers.

import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock, systemRandom } from '../../src/clock.js';
import { ClusterStore } from '../../src/cluster/store.js';
import { DEFAULTS, type ClusterConfig } from '../../src/config/schema.js';
import { validateConfigText } from '../../src/config/validate.js';
import { watchConfigFile, type ConfigWatcher } from '../../src/config/watch.js';
import { createLogger, type Logger } from '../../src/log.js';
import { noopMetrics, type Metrics, type RaftMetrics } from '../../src/metrics/types.js';
import { DataPlane } from '../../src/proxy/data-plane.js';
import { PoolRuntime } from '../../src/balancer/pool.js';
import { Watched } from './wait.js';

export const SECRET = 'test-cluster-secret';
export const ELECTION_MS = 300;
export const HEARTBEAT_MS = 50;

/** A file whose pools are `backends` (ports only; nothing listens, no health checks run). */
export function configText(nodeId: string, pool: string, ports: readonly number[], comment = '# kept comment'): string {
  const backends = ports.map((port) => `      - { url: http://127.0.0.1:${port}, id: b${port} }`).join('\n');
  return [
    comment,
    'listen: 127.0.0.1:0',
    'cluster:',
    `  nodeId: ${nodeId}`,
    '  listen: 127.0.0.1:7999',
    `  peers: { ${nodeId}: 127.0.0.1:7999 }`,
    `  secret: ${SECRET}`,
    'pools:',
    `  ${pool}:`,
    '    backends:',
    backends,
    '',
  ].join('\n');
}

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

class RecordingRaftMetrics implements RaftMetrics {
  term = 0;
  commit = 0;
  applied = 0;
  isLeader = false;
  leaderChanges = 0;
  readonly proposals: string[] = [];
  readonly reachable = new Map<string, boolean>();
  setTerm(term: number): void {
    this.term = term;
  }
  setCommitIndex(index: number): void {
    this.commit = index;
  }
  setAppliedIndex(index: number): void {
    this.applied = index;
  }
  setIsLeader(isLeader: boolean): void {
    this.isLeader = isLeader;
  }
  leaderChanged(): void {
    this.leaderChanges++;
  }
  elections = 0;
  electionsStarted(count: number): void {
    this.elections += count;
  }
  ticks = 0;
  ticked(): void {
    this.ticks++;
  }
  proposal(result: string): void {
    this.proposals.push(result);
  }
  setPeerReachable(peer: string, reachable: boolean): void {
    this.reachable.set(peer, reachable);
  }
  forgetPeer(peer: string): void {
    this.reachable.delete(peer);
  }
  readonly rejected: string[] = [];
  peerMessageRejected(reason: string): void {
    this.rejected.push(reason);
  }
  failed = false;
  setFailed(failed: boolean): void {
    this.failed = failed;
  }
}

export interface TestNode {
  readonly id: string;
  readonly dir: string;
  readonly file: string;
  readonly dataDir: string;
  readonly store: ClusterStore;
  readonly dataPlane: DataPlane;
  readonly lines: LogLine[];
  readonly raftMetrics: RecordingRaftMetrics;
  readonly watcher: ConfigWatcher;
}

export interface StartOptions {
  readonly join?: boolean;
  readonly snapshotEvery?: number;
  /** The file to write before starting; omitted: keep the one on disk (restart). */
  readonly text?: string;
  readonly writeTimeoutMs?: number;
  /** How often at most the node writes applied configs into its file (default: the store's). */
  readonly fileWriteIntervalMs?: number;
  /** false: only the new node learns the others' addresses; they must learn its address from the log (cluster add). */
  readonly announce?: boolean;
}

/** Everything a test waits on (until) re-checks when any node logs (applies, elects, writes a file), and every 100 ms. */
export class TestCluster extends Watched {
  readonly nodes = new Map<string, TestNode>();
  private root = '';
  /** Raft addresses by node id, filled in as nodes bind port 0. */
  readonly addresses: Record<string, string> = {};
  private readonly unannounced = new Set<string>();

  constructor(readonly voterIds: readonly string[]) {
    super(100);
  }

  async init(): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'balancer-cluster-'));
  }

  dirOf(id: string): string {
    return join(this.root, id);
  }

  node(id: string): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no running node ${id}`);
    return node;
  }

  async start(id: string, options: StartOptions = {}): Promise<TestNode> {
    const dir = this.dirOf(id);
    const file = join(dir, 'balancer.yaml');
    const dataDir = join(dir, 'data');
    if (options.text !== undefined) {
      await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
      await writeFile(file, options.text);
    }
    const lines: LogLine[] = [];
    const logger: Logger = createLogger({
      level: 'debug',
      fields: { node: id },
      sink: (line) => {
        lines.push(JSON.parse(line) as LogLine);
        this.changed();
      },
    });
    const raftMetrics = new RecordingRaftMetrics();
    const metrics: Metrics = { ...noopMetrics, raft: raftMetrics };
    const dataPlane = new DataPlane({ clock: systemClock, random: systemRandom, metrics, logger }, PoolRuntime.create);
    // Voters start from each other's ids; addresses come once every listener is bound (port 0).
    const placeholderPeers: Record<string, string> = {};
    for (const voter of this.voterIds) placeholderPeers[voter] = this.addresses[voter] ?? '127.0.0.1:1';
    placeholderPeers[id] = this.addresses[id] ?? '127.0.0.1:1';
    const cluster: ClusterConfig = {
      nodeId: id,
      listen: '127.0.0.1:0',
      dataDir,
      peers: placeholderPeers,
      secret: SECRET,
      secretFile: null,
      electionTimeoutMs: ELECTION_MS,
      heartbeatIntervalMs: HEARTBEAT_MS,
      historySize: DEFAULTS.historySize,
      ...(options.join === undefined ? {} : { join: options.join }),
      ...(options.snapshotEvery === undefined ? {} : { snapshotEvery: options.snapshotEvery }),
    };
    let watcher: ConfigWatcher | null = null;
    const store = await ClusterStore.start({
      cluster,
      file,
      baseDir: dir,
      dataPlane,
      metrics,
      logger,
      noteOwnWrite: (text) => watcher?.noteOwnWrite(text),
      listen: this.addresses[id] ?? '127.0.0.1:0',
      ...(options.writeTimeoutMs === undefined ? {} : { writeTimeoutMs: options.writeTimeoutMs }),
      ...(options.fileWriteIntervalMs === undefined ? {} : { fileWriteIntervalMs: options.fileWriteIntervalMs }),
    });
    watcher = watchConfigFile(file, { onChange: (text) => void store.reloadFromText(text), debounceMs: 30 });
    this.addresses[id] = `127.0.0.1:${store.raft.port}`;
    const node: TestNode = { id, dir, file, dataDir, store, dataPlane, lines, raftMetrics, watcher };
    this.nodes.set(id, node);
    if (options.announce === false) this.unannounced.add(id);
    if (options.announce === false) store.raft.setConfiguredPeers({ ...this.addresses });
    else this.connectAll();
    store.raft.on(() => this.changed());
    return node;
  }

  /** Hands every running node the real address of every node started so far. */
  connectAll(): void {
    const announced = Object.fromEntries(Object.entries(this.addresses).filter(([id]) => !this.unannounced.has(id)));
    for (const node of this.nodes.values()) {
      node.store.raft.setConfiguredPeers(this.unannounced.has(node.id) ? { ...this.addresses } : announced);
    }
  }

  async stop(id: string): Promise<void> {
    const node = this.node(id);
    this.nodes.delete(id);
    node.watcher.close();
    await node.store.stop();
    node.dataPlane.stop();
  }

  async close(): Promise<void> {
    for (const id of [...this.nodes.keys()]) await this.stop(id);
    await rm(this.root, { recursive: true, force: true });
  }

  leader(): TestNode | undefined {
    for (const node of this.nodes.values()) if (node.store.cluster().role === 'leader') return node;
    return undefined;
  }

  followers(): TestNode[] {
    return [...this.nodes.values()].filter((node) => node.store.cluster().role !== 'leader');
  }

  /** The leader every node agreed on when the check passed (leadership may have moved again by the time it returns). */
  async waitForLeader(timeoutMs = 5000): Promise<TestNode> {
    let agreed: TestNode | undefined;
    await this.until(() => {
      const leader = this.leader();
      agreed = leader !== undefined && [...this.nodes.values()].every((n) => n.store.cluster().leader === leader.id) ? leader : undefined;
      return agreed !== undefined;
    }, timeoutMs, 'a leader known to every node');
    return agreed!;
  }

  /** Every running node serves `version` in its data plane. */
  async waitForVersion(version: number, timeoutMs = 5000, ids: readonly string[] = [...this.nodes.keys()]): Promise<void> {
    await this.until(() => ids.every((id) => this.node(id).dataPlane.table.version >= version), timeoutMs, `version ${version} on ${ids.join(',')}`);
  }

}

/** The routes+pools the file at `path` says, as JSON for comparison. */
export async function fileReplicated(path: string): Promise<string> {
  const result = validateConfigText(await readFile(path, 'utf8'), path);
  if (!result.ok) throw new Error(`${path} is invalid: ${result.problems.map((p) => p.message).join('; ')}`);
  return JSON.stringify({ routes: result.config.routes, pools: result.config.pools });
}

export async function filesBeside(dir: string, prefix: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith(prefix));
}

export function backendIds(node: TestNode, pool: string): string[] {
  return node.dataPlane.table.pools.get(pool)?.pool.backends.map((b) => b.id) ?? [];
}
