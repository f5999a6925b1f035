// Runs the compiled CLI (bin/balancer.js) as a real child process and watches its JSON log lines.

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'bin', 'balancer.js');

/**
 * How long a `balancer start` child may take to log 'balancer started' before a wait calls it hung. Alone it takes
 * one to two seconds; at a load of 15-20 on the shared two-core machine a node of a three-process cluster took
 * over 20 s (the harness's bound then), so the bound is wide: a node that really hangs still fails the wait.
 */
export const START_TIMEOUT_MS = 60_000;

/**
 * How long a `balancer` CLI command (a client call to the admin API) may run before it is killed as hung. Alone it
 * takes well under a second; in a full run at a load of 8-20, niced, CLI calls were killed at the 20 s bound this
 * replaces (exit code null) in the cluster-process history, standing and file-safety tests.
 */
export const CLI_TIMEOUT_MS = 60_000;

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? CLI_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface RunningNode {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first log line matching `predicate` (already seen or future); rejects after timeoutMs. */
  waitFor(predicate: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

/** `nodeFlags` go to node before the script, as bin/balancer.js's shebang or `npm start` pass them. */
export function startCli(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; nodeFlags?: readonly string[] } = {}): RunningNode {
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), BIN, ...args], { cwd: options.cwd ?? REPO, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  const onOutput = (chunk: Buffer): void => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, raw: true });
      }
    }
    for (const wake of waiters) wake();
  };
  child.stdout!.on('data', onOutput);
  child.stderr!.on('data', onOutput);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitFor(predicate, what, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = lines.find(predicate);
          if (found === undefined) return false;
          cleanup();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${what}; last lines: ${JSON.stringify(lines.slice(-5))}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(wake);
        };
        const wake = (): void => void check();
        if (!check()) waiters.add(wake);
      });
    },
  };
}

/** A `balancer start` child that logged 'balancer started'. */
export interface StartedBalancer {
  readonly node: RunningNode;
  /** The config file it runs from. */
  readonly file: string;
  /** The 'balancer started' log line. */
  readonly started: Record<string, unknown>;
  /** http://host:port of its first proxy listener and of its admin API. */
  readonly proxy: string;
  readonly admin: string;
}

/**
 * Writes `config` (a YAML text, or its lines) to `fileName` in `dir`, runs `balancer start -c` on it and resolves once
 * the node logs 'balancer started'. A node that does not get there in `timeoutMs` is killed and the wait rejects.
 */
export async function startBalancer(
  dir: string,
  config: string | readonly string[],
  options: { fileName?: string; timeoutMs?: number; nodeFlags?: readonly string[] } = {},
): Promise<StartedBalancer> {
  const file = join(dir, options.fileName ?? 'balancer.yaml');
  await writeFile(file, typeof config === 'string' ? config : config.join('\n'));
  const node = startCli(['start', '-c', file], { nodeFlags: options.nodeFlags ?? [] });
  try {
    const started = await node.waitFor((line) => line['msg'] === 'balancer started', 'balancer started', options.timeoutMs ?? START_TIMEOUT_MS);
    return { node, file, started, proxy: `http://${String(started['proxy'])}`, admin: `http://${String(started['admin'])}` };
  } catch (error) {
    node.child.kill('SIGKILL');
    throw error;
  }
}
