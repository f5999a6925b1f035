// The last N versions of the replicated config: when each was made, from where, by which request, and the config itself.

/*
 * In a cluster the history is part of the replicated state machine: each change's time and source are
 * stamped by the node that proposed it (inside the log entry), so every node records the same history
 * however late it applies the entry. Only the bound is local (cluster.historySize), so a node with a
 * smaller one simply forgets sooner. A single node keeps its history in memory since it started.
 */

import type { ConfigCommand } from './config-reducer.js';
import { DEFAULTS, type ReplicatedConfig } from '../config/schema.js';
import { toPlainReplicated, type PlainReplicated } from '../config/plain.js';

export const DEFAULT_HISTORY_SIZE: number = DEFAULTS.historySize;

/** Where a change came from: a node's file (an edit, or the seed of a fresh cluster), the admin API, the CLI, or a rollback. */
export type ChangeKind = 'file' | 'seed' | 'api' | 'cli' | 'rollback' | 'unknown';
export const CHANGE_KINDS: readonly ChangeKind[] = ['file', 'seed', 'api', 'cli', 'rollback', 'unknown'];

export interface ChangeSource {
  readonly kind: ChangeKind;
  /** The node that proposed the change. */
  readonly node?: string;
  /** For file edits and seeds: the file on that node. */
  readonly file?: string;
  /** For rollbacks: how it was asked for, and the version whose config it restored. */
  readonly via?: 'api' | 'cli';
  readonly rollbackOf?: number;
}

/** What the proposer stamps on a change; travels inside the log entry. */
export interface ChangeMeta {
  /** ISO time on the proposing node; null for entries written before changes carried it. */
  readonly at: string | null;
  readonly source: ChangeSource;
  /** An X-Request-Id the admin API caller sent, to find the change from the caller's own logs. */
  readonly clientRequestId?: string;
}

export interface HistoryEntry extends ChangeMeta {
  readonly version: number;
  /** The proposal's request id (also in the log lines and the admin API's X-Request-Id answer header). */
  readonly requestId: string;
  /** One line saying what the change did: "set config", "add backend web/web-4", ... */
  readonly change: string;
  readonly config: PlainReplicated;
}

/** The history without the configs: what `balancer config history` lists. */
export type HistorySummary = Omit<HistoryEntry, 'config'>;

/**
 * The history entry of a change to `config`, whose plain form is built when first read, then kept. Most entries are
 * never read (the history is read by its API, a rollback or a snapshot), and building the plain form of every new
 * config was work on every node at every change (its pool's form: ~0.4 ms with 1,000 backends).
 */
export function historyEntry(summary: HistorySummary, config: ReplicatedConfig): HistoryEntry {
  let plain: PlainReplicated | undefined;
  return {
    ...summary,
    get config(): PlainReplicated {
      plain ??= toPlainReplicated(config);
      return plain;
    },
  };
}

export function describeCommand(command: ConfigCommand): string {
  switch (command.type) {
    case 'set-config':
      return 'set config';
    case 'add-backend':
      return `add backend ${command.pool}/${command.backend.id ?? command.backend.url}`;
    case 'update-backend': {
      const parts = [
        command.patch.weight === undefined ? null : `weight ${command.patch.weight}`,
        command.patch.drain === undefined ? null : command.patch.drain ? 'drain' : 'undrain',
      ].filter((part): part is string => part !== null);
      return `update backend ${command.pool}/${command.id}: ${parts.join(', ')}`;
    }
    case 'remove-backend':
      return `remove backend ${command.pool}/${command.id}`;
  }
}

/** A sentence for a source: "file /etc/balancer.yaml on n2", "CLI on n1", "rollback to v12 (CLI) on n3". */
export function describeSource(source: ChangeSource): string {
  const on = source.node === undefined ? '' : ` on ${source.node}`;
  switch (source.kind) {
    case 'file':
      return `file ${source.file ?? ''}${on}`.replace('  ', ' ');
    case 'seed':
      return `seeded from ${source.file ?? 'the file'}${on}`;
    case 'api':
      return `admin API${on}`;
    case 'cli':
      return `CLI${on}`;
    case 'rollback':
      return `rollback to v${source.rollbackOf ?? '?'}${source.via === undefined ? '' : ` (${source.via === 'cli' ? 'CLI' : 'admin API'})`}${on}`;
    case 'unknown':
      return 'unknown (written before changes carried their source)';
  }
}

/** A bounded list of versions, oldest first; recording past the bound forgets the oldest. */
export class ConfigHistory {
  private entries: HistoryEntry[] = [];

  constructor(readonly size: number = DEFAULT_HISTORY_SIZE) {}

  record(entry: HistoryEntry): void {
    this.entries.push(entry);
    if (this.entries.length > this.size) this.entries.splice(0, this.entries.length - this.size);
  }

  /** Newest first. */
  list(): readonly HistoryEntry[] {
    return [...this.entries].reverse();
  }

  at(version: number): HistoryEntry | undefined {
    return this.entries.find((entry) => entry.version === version);
  }

  toJSON(): readonly HistoryEntry[] {
    return this.entries;
  }

  /** Replaces the entries with a snapshot's (kept within this node's bound); anything malformed is dropped. */
  restore(entries: unknown): void {
    this.entries = [];
    if (!Array.isArray(entries)) return;
    for (const entry of entries) if (isHistoryEntry(entry)) this.record(entry);
  }
}

function isHistoryEntry(value: unknown): value is HistoryEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Partial<HistoryEntry>;
  return (
    Number.isSafeInteger(entry.version) &&
    typeof entry.requestId === 'string' &&
    typeof entry.change === 'string' &&
    typeof entry.source === 'object' &&
    entry.source !== null &&
    typeof entry.config === 'object' &&
    entry.config !== null
  );
}
