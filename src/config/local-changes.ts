// Which local settings differ between what a node runs and what its file says now, and which of them a running node can apply.

import { isDeepStrictEqual } from 'node:util';
import { resolveConfigPath } from './load.js';
import type { Config, LocalConfig } from './schema.js';

export interface LocalChanges {
  /** Settings a running node applies at once (single-process mode): log level, trusted proxies, limits, shutdown. */
  readonly live: readonly string[];
  /** Settings that take effect only after a restart, by the names the file uses. */
  readonly restart: readonly string[];
}

/** What a setting compares as: paths resolved against the file's directory, secrets read from files left out. */
function comparable(config: LocalConfig, baseDir: string): Record<string, unknown> {
  const path = (value: string | null): string | null => (value === null ? null : resolveConfigPath(baseDir, value));
  const cluster = config.cluster;
  return {
    listen: config.listen,
    tls: config.tls === null ? null : { cert: path(config.tls.cert), key: path(config.tls.key) },
    'admin.listen': config.admin.listen,
    // A token read from tokenFile is compared by the file's path: its content is re-read only at start.
    'admin.token': config.admin.tokenFile === null ? { token: config.admin.token } : { tokenFile: path(config.admin.tokenFile) },
    cluster:
      cluster === null
        ? null
        : {
            ...cluster,
            dataDir: path(cluster.dataDir),
            secretFile: path(cluster.secretFile),
            secret: cluster.secretFile === null ? cluster.secret : null,
          },
    trustedProxies: config.trustedProxies,
    ...Object.fromEntries(Object.entries(config.limits).map(([key, value]) => [`limits.${key.replace(/Ms$/, '')}`, value])),
    'log.level': config.log.level,
    'log.access': config.log.access,
    'log.accessFile': path(config.log.accessFile),
    workers: config.workers,
    'shutdown.drainTimeout': config.shutdownDrainMs,
    'shutdown.preStopDelay': config.shutdownPreStopDelayMs,
  };
}

/** Live in the main process; with workers, the listener's settings live in other processes and need a restart. */
function appliesLive(setting: string, workers: boolean): boolean {
  if (setting.startsWith('shutdown.')) return true;
  if (workers) return false;
  return setting === 'log.level' || setting === 'trustedProxies' || setting.startsWith('limits.');
}

export function localChanges(running: Config, edited: Config, baseDir: string): LocalChanges {
  const before = comparable(running, baseDir);
  const after = comparable(edited, baseDir);
  const live: string[] = [];
  const restart: string[] = [];
  for (const setting of Object.keys(before)) {
    if (isDeepStrictEqual(before[setting], after[setting])) continue;
    (appliesLive(setting, running.workers > 0) ? live : restart).push(setting);
  }
  return { live, restart };
}

/** `running` with the live settings of `edited` applied; restart-only settings keep what runs. */
export function withLiveSettings(running: Config, edited: Config): Config {
  const workers = running.workers > 0;
  return {
    ...running,
    shutdownDrainMs: edited.shutdownDrainMs,
    shutdownPreStopDelayMs: edited.shutdownPreStopDelayMs,
    ...(workers ? {} : { log: { ...running.log, level: edited.log.level }, trustedProxies: edited.trustedProxies, limits: edited.limits }),
  };
}
