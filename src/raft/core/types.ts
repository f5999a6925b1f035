// The Raft core's data types: log entries, persistent state, messages and the Ready batch the driver acts on.
// Everything here is plain JSON-serialisable data, so the runtime can persist and send it without translation.

export type NodeId = string;

/** `normal` carries an opaque state-machine command; `conf-change` carries a JSON ConfChange; `empty` is a leader's no-op. */
export type EntryType = 'normal' | 'conf-change' | 'empty';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Opaque to the core (JSON text for the state machine or a ConfChange). Empty string for no-ops. */
  readonly data: string;
  /**
   * Set when the proposer gave a request id: the state machine layer skips an entry whose id it has
   * already applied (see dedupe.ts), so a client retry that lands twice in the log takes effect once.
   */
  readonly requestId?: string;
}

export interface HardState {
  readonly term: number;
  readonly vote: NodeId | null;
  readonly commit: number;
}

export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export type ConfChangeType = 'add-voter' | 'add-learner' | 'remove';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  /** Where peers reach the node; opaque to the core, used by the runtime's transport. */
  readonly address?: string;
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The state machine's serialised state (opaque to the core). */
  readonly data: string;
}

export type MessageType =
  | 'MsgHup' // local: start an election
  | 'MsgBeat' // local: leader sends heartbeats
  | 'MsgProp' // proposal (local, or forwarded from a follower)
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp'
  | 'MsgSnapStatus'
  | 'MsgUnreachable';

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** Term of the entry at `index` (MsgApp: prevLogTerm; MsgVote: last log term). */
  readonly logTerm?: number;
  /** MsgApp: prevLogIndex; MsgAppResp: last index accepted, or rejected index; MsgVote: last log index. */
  readonly index?: number;
  readonly entries?: readonly Entry[];
  readonly commit?: number;
  readonly reject?: boolean;
  /** MsgAppResp rejection: a hint where the follower's log may match (fast backtracking). */
  readonly rejectHint?: number;
  readonly snapshot?: Snapshot;
  /** Opaque request context: ReadIndex request ids, heartbeat read contexts. */
  readonly context?: string;
  /**
   * MsgApp: a commit notice the leader needs no answer to (no entries, and the member acknowledged everything up to
   * `index` already); a member whose log matches takes the commit without acknowledging it. Nodes that do not know the
   * field answer as before.
   */
  readonly commitOnly?: boolean;
}

/** A linearizable read became safe: once appliedIndex >= index, reads answered for requestCtx are up to date. */
export interface ReadState {
  readonly index: number;
  readonly requestCtx: string;
}

export type RaftRole = 'follower' | 'candidate' | 'pre-candidate' | 'leader';

export interface SoftState {
  readonly leader: NodeId | null;
  readonly role: RaftRole;
}

/**
 * What the driver must do, in this order: persist `snapshot`, `entries` and `hardState` (fsync),
 * then send `messages`, then apply `committedEntries` (after `snapshot`), then call `advance()`.
 */
export interface Ready {
  readonly softState?: SoftState;
  /** True when entries, hardState or snapshot must reach disk (fsync) before any message is sent. */
  readonly mustSync?: boolean;
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
  readonly snapshot?: Snapshot;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
}
