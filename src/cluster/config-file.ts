// Keeps a cluster node's own balancer.yaml in step with the replicated config: write-back, the version the file shows, kept and rejected copies.

/*
 * The file is the operator's view of the replicated config on this node. Applied configs are written
 * into it as the store hands them over (a burst's newest once: see ClusterStore.serveAppliedConfig; only
 * routes and pools change; comments and local sections stay), tmp + fsync +
 * rename, with the watcher told first so our write is not taken for an edit. `version` is the config
 * version the file last showed, written by us or read from it: a YAML edit is proposed as a
 * compare-and-set from that version, so an edit made on a stale view is refused instead of silently
 * undoing someone else's change.
 *
 * `<dataDir>/config-file.state` remembers that version and whether the node already kept a copy of
 * its own file, across restarts: a node whose file never matched the cluster keeps one copy of it
 * (`balancer.yaml.local-<time>`) before the first rewrite, never one per edit. It is a two-slot record
 * written in place (slot-record.ts): as crash-safe as a replace, at a fraction of its cost per change.
 * Older data dirs hold the same record as `config-file.json`, replaced whole; it is read when there is no
 * `.state` file yet and removed once the first `.state` record is durable.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDocument, type Document } from 'yaml';
import type { ReplicatedConfig } from '../config/schema.js';
import { hasReplicatedSections } from '../config/safety.js';
import { sameReplicated, validateConfigText, type ParsedConfigText } from '../config/validate.js';
import { rewriteReplicatedSectionsRead, type RoutesAndPoolsAsWritten } from '../config/write.js';
import { fileStamp, replaceFile } from '../atomic-write.js';
import { readSlotRecord, SlotRecordWriter } from '../slot-record.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

const FILE_STATE_NAME = 'config-file.state';
/** Where data dirs written before the two-slot record keep it. */
const LEGACY_FILE_STATE_NAME = 'config-file.json';

interface PersistedFileState {
  readonly version: number;
  /** sha256 of the text the file last had when it matched `version`. */
  readonly hash: string | null;
  /** sha256 of that text's routes and pools as written (parsed, not validated): tells an edit of them from one of the local sections. */
  readonly replicatedHash: string | null;
  readonly localCopy: string | null;
  /**
   * The text a write-back was about to put in the file (named before the file is replaced): if the file shows it at the
   * next start, the file is at `version`; if not, the replace never happened and the rest of the record holds.
   */
  readonly pending?: { readonly version: number; readonly hash: string; readonly replicatedHash: string | null };
}

export interface ConfigFileSyncOptions {
  readonly file: string;
  readonly dataDir: string;
  readonly logger: Logger;
  /** Tells the file watcher the text we are about to write. */
  readonly noteOwnWrite: (text: string) => void;
  readonly now?: () => Date;
}

function hashOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The routes and pools of a YAML text as parsed, valid or not; null when it does not parse. */
function replicatedHashOf(text: string): string | null {
  try {
    const document = parseDocument(text, { prettyErrors: false });
    if (document.errors.length > 0) return null;
    return writtenHashOf(writtenOfValue(document.toJS({ maxAliasCount: 1000 })));
  } catch {
    return null;
  }
}

/**
 * A validation's parse of `text`, kept for the rewrite that starts from it; none for a text with ${...}: its local
 * values are expanded in that document, and a rewrite that writes a one-line (flow) file out whole would put them in.
 */
function keptParse(text: string, parsed: ParsedConfigText): { text: string; document: Document; written: RoutesAndPoolsAsWritten } | undefined {
  return text.includes('${') ? undefined : { text, document: parsed.document, written: writtenOfValue(parsed.value) };
}

/** The routes and pools of a parsed file's plain value, as written. */
function writtenOfValue(value: unknown): RoutesAndPoolsAsWritten {
  const root = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  return { routes: root['routes'] ?? null, pools: root['pools'] ?? null };
}

function writtenHashOf(written: RoutesAndPoolsAsWritten): string {
  return hashOf(JSON.stringify({ routes: written.routes, pools: written.pools }));
}

/** A record as written by any version (missing or odd fields read as "never matched"); unparseable text reads as a first start. */
function parseFileState(text: string): PersistedFileState {
  let parsed: Partial<PersistedFileState> = {};
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === 'object' && value !== null) parsed = value as Partial<PersistedFileState>;
  } catch {
    // A torn older-format record: the file has never shown a cluster version, as far as this node can tell.
  }
  return {
    version: Number.isSafeInteger(parsed.version) ? parsed.version! : 0,
    hash: typeof parsed.hash === 'string' ? parsed.hash : null,
    replicatedHash: typeof parsed.replicatedHash === 'string' ? parsed.replicatedHash : null,
    localCopy: typeof parsed.localCopy === 'string' ? parsed.localCopy : null,
    ...pendingOf(parsed.pending),
  };
}

