// A real Prometheus (the Debian package) scraping one target every second, for the tests of the shipped rules and dashboard.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const PROMETHEUS = '/usr/bin/prometheus';
export const havePrometheus = existsSync(PROMETHEUS);

export interface RunningPrometheus {
  /** http://127.0.0.1:port */
  readonly url: string;
  /** What it printed so far, for failure messages. */
  log(): string;
  /** Throws, with what Prometheus printed, once it has exited: a wait for its data should fail at once then. */
  assertRunning(): void;
  /** GET of an HTTP API path (`/api/v1/...`): its `data`, or an error naming the path when the status is not success. */
  api<T>(path: string): Promise<T>;
  /** Polls `attempt` (errors count as not yet) until it gives a value; fails at once if Prometheus exits, else after `timeoutMs`. */
  until<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs?: number): Promise<T>;
  /** SIGTERM, and SIGKILL if it is still running 5 s later. */
  stop(): Promise<void>;
}

/** Starts Prometheus with its config and data in `dir`, scraping `target` (host:port) as job `balancer`, with `ruleFiles` loaded. */
export async function startPrometheus(dir: string, target: string, ruleFiles: readonly string[]): Promise<RunningPrometheus> {
  const config = join(dir, 'prometheus.yml');
  await writeFile(
    config,
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ${JSON.stringify(ruleFiles)}`,
      'scrape_configs:',
      '  - job_name: balancer',
      `    static_configs: [{ targets: [${JSON.stringify(target)}] }]`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    PROMETHEUS,
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  child.stdout.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => logs.push(d.toString()));

  const assertRunning = (): void => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}): ${logs.join('')}`);
  };

  return {
    url,
    log: () => logs.join(''),
    assertRunning,
    async api<T>(path: string): Promise<T> {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(3_000) });
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? JSON.stringify(body)}`);
      return body.data;
    },
    async until<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      let lastError: unknown;
      while (Date.now() < deadline) {
        assertRunning();
        try {
          const value = await attempt();
          if (value !== undefined) return value;
        } catch (error) {
          lastError = error;
        }
        await new Promise((ok) => setTimeout(ok, 250));
      }
      throw new Error(`timed out waiting for ${what}; last error: ${String(lastError)}; prometheus log: ${logs.join('')}`);
    },
    async stop(): Promise<void> {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 5_000).unref())]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
