// The shared config reducer of both stores: every config edit is a command applied here, by the single-node store and by every Raft node's state machine alike.

import type { BackendConfig, PoolConfig, ReplicatedConfig } from '../config/schema.js';
import { backendWithFlags, deepFreeze, validateReplicated, type Problem } from '../config/validate.js';
import { toPlainBackend, toPlainPool } from '../config/plain.js';
import { FORCE_HINT, unsafeChangeMessage, unsafeChanges } from '../config/safety.js';
import type { BackendInput, BackendPatch } from './types.js';
import type { ErrorCode } from '../errors.js';

export interface ConfigState {
  /** 0 until the first config is applied; then the version (in a cluster, the log index) of the last change. */
  readonly version: number;
  readonly config: ReplicatedConfig;
}

/**
 * `refuseUnsafe: true` refuses the command when it would take traffic down (see config/safety.ts); every proposer sets
 * it unless the caller forces the change. Log entries written before the field existed carry none and apply as they
 * always did, so replaying an old log and restoring an old snapshot still agree.
 */
interface Guarded {
  readonly refuseUnsafe?: boolean;
}

/** The command field that makes the state machine refuse a change that would take traffic down, unless the caller forces it. */
export function guard(options: { readonly force?: boolean }): { refuseUnsafe?: true } {
  return options.force === true ? {} : { refuseUnsafe: true };
}

/** The command field saying the proposing node found the backend in DNS. */
export function discoveredHere(dataPlane: { isDiscovered(pool: string, id: string): boolean }, pool: string, id: string): { discovered?: true } {
  return dataPlane.isDiscovered(pool, id) ? { discovered: true } : {};
}

export type ConfigCommand =
  /** `config` is as proposed (a request body, a log entry from any version): apply validates it like any input. */
  | ({ readonly type: 'set-config'; readonly config: unknown; readonly expectedVersion?: number } & Guarded)
  | ({ readonly type: 'add-backend'; readonly pool: string; readonly backend: BackendInput } & Guarded)
  | ({
      readonly type: 'update-backend';
      readonly pool: string;
      readonly id: string;
      readonly patch: BackendPatch;
      /**
       * The node that proposed it found the backend in DNS (discovery.dns): it is in no config, so a drain is kept in
       * discovery.dns.drain. Set by the proposer, so every node applies the command alike.
       */
      readonly discovered?: true;
    } & Guarded)
  | ({ readonly type: 'remove-backend'; readonly pool: string; readonly id: string } & Guarded);

export interface CommandFailure {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: readonly Problem[];
}

export type CommandResult =
  | { readonly ok: true; readonly state: ConfigState; readonly backend?: { id: string; url: string; weight: number } }
  | { readonly ok: false; readonly error: CommandFailure };

export const EMPTY_CONFIG_STATE: ConfigState = Object.freeze({ version: 0, config: Object.freeze({ routes: [], pools: Object.freeze({}) }) });

function failure(code: ErrorCode, message: string, details: readonly Problem[] = []): CommandResult {
  return { ok: false, error: { code, message, details } };
}

type PlainPool = Record<string, unknown> & { backends?: unknown[] };

function validated(plain: unknown, version: number): CommandResult {
  const result = validateReplicated(plain);
  if (!result.ok) return failure('CONFIG_INVALID', `config rejected: ${result.problems.length} problem(s)`, result.problems);
  return { ok: true, state: { version, config: result.config } };
}

/** The plain form of one pool, as a fresh object an edit may change. */
function editablePool(pool: PoolConfig): PlainPool {
  const shared = toPlainPool(pool) as PlainPool;
  return { ...shared, backends: Array.isArray(shared.backends) ? [...shared.backends] : [] };
}

/**
 * A backend command changes one pool, and a pool validates on its own (routes only name pools, and no pool's meaning
 * depends on another's), so only that pool is validated again: with a 1,000-backend pool beside others, a weight change
 * no longer validates the whole config. Same problems, paths and result as validating the whole edited config.
 */
function validatedPoolEdit(state: ConfigState, pool: string, edited: PlainPool, version: number): CommandResult {
  const result = validateReplicated({ routes: [], pools: { [pool]: edited } });
  if (!result.ok) return failure('CONFIG_INVALID', `config rejected: ${result.problems.length} problem(s)`, result.problems);
  const config: ReplicatedConfig = { routes: state.config.routes, pools: { ...state.config.pools, [pool]: result.config.pools[pool]! } };
  return { ok: true, state: { version, config: deepFreeze(config) } };
}

/** The state with backend `index` of `pool` replaced by `backend` (validated), every other part kept as the object it was. */
function withBackend(state: ConfigState, pool: string, index: number, backend: BackendConfig, version: number): CommandResult {
  const poolConfig = state.config.pools[pool]!;
  const backends = [...poolConfig.backends];
  backends[index] = backend;
  const config: ReplicatedConfig = { routes: state.config.routes, pools: { ...state.config.pools, [pool]: { ...poolConfig, backends } } };
  return { ok: true, state: { version, config: deepFreeze(config) } };
}