function pendingOf(value: unknown): Pick<PersistedFileState, 'pending'> {
  if (typeof value !== 'object' || value === null) return {};
  const { version, hash, replicatedHash } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(version) || typeof hash !== 'string' || (replicatedHash !== null && typeof replicatedHash !== 'string')) return {};
  return { pending: { version: version as number, hash, replicatedHash } };
}

/** The record without its pending write: that write's version if `text` (the file now) is the text it was writing. */
function settlePending(state: PersistedFileState, text: string | null): PersistedFileState {
  const { pending, ...rest } = state;
  if (pending === undefined || text === null || hashOf(text) !== pending.hash) return rest;
  return { ...rest, version: pending.version, hash: pending.hash, replicatedHash: pending.replicatedHash };
}

export class ConfigFileSync {
  private state: PersistedFileState = { version: 0, hash: null, replicatedHash: null, localCopy: null };
  /** The last text saved beside the file as .rejected-<time>, so a write-back right after does not save it twice. */
  private setAsideHash: string | null = null;
  /** File operations one at a time: each reads what the previous one wrote. */
  private queue: Promise<unknown> = Promise.resolve();
  /** While an edit made when the node was down is being proposed, the file must keep it: no write-back. */
  private held = false;
  /** The version a write-back last skipped because the file was empty, so that is said once per version. */
  private skippedEmpty = 0;
  /**
   * The replicated config of the text whose hash is state.hash, when this process knows it (it wrote or
   * validated that text): a write-back into an untouched file then needs no parse. Per-change CPU with 1,000
   * backends was dominated by parsing the same file five times. When the text was found to say what the cluster
   * applied, this is the applied config itself (not the file's own validation, equal in meaning): the next applied
   * config shares every part a one-backend edit left alone with it, so the rewrite compares references, not contents.
   */
  private synced: ReplicatedConfig | null = null;
  /**
   * The text whose hash is state.hash, once this process has seen it (recorded it): telling whether a text is that one
   * is then a string comparison. A sha256 costs its set-up each time (tens of µs, more than hashing a config file),
   * and a write-back asked it of the same text twice.
   */
  private syncedText: string | null = null;
  /**
   * A write-back still waiting in the queue with nothing queued behind it: a newer config takes its place instead of
   * queueing another rewrite, so a node that falls behind (a burst of changes, a busy machine) writes the newest config
   * once rather than every version in turn. The file only ever needs the newest.
   */
  private waitingWriteBack: {
    readonly target: { version: number; config: ReplicatedConfig };
    readonly done: Promise<boolean>;
    readonly queueAfter: Promise<unknown>;
  } | null = null;
  /** The parsed document of the text this node last wrote (or read and validated), which the next rewrite of that text starts from. */
  private lastWritten: { text: string; document: Document; written: RoutesAndPoolsAsWritten } | undefined;
  private readonly options: ConfigFileSyncOptions;
  private readonly stateRecord: SlotRecordWriter;
  /** The older data dir's record, still to be removed once the new one is durable. */
  private legacyStatePath: string | null;

  private constructor(options: ConfigFileSyncOptions, stateRecord: SlotRecordWriter, legacyStatePath: string | null) {
    this.options = options;
    this.stateRecord = stateRecord;
    this.legacyStatePath = legacyStatePath;
  }

  static async open(options: ConfigFileSyncOptions): Promise<ConfigFileSync> {
    const path = join(options.dataDir, FILE_STATE_NAME);
    const found = await readSlotRecord(path);
    let text: string | null = found.kind === 'record' ? found.text : null;
    let legacyStatePath: string | null = null;
    if (text === null) {
      if (found.kind === 'unreadable') options.logger.warn('the data dir\'s record of the config file cannot be read; reading the older record if there is one', { file: path, reason: found.reason });
      legacyStatePath = join(options.dataDir, LEGACY_FILE_STATE_NAME);
      text = await readFile(legacyStatePath, 'utf8').catch(() => null);
    }
    const sync = new ConfigFileSync(options, new SlotRecordWriter(path, found), legacyStatePath);
    if (text !== null) sync.state = parseFileState(text);
    if (sync.state.pending !== undefined) sync.state = settlePending(sync.state, await readFile(options.file, 'utf8').catch(() => null));
    return sync;
  }

  /** The config version the file last showed (0: never matched the cluster). */
  get version(): number {
    return this.state.version;
  }

