// The Raft core's public surface, for the runtime driver and the cluster state machine.

export { RawNode, type BasicStatus } from './raw-node.js';
export {
  CAMPAIGN_TRANSFER,
  decodeConfChange,
  encodeConfChange,
  RAFT_DEFAULTS,
  type PeerProgress,
  type RaftConfig,
  type RaftLogger,
  type RaftStatus,
} from './raft.js';
export {
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  isStorageError,
  MemoryStorage,
  StorageError,
  type InitialState,
  type Storage,
  type StorageErrorKind,
} from './storage.js';
export { RequestDedupe, type DedupeSnapshot } from './dedupe.js';
export type * from './types.js';
