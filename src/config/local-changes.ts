// Which local settings differ between what a node runs and what its file says now, and which of them a running node can apply.

import { isDeepStrictEqual } from 'node:util';
import { resolveConfigPath, resolveListenerTlsPaths } from './load.js';
import { DEFAULTS, type Config, type ListenerConfig, type LocalConfig } from './schema.js';

export interface LocalChanges {
  /** Settings a running node applies at once: listeners (listen, tls), log level, trusted proxies, limits, shutdown, admin token. */
  readonly live: readonly string[];
  /** Settings that take effect only after a restart, by the names the file uses. */
  readonly restart: readonly string[];
}

/** Listener TLS files made absolute against the file's directory. */
export function resolvedListeners(listeners: readonly ListenerConfig[], baseDir: string): ListenerConfig[] {
  return listeners.map((listener) => (listener.tls === null ? listener : { ...listener, tls: resolveListenerTlsPaths(listener.tls, baseDir) }));
}

/**
 * The listeners by the names the file uses: `listen` and `tls` for the one-listener form (a single listener named
 * default), `listeners` otherwise.
 */
function comparableListeners(config: LocalConfig, baseDir: string): Record<string, unknown> {
  const listeners = resolvedListeners(config.listeners, baseDir);
  const only = listeners.length === 1 ? listeners[0]! : null;
  if (only !== null && only.name === DEFAULTS.listenerName) return { listen: only.listen, tls: only.tls, listeners: undefined };
  return { listen: undefined, tls: undefined, listeners };
}

/** What a setting compares as: paths resolved against the file's directory, secrets read from files left out. */
function comparable(config: LocalConfig, baseDir: string): Record<string, unknown> {
  const path = (value: string | null): string | null => (value === null ? null : resolveConfigPath(baseDir, value));
  const cluster = config.cluster;
  return {
    ...comparableListeners(config, baseDir),
    'admin.listen': config.admin.listen,
    // A token read from tokenFile is compared by the file's path here; the node re-reads its content on each edit.
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

/** With workers, the primary sends these to every worker (and to each one started later). */
function appliesLive(setting: string): boolean {
  return (
    setting === 'listen' ||
    setting === 'tls' ||
    setting === 'listeners' ||
    setting === 'log.level' ||
    setting === 'trustedProxies' ||
    setting.startsWith('limits.') ||
    setting.startsWith('shutdown.') ||
    setting === 'admin.token'
  );
}

export function localChanges(running: Config, edited: Config, baseDir: string): LocalChanges {
  const before = comparable(running, baseDir);
  const after = comparable(edited, baseDir);
  const live: string[] = [];
  const restart: string[] = [];
  for (const setting of Object.keys(before)) {
    if (isDeepStrictEqual(before[setting], after[setting])) continue;
    (appliesLive(setting) ? live : restart).push(setting);
  }
  return { live, restart };
}

/**
 * `running` with the live settings of `edited` applied (its paths resolved against `baseDir`, as a loaded config's
 * are); restart-only settings keep what runs, and so does the admin token (its file is read by the caller).
 */
export function withLiveSettings(running: Config, edited: Config, baseDir: string): Config {
  return {
    ...running,
    shutdownDrainMs: edited.shutdownDrainMs,
    shutdownPreStopDelayMs: edited.shutdownPreStopDelayMs,
    log: { ...running.log, level: edited.log.level },
    trustedProxies: edited.trustedProxies,
    limits: edited.limits,
    listeners: resolvedListeners(edited.listeners, baseDir),
  };
}
