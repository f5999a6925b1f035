// The single-node control plane: applies config commands in memory and writes them back to balancer.yaml, serialised.

import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { BalancerError, errorMessage } from '../errors.js';
import type { ReplicatedConfig } from '../config/schema.js';
import { resolveReplicatedPaths } from '../config/load.js';
import { toPlainReplicated, type PlainReplicated } from '../config/plain.js';
import { fileStamp, replaceFile } from '../atomic-write.js';
import { sameReplicated, validateConfigText, validateReplicatedText } from '../config/validate.js';
import { applyCommand, discoveredHere, guard, type ConfigCommand, type ConfigState } from './config-reducer.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import type { DataPlane } from '../proxy/data-plane.js';
import type { BackendInput, BackendPatch, ClusterStatus, ControlPlane, NodeStatus, WriteOptions, WriteResult } from './types.js';
import { ConfigHistory, DEFAULT_HISTORY_SIZE, describeCommand, historyEntry, type ChangeMeta, type ChangeSource, type HistoryEntry } from './history.js';
import { FORCE_HINT, hasReplicatedSections, unsafeChangeMessage, unsafeChanges } from '../config/safety.js';
import { readFileEdit } from './file-edit.js';
import { poolStatusViews } from './status.js';
import { Readiness } from './readiness.js';

export interface LocalStoreOptions {
  readonly nodeName: string;
  readonly file: string;
  readonly baseDir: string;
  readonly initial: ReplicatedConfig;
  readonly dataPlane: DataPlane;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Tells the file watcher that this text is our own write, so it is not taken for an edit. */
  readonly noteOwnWrite: (text: string) => void;
}

