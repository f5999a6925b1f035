// A simulated node: RawNode plus the driver loop (persist, send, apply, advance) and its state machine.

import type { Random } from '../../clock.js';
import { decodeConfChange } from '../core/raft.js';
import { RawNode } from '../core/raw-node.js';
import { MemoryStorage } from '../core/storage.js';
import type { ConfState, Entry, Message, NodeId, ReadState, Ready } from '../core/types.js';
import { RegisterMachine, type RegisterResult } from './register.js';

export interface SimNodeOptions {
  readonly electionTick?: number;
  readonly heartbeatTick?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly maxEntriesPerMsg?: number;
  readonly maxInflightMsgs?: number;
  /** Snapshot and compact after this many applied entries; 0 disables. */
  readonly snapshotEvery?: number;
  /** Entries kept behind a snapshot so slightly lagging followers catch up without one. */
  readonly keepAfterSnapshot?: number;
}

export interface AppliedRecord {
  readonly entry: Entry;
  readonly result?: RegisterResult;
}

export class SimNode {
  readonly id: NodeId;
  /** The durable state: exactly what the driver persisted. A crash keeps this and nothing else. */
  readonly storage: MemoryStorage;
  readonly raw: RawNode;
  machine: RegisterMachine;
  appliedIndex: number;
  confState: ConfState;
  readStates: ReadState[] = [];
  private readonly options: SimNodeOptions;

  constructor(id: NodeId, storage: MemoryStorage, random: Random, options: SimNodeOptions, voters?: readonly NodeId[]) {
    this.id = id;
    this.storage = storage;
    this.options = options;
    const snapshot = storage.snapshot();
    this.machine = RegisterMachine.restore(snapshot.data);
    this.appliedIndex = snapshot.metadata.index;
    this.confState = snapshot.metadata.confState;
    this.raw = new RawNode(
      {
        id,
        ...(voters === undefined ? {} : { voters }),
        random,
        applied: this.appliedIndex,
        ...(options.electionTick === undefined ? {} : { electionTick: options.electionTick }),
        ...(options.heartbeatTick === undefined ? {} : { heartbeatTick: options.heartbeatTick }),
        ...(options.preVote === undefined ? {} : { preVote: options.preVote }),
        ...(options.checkQuorum === undefined ? {} : { checkQuorum: options.checkQuorum }),
        ...(options.maxEntriesPerMsg === undefined ? {} : { maxEntriesPerMsg: options.maxEntriesPerMsg }),
        ...(options.maxInflightMsgs === undefined ? {} : { maxInflightMsgs: options.maxInflightMsgs }),
      },
      storage,
    );
    this.confState = this.raw.status().confState;
  }

  /**
   * Carries out every pending Ready in the contract's order. Returns the messages to send and the
   * entries applied, for the simulator's checks.
   */
  drain(limit = 100): { messages: Message[]; applied: AppliedRecord[]; readies: Ready[] } {
    const messages: Message[] = [];
    const applied: AppliedRecord[] = [];
    const readies: Ready[] = [];
    for (let i = 0; i < limit && this.raw.hasReady(); i++) {
      const ready = this.raw.ready();
      readies.push(ready);
      if (ready.snapshot !== undefined) this.storage.applySnapshot(ready.snapshot);
      this.storage.append(ready.entries);
      if (ready.hardState !== undefined) this.storage.setHardState(ready.hardState);
      messages.push(...ready.messages);
      if (ready.snapshot !== undefined && ready.snapshot.metadata.index > this.appliedIndex) {
        this.machine = RegisterMachine.restore(ready.snapshot.data);
        this.appliedIndex = ready.snapshot.metadata.index;
        this.confState = ready.snapshot.metadata.confState;
      }
      for (const entry of ready.committedEntries) {
        if (entry.index <= this.appliedIndex) continue;
        if (entry.index !== this.appliedIndex + 1) {
          throw new Error(`${this.id} applied ${entry.index} after ${this.appliedIndex}: gap in committed entries`);
        }
        this.appliedIndex = entry.index;
        if (entry.type === 'conf-change') {
          this.confState = this.raw.applyConfChange(decodeConfChange(entry.data));
          applied.push({ entry });
        } else if (entry.type === 'normal') {
          applied.push({ entry, result: this.machine.apply(entry) });
        } else {
          applied.push({ entry });
        }
      }
      this.readStates.push(...ready.readStates);
      this.raw.advance();
      this.maybeSnapshot();
    }
    return { messages, applied, readies };
  }

  private maybeSnapshot(): void {
    const every = this.options.snapshotEvery ?? 0;
    if (every <= 0) return;
    const snapIndex = this.storage.snapshot().metadata.index;
    if (this.appliedIndex - snapIndex < every) return;
    this.storage.createSnapshot(this.appliedIndex, this.confState, this.machine.serialize());
    const keep = this.options.keepAfterSnapshot ?? 5;
    const compactTo = this.appliedIndex - keep;
    if (compactTo > this.storage.firstIndex() - 1) this.storage.compact(compactTo);
  }

  /** The persisted log, for invariant checks. */
  log(): Entry[] {
    return this.storage.entries(this.storage.firstIndex(), this.storage.lastIndex() + 1);
  }
}
