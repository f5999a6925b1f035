// Starts a real balancer App in-process from a YAML text written to a temp dir, on port 0 listeners.

import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { App } from '../../src/app.js';
import { startBackend, type TestBackend } from './backend.js';
import { memoryLogger } from '../../src/log.js';

export interface TestGateway {
  readonly app: App;
  readonly dir: string;
  readonly file: string;
  readonly url: string;
  readonly adminUrl: string;
  readonly port: number;
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `yaml` is the config without admin, which is added on port 0; so is listen, unless the yaml has listeners. */
export async function startGateway(yaml: string, options: { token?: string } = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'balancer-test-'));
  const file = join(dir, 'balancer.yaml');
  const token = options.token ?? 'test-token';
  const listen = /^listeners:/m.test(yaml) ? '' : 'listen: 127.0.0.1:0\n';
  await writeFile(file, `${listen}admin:\n  listen: 127.0.0.1:0\n  token: ${token}\n${yaml}`);
  const logger = memoryLogger('debug');
  const app = await App.start({ configPath: file, logger }).catch((error: unknown) => {
    const details = (error as { details?: unknown[] }).details ?? [];
    throw new Error(`${String(error)}\n${JSON.stringify(details, null, 1)}`);
  });
  return {
    app,
    dir,
    file,
    url: `http://127.0.0.1:${app.addresses.proxy.port}`,
    adminUrl: `http://127.0.0.1:${app.addresses.admin.port}`,
    port: app.addresses.proxy.port,
    logs: logger.lines,
    stop: async () => {
      await app.stop(1_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Backends and gateways that live for one test: call at the top of a test file; everything started through the
 * returned functions is stopped after each test, newest first.
 */
export function perTestResources(): { backend(name?: string): Promise<TestBackend>; gateway(yaml: string): Promise<TestGateway> } {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!();
  });
  return {
    async backend(name = 'b') {
      const started = await startBackend(name);
      cleanups.push(() => started.close());
      return started;
    },
    async gateway(yaml) {
      const started = await startGateway(yaml);
      cleanups.push(() => started.stop());
      return started;
    },
  };
}
