// Edits of the node's YAML file proposed to the cluster: a compare-and-set from the version the file showed, retried while there is no quorum, refused edits saved beside the file; and the seed of a fresh cluster.

import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { toPlainReplicated } from '../config/plain.js';
import { sameReplicated, validateConfigText, type ParsedConfigText } from '../config/validate.js';
import { FORCE_HINT, unsafeChangeMessage } from '../config/safety.js';
import { readFileEdit } from '../control/file-edit.js';
import type { ChangeMeta, ChangeSource } from '../control/history.js';
import type { ConfigCommand } from '../control/config-reducer.js';
import { errorMessage, isBalancerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/types.js';
import type { ConfigFileSync } from './config-file.js';
import type { Proposals } from './proposals.js';
import type { ConfigStateMachine } from './state-machine.js';

/**
 * `ignored`: the file is empty or has neither routes nor pools (being written, or damaged), so it is no edit;
 * `rejected`: it lost a race with another change; `unsafe`: it would take traffic down. Both of those are saved
 * beside the file as .rejected-<time> and the file is rewritten to the cluster's config.
 */
export type FileEditResult = 'applied' | 'unchanged' | 'ignored' | 'invalid' | 'rejected' | 'unsafe' | 'superseded' | 'failed';

export interface FileEditsOptions {
  readonly nodeId: string;
  readonly file: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly machine: ConfigStateMachine;
  readonly proposals: Proposals;
  /** Exists from the store's start on. */
  readonly fileSync: () => ConfigFileSync;
  readonly stopped: () => boolean;
  readonly editRetryInitialMs: number;
  readonly editRetryMaxMs: number;
  readonly editMaxAttempts: number;
}

export class FileEdits {
  private seeding = false;
  private editGeneration = 0;
  private readonly nodeId: string;
  private readonly machine: ConfigStateMachine;
  private readonly proposals: Proposals;

  constructor(private readonly options: FileEditsOptions) {
    this.nodeId = options.nodeId;
    this.machine = options.machine;
    this.proposals = options.proposals;
  }

  private get fileSync(): ConfigFileSync {
    return this.options.fileSync();
  }

  private get stopped(): boolean {
    return this.options.stopped();
  }

  private meta(source: ChangeSource): ChangeMeta {
    return { at: new Date().toISOString(), source };
  }

  /**
   * The file changed while this node was down: propose it like a live edit (a compare-and-set from the version
   * the file last showed), keeping the file as the operator left it until that settles. Committed, it reaches
   * every node; refused, it is saved as .rejected-<time>; either way the file then shows the cluster's config.
   */
  async proposeOfflineEdit(text: string): Promise<void> {
    this.options.logger.warn('the config file was edited while this node was stopped: proposing the edit to the cluster', {
      file: this.options.file,
      expectedVersion: this.fileSync.version,
    });
    try {
      await this.reloadFromText(text);
    } finally {
      this.fileSync.hold(false);
      if (!this.stopped && this.machine.version > 0) await this.fileSync.writeBack(this.machine.version, this.machine.state.config);
    }
  }

  /**
   * A YAML edit (the watcher, or SIGHUP): validate the whole file, and propose its routes and pools as a
   * compare-and-set from the version the file last showed. Resolves once the edit is settled: committed,
   * refused (saved beside the file as .rejected-<time>), invalid, or superseded by a newer edit.
   */
  async reloadFromText(text: string): Promise<FileEditResult> {
    const { file, logger, metrics } = this.options;
    const generation = ++this.editGeneration;
    const reading = readFileEdit(text, { file, logger, metrics, servingVersion: this.machine.version, instead: 'nothing was proposed' });
    if (reading.kind !== 'edit') return reading.kind;
    const edited = reading.config;
    if (sameReplicated(edited, this.machine.state.config) && this.machine.version > 0) {
      // The applied config, not the file's validation of it: the same meaning, sharing its parts with the next change.
      await this.fileSync.noteShown(this.machine.version, text, this.machine.state.config);
      return 'unchanged';
    }
    if (this.fileSync.isLastSynced(text)) {
      // The file shows the text it had when it last matched the cluster (put back after it was emptied, say):
      // no edit, but it may be behind the cluster if write-backs were skipped meanwhile.
      if (this.machine.version > this.fileSync.version) await this.fileSync.writeBack(this.machine.version, this.machine.state.config);
      return 'unchanged';
    }
    const expectedVersion = this.fileSync.version;
    // A file edit cannot be forced: whoever really means to empty a routed pool says so through the API or the CLI.
    const command: ConfigCommand = { type: 'set-config', config: toPlainReplicated(edited), expectedVersion, refuseUnsafe: true };
    const requestId = randomUUID();
    logger.info('config edit proposed from the file', { file, expectedVersion });
    let backoff = this.options.editRetryInitialMs;
    for (let attempt = 1; attempt <= this.options.editMaxAttempts; attempt++) {
      if (this.stopped) return 'superseded';
      try {
        const outcome = await this.proposals.submit(command, this.meta({ kind: 'file', node: this.nodeId, file }), requestId);
        metrics.configReload('success');
        logger.info('config edit committed', { file, version: outcome.version });
        return 'applied';
      } catch (error) {
        if (isBalancerError(error, 'VERSION_MISMATCH')) {
          metrics.configReload('failure');
          const saved = await this.fileSync.saveRejected(text);
          logger.warn('config edit rejected: the replicated config changed since the file was written; the edit was saved and the file rewritten', {
            file,
            saved,
            expectedVersion,
            currentVersion: this.machine.version,
          });
          await this.fileSync.writeBack(this.machine.version, this.machine.state.config);
          return 'rejected';
        }
        if (isBalancerError(error, 'UNSAFE_CHANGE')) {
          metrics.configReload('failure');
          const saved = await this.fileSync.saveRejected(text);
          const reasons = error.details.map((detail) => detail.message);
          logger.error(`config edit refused: ${unsafeChangeMessage(reasons, FORCE_HINT.file)}`, { file, saved, reasons, currentVersion: this.machine.version });
          await this.fileSync.writeBack(this.machine.version, this.machine.state.config);
          return 'unsafe';
        }
        if (!isBalancerError(error, 'NO_LEADER') && !isBalancerError(error, 'PROPOSAL_TIMEOUT')) {
          metrics.configReload('failure');
          logger.error('config edit failed', { file, error: errorMessage(error) });
          return 'failed';
        }
      }
      if (generation !== this.editGeneration || this.stopped) return 'superseded';
      logger.warn('config edit waiting for a quorum; it is not applied anywhere until committed', { file, attempt, retryInMs: backoff });
      await this.proposals.waitFor(() => this.stopped || generation !== this.editGeneration, backoff);
      if (generation !== this.editGeneration || this.stopped) return 'superseded';
      backoff = Math.min(backoff * 2, this.options.editRetryMaxMs);
    }
    return 'failed';
  }

  /** A fresh cluster's first leader proposes its own file's routes and pools; CAS on version 0 lets only one seed win. */
  async seedFromFile(): Promise<void> {
    if (this.seeding) return;
    this.seeding = true;
    const { file, logger } = this.options;
    try {
      const text = await readFile(file, 'utf8');
      let parsed: ParsedConfigText | undefined;
      const validated = validateConfigText(text, file, (found) => {
        parsed = found;
      });
      if (!validated.ok) {
        logger.error('cannot seed the cluster config: this node\'s file is invalid', { file, problems: validated.problems.length });
        return;
      }
      const config = toPlainReplicated({ routes: validated.config.routes, pools: validated.config.pools });
      const outcome = await this.proposals.submit({ type: 'set-config', config, expectedVersion: 0 }, this.meta({ kind: 'seed', node: this.nodeId, file }));
      // What the file shows is the seeded version; known as the applied config when that is still the newest (see above).
      const shown = this.machine.version === outcome.version ? this.machine.state.config : validated.config;
      await this.fileSync.noteShown(outcome.version, text, shown, parsed);
      logger.info('config seeded from the local file', { node: this.nodeId, file, version: outcome.version });
    } catch (error) {
      if (isBalancerError(error, 'VERSION_MISMATCH')) {
        logger.debug('another node seeded the config first', { node: this.nodeId });
      } else {
        logger.warn('seeding the config from the local file failed; the next leader retries', { error: errorMessage(error) });
      }
    } finally {
      this.seeding = false;
    }
  }
}