  /**
   * An operator's edit made while the node was stopped: the file once matched the cluster (version > 0) and
   * its text is no longer what it was then. Without this check the first applied config would overwrite it.
   */
  isOfflineEdit(text: string): boolean {
    return this.state.version > 0 && !this.isLastSynced(text);
  }

  /** Holds write-back (true) while an offline edit is proposed; releasing it does not write by itself. */
  hold(held: boolean): void {
    this.held = held;
  }

  /** Whether `text` is exactly what the file held when it last matched the cluster (so not an operator's edit). */
  isLastSynced(text: string): boolean {
    if (this.syncedText !== null) return text === this.syncedText;
    return this.state.hash === hashOf(text);
  }

  /** What `text` reads as (its routes and pools), when it is the text this process last wrote or validated; else null. */
  knownReading(text: string): ReplicatedConfig | null {
    return this.synced !== null && this.isLastSynced(text) ? this.synced : null;
  }

  /** The file was read and its replicated part, `config`, equals `version`. */
  noteShown(version: number, text: string, config?: ReplicatedConfig, parsed?: ParsedConfigText): Promise<void> {
    return this.serialised(() => {
      const read = parsed === undefined ? undefined : keptParse(text, parsed);
      // The next rewrite starts from this parse instead of parsing the file again.
      if (read !== undefined && this.lastWritten?.text !== text) this.lastWritten = read;
      return this.record(version, text, { ...(config === undefined ? {} : { config }), ...(read === undefined ? {} : { written: read.written }) });
    });
  }

  /**
   * Writes `config` (at `version`) into the file unless it already says that. Returns false when the
   * file could not be rewritten (unreadable, or not YAML at all); that is logged, and the next apply retries.
   * A call made while an earlier one still waits its turn joins it: both resolve when the newer config is written.
   */
  writeBack(version: number, config: ReplicatedConfig): Promise<boolean> {
    const waiting = this.waitingWriteBack;
    if (waiting !== null && waiting.queueAfter === this.queue) {
      if (version >= waiting.target.version) {
        waiting.target.version = version;
        waiting.target.config = config;
      }
      return waiting.done;
    }
    const target = { version, config };
    const done = this.serialised(() => {
      if (this.waitingWriteBack?.target === target) this.waitingWriteBack = null;
      return this.writeBackNow(target.version, target.config);
    });
    this.waitingWriteBack = { target, done, queueAfter: this.queue };
    return done;
  }

  private async writeBackNow(version: number, config: ReplicatedConfig): Promise<boolean> {
    const { file, logger } = this.options;
    if (this.held) return false;
    let text: string;
    try {
      // Read in place, as the file watcher reads it: a config file is small, and going through the thread pool
      // (open, stat, read, close) cost more than the read itself.
      text = readFileSync(file, 'utf8');
    } catch (error) {
      logger.error('cannot read the config file to write the replicated config into it', { file, error: errorMessage(error) });
      return false;
    }
    const known = this.knownReading(text);
    let current = known;
    /** The validation's parse of `text`, for the rewrite and the record: each parsed the whole file again. */
    let read: { text: string; document: Document; written: RoutesAndPoolsAsWritten } | undefined;
    if (current === null) {
      let parsed: ParsedConfigText | undefined;
      const checked = validateConfigText(text, file, (found) => {
        parsed = found;
      });
      if (checked.ok) {
        current = checked.config;
        if (parsed !== undefined) read = keptParse(text, parsed);
      }
    }
    if (current !== null && sameReplicated(current, config)) {
      if (read !== undefined) this.lastWritten = read;
      // Known from now on as the applied config (the same meaning): see `synced`.
      await this.record(version, text, { config, ...(read === undefined ? {} : { written: read.written }) });
      return true;
    }
    // The text this node wrote or validated last is no truncated file; only another text needs the look.
    if (known === null && !hasReplicatedSections(text)) {
      // Emptied or cut short: writing routes and pools into it would make a file without this node's own
      // sections (cluster, admin, listen), which would start a different node. The operator restores it.
      if (this.skippedEmpty !== version) {
        logger.warn('not rewriting the config file: it is empty or has neither routes nor pools; this node serves the cluster config all the same', {
          file,
          version,
          hint: 'restore the file; its routes and pools are rewritten at the next change once it has them',
        });
      }
      this.skippedEmpty = version;
      return false;
    }
    if (this.state.version === 0 && this.state.localCopy === null && !this.isLastSynced(text)) {
      const copy = `${file}.local-${fileStamp(this.now())}`;
      await replaceFile(copy, text);
      this.state = { ...this.state, localCopy: copy };
      logger.warn('the cluster config differs from this node\'s file: kept a copy of the file before rewriting it', { file, copy, version });
    } else if (this.holdsUnappliedEdit(text)) {
      // An invalid edit, or one the watcher has not proposed yet: the rewrite would lose it.
      const saved = await this.setAside(text);
      logger.warn('this node\'s config file held an edit of routes or pools that was never applied (invalid, or not yet proposed): saved it beside the file before writing the cluster\'s config into it', {
        file,
        saved,
        version,
      });
    }
    let rewritten: string;
    let written: RoutesAndPoolsAsWritten;
    try {
      let document: Document;
      const last = this.lastWritten?.text === text ? this.lastWritten : read;
      const whatTextIs = { text, document: last?.document, written: last?.written, reads: current ?? undefined };
      ({ text: rewritten, written, document } = rewriteReplicatedSectionsRead(text, config, whatTextIs));
      this.lastWritten = { text: rewritten, document, written };
    } catch (error) {
      logger.error('cannot rewrite the config file; it keeps its current text', { file, version, error: errorMessage(error) });
      return false;
    }
    const hash = hashOf(rewritten);
    const replicatedHash = writtenHashOf(written);
    // Named in the record before the file holds it, durably: a node killed between the replace and the record after it
    // would otherwise find its own write at the next start and take it for an operator's edit made while it was down.
    // The record after the replace then needs no sync of its own: lost in an OS crash, this one stands in for it.
    await this.persist({ ...this.state, pending: { version, hash, replicatedHash } });
    this.options.noteOwnWrite(rewritten);
    try {
      await replaceFile(file, rewritten);
    } catch (error) {
      logger.error('cannot write the config file', { file, version, error: errorMessage(error) });
      return false;
    }
    await this.record(version, rewritten, { config, hash, replicatedHash }, { durable: false });
    logger.info('config file rewritten', { file, version });
    return true;
  }