/** Drains (or undrains) a backend found in DNS: its id goes in (or out of) the pool's discovery.dns.drain. */
function drainDiscovered(state: ConfigState, pool: string, id: string, patch: BackendPatch, version: number): CommandResult {
  if (patch.weight !== undefined) {
    return failure('CONFLICT', `backend "${id}" of pool "${pool}" was found in DNS: its weight comes from DNS (SRV records, else 1); only drain applies to it`);
  }
  if (patch.drain === undefined) return { ok: true, state: { version, config: state.config } };
  const edited = editablePool(state.config.pools[pool]!);
  const discovery = edited['discovery'] as { dns: Record<string, unknown> };
  const drained = new Set(Array.isArray(discovery.dns['drain']) ? (discovery.dns['drain'] as string[]) : []);
  if (patch.drain) drained.add(id);
  else drained.delete(id);
  const dns = { ...discovery.dns };
  if (drained.size > 0) dns['drain'] = [...drained].sort();
  else delete dns['drain'];
  edited['discovery'] = { ...discovery, dns };
  return validatedPoolEdit(state, pool, edited, version);
}

/** Applies one command; `version` is what the new state will carry (the log index in a cluster). Never throws. */
export function applyCommand(state: ConfigState, command: ConfigCommand, version: number): CommandResult {
  const result = reduce(state, command, version);
  if (!result.ok || command.refuseUnsafe !== true) return result;
  const reasons = unsafeChanges(state.version === 0 ? null : state.config, result.state.config);
  if (reasons.length === 0) return result;
  return failure(
    'UNSAFE_CHANGE',
    unsafeChangeMessage(reasons, FORCE_HINT.api),
    reasons.map((message) => ({ path: '', message })),
  );
}

function reduce(state: ConfigState, command: ConfigCommand, version: number): CommandResult {
  switch (command.type) {
    case 'set-config': {
      if (command.expectedVersion !== undefined && command.expectedVersion !== state.version) {
        return failure('VERSION_MISMATCH', `config is at version ${state.version}, not ${command.expectedVersion}`);
      }
      return validated(command.config, version);
    }
    case 'add-backend': {
      const pools = state.config.pools;
      const poolConfig = pools[command.pool];
      if (poolConfig === undefined) return failure('NOT_FOUND', `no pool named "${command.pool}"`);
      const edited = editablePool(poolConfig);
      const entry: Record<string, unknown> = { url: command.backend.url };
      if (command.backend.weight !== undefined) entry['weight'] = command.backend.weight;
      if (command.backend.id !== undefined) entry['id'] = command.backend.id;
      if (command.backend.backup !== undefined) entry['backup'] = command.backend.backup;
      edited.backends!.push(entry);
      const result = validatedPoolEdit(state, command.pool, edited, version);
      if (!result.ok) {
        const duplicate = result.error.details.some((problem) => /duplicate/i.test(problem.message));
        return duplicate ? failure('CONFLICT', result.error.details.map((p) => p.message).join('; '), result.error.details) : result;
      }
      const added = result.state.config.pools[command.pool]!.backends.at(-1)!;
      return { ok: true, state: result.state, backend: { id: added.id, url: added.url, weight: added.weight } };
    }
    case 'update-backend':
    case 'remove-backend': {
      const poolConfig = state.config.pools[command.pool];
      if (poolConfig === undefined) return failure('NOT_FOUND', `no pool named "${command.pool}"`);
      const index = poolConfig.backends.findIndex((backend) => backend.id === command.id);
      if (index === -1 && command.type === 'update-backend' && command.discovered === true && (poolConfig.discovery ?? null) !== null) {
        return drainDiscovered(state, command.pool, command.id, command.patch, version);
      }
      if (index === -1) {
        const hint = (poolConfig.discovery ?? null) === null ? '' : ' (backends found in DNS are not in the config: they come and go with DNS, and only drain applies to them)';
        return failure('NOT_FOUND', `pool "${command.pool}" has no backend "${command.id}"${hint}`);
      }
      if (command.type === 'update-backend') {
        // The usual weight or drain edit: two values checked, not a copy of the pool validated.
        const flagged = backendWithFlags(poolConfig.backends[index]!, command.patch);
        if (flagged !== null) return withBackend(state, command.pool, index, flagged, version);
        const backend = { ...toPlainBackend(poolConfig.backends[index]!) };
        // The id is pinned so that a weight or drain edit can never change the backend's identity.
        backend['id'] = command.id;
        if (command.patch.weight !== undefined) backend['weight'] = command.patch.weight;
        if (command.patch.drain !== undefined) backend['drain'] = command.patch.drain;
        // A value that does not decode: the pool is validated whole, for the problems and their paths.
        const edited = editablePool(poolConfig);
        edited.backends![index] = backend;
        return validatedPoolEdit(state, command.pool, edited, version);
      }
      const edited = editablePool(poolConfig);
      edited.backends!.splice(index, 1);
      return validatedPoolEdit(state, command.pool, edited, version);
    }
  }
}
