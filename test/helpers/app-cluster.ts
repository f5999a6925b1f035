// Real Apps in this process forming a Raft cluster, each started from its own balancer.yaml: the cluster as `balancer start` runs it, without child processes.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { memoryLogger } from '../../src/log.js';
import { freePort } from './ports.js';

export interface AppClusterOptions {
  readonly ids: readonly string[];
  readonly token: string;
  readonly secret: string;
  /** The routes and pools of every node's file, as YAML lines. */
  readonly replicated: readonly string[];
  /** More lines for the cluster section (`  snapshotEvery: 50`). */
  readonly clusterLines?: readonly string[];
}

export class AppCluster {
  readonly apps = new Map<string, App>();

  private constructor(
    private readonly root: string,
    private readonly token: string,
  ) {}

  /** Writes each node's file (Raft ports drawn by freePort, since peers must name them) and starts the Apps together. */
  static async start(options: AppClusterOptions): Promise<AppCluster> {
    const cluster = new AppCluster(await mkdtemp(join(tmpdir(), 'balancer-app-cluster-')), options.token);
    const peers: Record<string, string> = {};
    for (const id of options.ids) peers[id] = `127.0.0.1:${await freePort()}`;
    await Promise.all(
      options.ids.map(async (id) => {
        const dir = join(cluster.root, id);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'balancer.yaml'), nodeYaml(id, peers, options));
        cluster.apps.set(id, await App.start({ configPath: join(dir, 'balancer.yaml'), logger: memoryLogger('info') }));
      }),
    );
    return cluster;
  }

  app(id: string): App {
    const app = this.apps.get(id);
    if (app === undefined) throw new Error(`no app ${id}`);
    return app;
  }

  /** A call to a node's admin API with the cluster's token. */
  admin(id: string, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.app(id).addresses.admin.port}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, ...(init.headers as Record<string, string> | undefined) },
    });
  }

  proxyUrl(id: string): string {
    return `http://127.0.0.1:${this.app(id).addresses.proxy.port}`;
  }

  async stop(): Promise<void> {
    for (const app of this.apps.values()) await app.stop(0);
    await rm(this.root, { recursive: true, force: true });
  }
}

function nodeYaml(id: string, peers: Readonly<Record<string, string>>, options: AppClusterOptions): string {
  return [
    'listen: 127.0.0.1:0',
    'admin:',
    '  listen: 127.0.0.1:0',
    `  token: ${options.token}`,
    'cluster:',
    `  nodeId: ${id}`,
    `  listen: ${peers[id]}`,
    '  dataDir: ./data',
    `  peers: { ${Object.entries(peers).map(([k, v]) => `${k}: "${v}"`).join(', ')} }`,
    `  secret: ${options.secret}`,
    '  electionTimeout: 300ms',
    '  heartbeatInterval: 50ms',
    ...(options.clusterLines ?? []),
    ...options.replicated,
    '',
  ].join('\n');
}