  /** Saves a refused edit beside the file; returns its path. */
  saveRejected(text: string): Promise<string> {
    return this.serialised(() => this.setAside(text));
  }

  private async setAside(text: string): Promise<string> {
    const path = `${this.options.file}.rejected-${fileStamp(this.now())}`;
    await replaceFile(path, text);
    this.setAsideHash = hashOf(text);
    return path;
  }

  /**
   * Whether `text` carries a change of routes or pools that the file never showed as a cluster version: the
   * operator's edit, not yet (or never to be) applied. An edit of only the local sections is not one: the rewrite keeps those.
   */
  private holdsUnappliedEdit(text: string): boolean {
    if (this.state.version === 0 || this.isLastSynced(text) || this.setAsideHash === hashOf(text)) return false;
    const replicated = replicatedHashOf(text);
    // Unknown (an older data dir, or a text that does not parse): keep a copy rather than guess.
    return replicated === null || this.state.replicatedHash === null || replicated !== this.state.replicatedHash;
  }

  /** Resolves once every file operation queued so far has finished (stop waits on it). */
  idle(): Promise<void> {
    return this.queue.then(() => undefined);
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /** `known`: what the caller already parsed or hashed of `text`, so nothing is done twice. */
  private async record(
    version: number,
    text: string,
    known: { config?: ReplicatedConfig; written?: RoutesAndPoolsAsWritten; hash?: string; replicatedHash?: string } = {},
    options: { durable?: boolean } = {},
  ): Promise<void> {
    const sameText = this.isLastSynced(text);
    if (!sameText) this.synced = null;
    if (known.config !== undefined) this.synced = known.config;
    this.syncedText = text;
    if (this.state.version === version && sameText) return;
    // The same text as recorded (a newer version it already shows): its hashes are the ones recorded.
    const hash = sameText && this.state.hash !== null ? this.state.hash : (known.hash ?? hashOf(text));
    const replicatedHash =
      sameText && this.state.replicatedHash !== null
        ? this.state.replicatedHash
        : (known.replicatedHash ?? (known.written === undefined ? replicatedHashOf(text) : writtenHashOf(known.written)));
    this.state = { ...this.state, version, hash, replicatedHash };
    if (!(await this.persist(this.state, options))) return;
    if (this.legacyStatePath !== null) {
      const legacy = this.legacyStatePath;
      this.legacyStatePath = null;
      // Lost in a crash, it comes back, and is read only while the new record is missing or unreadable.
      await unlink(legacy).catch(() => undefined);
    }
  }

  /** Writes `state` as the data dir's record; false (logged) when it cannot be written. */
  private async persist(state: PersistedFileState, options: { durable?: boolean } = {}): Promise<boolean> {
    try {
      await this.stateRecord.write(JSON.stringify(state), options);
      return true;
    } catch (error) {
      this.options.logger.warn('cannot record the config file version in the data dir', { error: errorMessage(error) });
      return false;
    }
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