export class LocalStore implements ControlPlane {
  private state: ConfigState;
  readonly readiness = new Readiness();
  /** Since this process started: versions start again at 1 on every start. */
  private readonly changes = new ConfigHistory(DEFAULT_HISTORY_SIZE);
  private readonly options: LocalStoreOptions;
  /** Writes run one at a time: each reads the state the previous one left. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: LocalStoreOptions) {
    this.options = options;
    this.state = { version: 1, config: options.initial };
    this.changes.record(
      historyEntry(
        { version: 1, requestId: randomUUID(), change: 'loaded at start', at: new Date().toISOString(), source: { kind: 'file', node: options.nodeName, file: options.file } },
        options.initial,
      ),
    );
    this.readiness.add('config', () => (options.dataPlane.ready ? null : 'no config applied yet'));
    options.dataPlane.apply(this.state.version, resolveReplicatedPaths(options.initial, options.baseDir));
  }

  get version(): number {
    return this.state.version;
  }

  status(): NodeStatus {
    const notReady = this.readiness.notReady();
    return {
      node: this.options.nodeName,
      version: this.state.version,
      ready: notReady.length === 0,
      notReady,
      pools: poolStatusViews(this.options.dataPlane),
      cluster: this.cluster(),
    };
  }

  cluster(): ClusterStatus {
    return { nodeId: this.options.nodeName, role: 'standalone', membership: 'standalone', term: 0, leader: null, commitIndex: this.state.version, appliedIndex: this.state.version, members: [] };
  }

  async getConfig(): Promise<{ version: number; config: PlainReplicated }> {
    return { version: this.state.version, config: toPlainReplicated(this.state.config) };
  }

  putConfig(body: unknown, options: { ifMatch?: number; sourceText?: string } & WriteOptions): Promise<WriteResult> {
    return this.serialised(async () => {
      // Text bodies are validated from their text first, so problems carry the line and column the caller sent.
      if (options.sourceText !== undefined) {
        const fromText = validateReplicatedText(options.sourceText, 'request body');
        if (!fromText.ok) throw new BalancerError('CONFIG_INVALID', `config rejected: ${fromText.problems.length} problem(s)`, { details: fromText.problems });
      }
      const command: ConfigCommand = {
        type: 'set-config',
        config: body,
        ...(options.ifMatch === undefined ? {} : { expectedVersion: options.ifMatch }),
        ...guard(options),
      };
      const result = await this.commit(command, this.changeMeta(options.origin));
      return { version: result.version, requestId: result.requestId };
    });
  }

  addBackend(pool: string, input: BackendInput, options: WriteOptions = {}) {
    return this.serialised(async () => {
      const result = await this.commit({ type: 'add-backend', pool, backend: input, refuseUnsafe: true }, this.changeMeta(options.origin));
      return { version: result.version, requestId: result.requestId, backend: result.backend! };
    });
  }

  updateBackend(pool: string, id: string, patch: BackendPatch, options: WriteOptions = {}) {
    return this.serialised(async () => {
      const result = await this.commit({ type: 'update-backend', pool, id, patch, refuseUnsafe: true, ...discoveredHere(this.options.dataPlane, pool, id) }, this.changeMeta(options.origin));
      return { version: result.version, requestId: result.requestId };
    });
  }

  removeBackend(pool: string, id: string, options: WriteOptions = {}) {
    return this.serialised(async () => {
      const result = await this.commit({ type: 'remove-backend', pool, id, ...guard(options) }, this.changeMeta(options.origin));
      return { version: result.version, requestId: result.requestId };
    });
  }

  history(): readonly HistoryEntry[] {
    return this.changes.list();
  }

  rollback(version: number, options: { ifMatch?: number } & WriteOptions): Promise<WriteResult> {
    return this.serialised(async () => {
      const target = this.changes.at(version);
      if (target === undefined) {
        throw new BalancerError('NOT_FOUND', `version ${version} is not in the config history (it holds the versions since this node started, at most ${DEFAULT_HISTORY_SIZE})`);
      }
      const command: ConfigCommand = { type: 'set-config', config: target.config, expectedVersion: options.ifMatch ?? this.state.version, ...guard(options) };
      const source: ChangeSource = { kind: 'rollback', node: this.options.nodeName, via: options.origin?.via ?? 'api', rollbackOf: version };
      const result = await this.commit(command, { ...this.changeMeta(options.origin), source });
      return { version: result.version, requestId: result.requestId };
    });
  }

  private changeMeta(origin: WriteOptions['origin'], source?: ChangeSource): ChangeMeta {
    return {
      at: new Date().toISOString(),
      source: source ?? { kind: origin?.via ?? 'api', node: this.options.nodeName },
      ...(origin?.clientRequestId === undefined ? {} : { clientRequestId: origin.clientRequestId }),
    };
  }

  async addMember(): Promise<ClusterStatus> {
    throw notClustered();
  }

  async removeMember(): Promise<ClusterStatus> {
    throw notClustered();
  }

  async transferLeader(): Promise<ClusterStatus> {
    throw notClustered();
  }

  /**
   * The file watcher and SIGHUP land here: a valid edit replaces the config (no write-back: the file is the source),
   * an invalid one is logged with every problem and the running config keeps serving. An empty file, or one without
   * routes and pools, is no edit (ignored); one that would take traffic down is refused, saved beside the file as
   * .rejected-<time>, and the file is rewritten to what serves, so that a restart loads what serves.
   */
  reloadFromText(text: string): Promise<'applied' | 'unchanged' | 'ignored' | 'invalid' | 'unsafe'> {
    return this.serialised(async () => {
      const { file, logger, metrics } = this.options;
      const reading = readFileEdit(text, { file, logger, metrics, servingVersion: this.state.version, instead: 'the previous config keeps serving' });
      if (reading.kind !== 'edit') return reading.kind;
      const config = reading.config;
      if (sameReplicated(config, this.state.config)) return 'unchanged';
      const meta = this.changeMeta(undefined, { kind: 'file', node: this.options.nodeName, file });
      const reasons = unsafeChanges(this.state.config, config);
      if (reasons.length > 0) {
        metrics.configReload('failure');
        const message = `config edit refused: ${unsafeChangeMessage(reasons, FORCE_HINT.file)}`;
        let saved: string;
        try {
          saved = await this.setAside(text);
        } catch (error) {
          // Without a copy, the file itself is the only record of the edit: leave it as the operator wrote it.
          logger.error(message, { file, reasons, servingVersion: this.state.version, saveError: errorMessage(error) });
          return 'unsafe';
        }
        logger.error(message, { file, saved, reasons, servingVersion: this.state.version });
        await this.writeServing(text);
        return 'unsafe';
      }
      this.swap({ version: this.state.version + 1, config });
      this.changes.record(historyEntry({ version: this.state.version, requestId: randomUUID(), change: 'file edit', ...meta }, config));
      this.options.metrics.configReload('success');
      this.options.logger.info('config reloaded from file', { file: this.options.file, version: this.state.version });
      return 'applied';
    });
  }

  private async commit(command: ConfigCommand, meta: ChangeMeta): Promise<{ version: number; requestId: string; backend?: { id: string; url: string; weight: number } }> {
    const result = applyCommand(this.state, command, this.state.version + 1);
    if (!result.ok) throw new BalancerError(result.error.code, result.error.message, { details: result.error.details });
    // The file is written before the new config serves, so what serves is always what a restart would load.
    let original: string;
    try {
      original = await readFile(this.options.file, 'utf8');
    } catch (error) {
      throw new BalancerError('CONFIG_IO', `cannot read ${this.options.file} to write the change back`, { cause: error });
    }
    // The YAML writer (~50 KB of code) is loaded by the first change, not at start: a node whose config is never
    // changed through the API never holds it in its heap.
    const { rewriteReplicatedSections } = await import('../config/write.js');
    const text = rewriteReplicatedSections(original, result.state.config);
    const current = validateConfigText(original, this.options.file);
    if (hasReplicatedSections(original) && (!current.ok || !sameReplicated(current.config, this.state.config))) {
      // The file holds an edit of routes or pools that does not serve (invalid, or not yet read by the watcher): keep it.
      let saved: string;
      try {
        saved = await this.setAside(original);
      } catch (error) {
        throw new BalancerError('CONFIG_IO', `cannot keep a copy of the unapplied edit in ${this.options.file}: the change was not applied`, { cause: error });
      }
      this.options.logger.warn('the config file held an edit that was never applied (invalid, or not yet read): saved it beside the file before writing the change into it', {
        file: this.options.file,
        saved,
      });
    }
    this.options.noteOwnWrite(text);
    try {
      await replaceFile(this.options.file, text);
    } catch (error) {
      throw new BalancerError('CONFIG_IO', `cannot write ${this.options.file}: the change was not applied`, { cause: error });
    }
    this.swap(result.state);
    const requestId = randomUUID();
    this.changes.record(historyEntry({ version: result.state.version, requestId, change: describeCommand(command), ...meta }, result.state.config));
    this.options.logger.info('config changed through the admin API', { command: command.type, version: result.state.version, requestId });
    return { version: result.state.version, requestId, ...(result.backend === undefined ? {} : { backend: result.backend }) };
  }

  /** Saves `text` beside the file as .rejected-<time>; returns the path. */
  private async setAside(text: string): Promise<string> {
    const saved = `${this.options.file}.rejected-${fileStamp(new Date())}`;
    await replaceFile(saved, text);
    return saved;
  }

  /** Puts the serving routes and pools back into `text` (the file as it is now) and writes it; failures are logged. */
  private async writeServing(text: string): Promise<void> {
    const { file, logger } = this.options;
    try {
      const { rewriteReplicatedSections } = await import('../config/write.js');
      const rewritten = rewriteReplicatedSections(text, this.state.config);
      this.options.noteOwnWrite(rewritten);
      await replaceFile(file, rewritten);
      logger.info('config file rewritten', { file, version: this.state.version });
    } catch (error) {
      logger.error('cannot rewrite the config file; it keeps the refused edit', { file, error: errorMessage(error) });
    }
  }

  private swap(state: ConfigState): void {
    this.state = state;
    this.options.dataPlane.apply(state.version, resolveReplicatedPaths(state.config, this.options.baseDir));
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function notClustered(): BalancerError {
  return new BalancerError('BAD_REQUEST', 'this node runs without a cluster section: membership commands need `cluster:` in the config');
}
