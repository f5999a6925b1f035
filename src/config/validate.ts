// The one validator: YAML/JSON text or plain values in, a deep-frozen typed config or every problem (with positions) out.

import { availableParallelism } from 'node:os';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type {
  BackendConfig,
  Config,
  DnsDiscoveryConfig,
  RateLimitConfig,
  HeaderRules,
  HealthCheckConfig,
  ListenerConfig,
  PoolConfig,
  ReplicatedConfig,
  RouteConfig,
  TlsListenerConfig,
} from './schema.js';
import { DEFAULTS, REPLICATED_KEYS, defaultHealthCheckTimeoutMs } from './schema.js';
import { expandEnvironment } from './env.js';
import { errorMessage } from '../errors.js';
import { isPlainObject } from '../json.js';
import {
  DecodeContext,
  INVALID,
  didYouMean,
  formatPath,
  type Path,
  type RawProblem,
  type Spec,
} from './spec.js';
import {
  POOL_NAME_PATTERN,
  backendSpec,
  defaultBackendId,
  fileSpec,
  poolSpec,
  replicatedSpec,
  type FileShape,
  type ListenerTlsShape,
  type DnsDiscoveryShape,
  type PoolShape,
  type RateLimitShape,
  type ReplicatedShape,
  type RouteShape,
} from './file-spec.js';

/** One thing wrong with a config. `message` starts with the dotted path; line and column are 1-based. */
export interface Problem {
  readonly path: string;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

export type ValidationResult<T> =
  | { readonly ok: true; readonly config: T; readonly document: Document | null }
  | { readonly ok: false; readonly problems: readonly Problem[] };

/** `FILE:LINE:COL: message`, or `FILE: message` when the problem has no position. */
export function formatProblem(file: string, problem: Problem): string {
  return problem.line === undefined
    ? `${file}: ${problem.message}`
    : `${file}:${problem.line}:${problem.column ?? 1}: ${problem.message}`;
}

// ---------------------------------------------------------------- entry points

/** What validateConfigText parsed: the document (local \${...} references expanded in it) and its plain value. */
export interface ParsedConfigText {
  readonly document: Document;
  readonly value: unknown;
}

/**
 * A whole config file: ${NAME} references in its local settings are expanded from the environment first. `parsed`,
 * when given, is told what was parsed (valid or not), for a caller that goes on working on the same text.
 */
export function validateConfigText(text: string, file: string, parsed?: (read: ParsedConfigText) => void): ValidationResult<Config> {
  return validateText(text, file, fileSpec, (shape) => buildConfig(shape as FileShape), (document) => expandEnvironment(document, REPLICATED_KEYS), parsed);
}

/** Plain values (already parsed); problems carry no positions. */
export function validateConfig(value: unknown): ValidationResult<Config> {
  return validateValue(value, null, null, fileSpec, (shape) => buildConfig(shape as FileShape));
}

/**
 * The admin API body and the Raft state machine's apply step: only routes and pools.
 * Deterministic: no filesystem, no clock, no environment, so every node reaches the same answer.
 */
export function validateReplicatedText(text: string, source: string): ValidationResult<ReplicatedConfig> {
  return validateText(text, source, replicatedSpec, (shape) => buildReplicated(shape as ReplicatedShape));
}

export function validateReplicated(value: unknown, source = 'replicated config'): ValidationResult<ReplicatedConfig> {
  void source;
  return validateValue(value, null, null, replicatedSpec, (shape) => buildReplicated(shape as ReplicatedShape));
}

// ---------------------------------------------------------------- text and positions

function validateText<T>(
  text: string,
  source: string,
  spec: Spec<unknown>,
  build: (shape: unknown) => T,
  prepare?: (document: Document) => readonly RawProblem[],
  parsed?: (read: ParsedConfigText) => void,
): ValidationResult<T> {
  void source;
  if (typeof text !== 'string') return failure([{ path: '', message: `expected text, got ${typeof text}` }]);
  const lineCounter = new LineCounter();
  let document: Document;
  let value: unknown;
  try {
    document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    if (document.errors.length > 0) {
      return failure(
        document.errors.map((error) => ({
          path: '',
          ...position(lineCounter, error.pos[0]),
          message: `invalid YAML: ${firstLine(error.message)}`,
        })),
      );
    }
    const prepared = prepare?.(document) ?? [];
    // Problems of the references themselves: the values they stand for cannot be checked until they are fixed.
    if (prepared.length > 0) return failure(prepared.map((problem) => toProblem(problem, document, lineCounter)));
    value = document.toJS({ maxAliasCount: 1000 });
    parsed?.({ document, value });
  } catch (error) {
    return failure([{ path: '', line: 1, column: 1, message: `invalid YAML: ${firstLine(errorMessage(error))}` }]);
  }
  return validateValue(value, document, lineCounter, spec, build);
}

function firstLine(message: string): string {
  return message.split('\n', 1)[0]!.trim();
}

function position(lineCounter: LineCounter, offset: number): { line: number; column: number } {
  const { line, col } = lineCounter.linePos(offset);
  return line === 0 ? { line: 1, column: offset + 1 } : { line, column: col };
}

function keyText(node: unknown): string {
  if (isScalar(node)) return String(node.value);
  return String(node);
}

/** The node a problem is about; a path that leads nowhere (a missing key) stops at the deepest node that exists. */
function locate(document: Document, path: Path, at: 'key' | 'value'): Node | null {
  let current: unknown = document.contents;
  let key: Node | null = null;
  for (const segment of path) {
    if (isAlias(current)) current = current.resolve(document);
    if (isMap(current)) {
      const pair = current.items.find((item) => keyText(item.key) === String(segment));
      if (pair === undefined) return (key ?? (current as Node)) as Node;
      key = isScalar(pair.key) || isMap(pair.key) || isSeq(pair.key) ? (pair.key as Node) : null;
      current = pair.value;
    } else if (isSeq(current) && typeof segment === 'number' && segment < current.items.length) {
      key = null;
      current = current.items[segment];
    } else {
      return (current as Node | null) ?? key;
    }
  }
  const valueNode = (current as Node | null) ?? null;
  if (at === 'key' && key !== null) return key;
  return valueNode?.range ? valueNode : key ?? valueNode;
}

/**
 * A problem found after validation (a missing tokenFile, say), positioned in the text the document was parsed from.
 * `path` is the same segment list the validator uses, e.g. ['admin', 'tokenFile'].
 */
export function problemAt(document: Document, text: string, path: Path, message: string, at: 'key' | 'value' = 'value'): Problem {
  const lineCounter = new LineCounter();
  lineCounter.addNewLine(0);
  for (let index = text.indexOf('\n'); index !== -1; index = text.indexOf('\n', index + 1)) lineCounter.addNewLine(index + 1);
  return toProblem({ path, at, message }, document, lineCounter);
}

function toProblem(raw: RawProblem, document: Document | null, lineCounter: LineCounter | null): Problem {
  const path = formatPath(raw.path);
  const message = path === '' ? raw.message : `${path}: ${raw.message}`;
  if (document === null || lineCounter === null) return { path, message };
  const node = locate(document, raw.path, raw.at);
  const offset = node?.range?.[0] ?? document.contents?.range?.[0] ?? 0;
  return { path, ...position(lineCounter, offset), message };
}

function failure(problems: readonly Problem[]): { ok: false; problems: readonly Problem[] } {
  return { ok: false, problems };
}

function validateValue<T>(
  value: unknown,
  document: Document | null,
  lineCounter: LineCounter | null,
  spec: Spec<unknown>,
  build: (shape: unknown) => T,
): ValidationResult<T> {
  const ctx = new DecodeContext();
  let config: T | undefined;
  try {
    // An empty file is an empty mapping: every default, no pools.
    const input = value === null || value === undefined ? {} : value;
    const shape = spec.decode(input, [], ctx);
    checkRouting(input, ctx);
    if (shape !== INVALID && ctx.problems.length === 0) config = build(shape);
  } catch (error) {
    // Only a bug can get here (or a hostile value passed from code); the caller still gets an answer, not a crash.
    ctx.report([], `could not be validated: ${errorMessage(error)}`);
  }
  if (ctx.problems.length > 0 || config === undefined) {
    const problems = ctx.problems.map((raw) => toProblem(raw, document, lineCounter));
    problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
    return failure(problems);
  }
  return { ok: true, config: deepFreeze(config), document };
}

// ---------------------------------------------------------------- rules across sections

/** Runs on the raw value, so a route to a missing pool is reported even when that pool has other problems. */
function checkRouting(input: unknown, ctx: DecodeContext): void {
  if (!isPlainObject(input)) return;
  const rawPools = input['pools'];
  if (rawPools !== undefined && !isPlainObject(rawPools)) return;
  const poolNames = rawPools === undefined ? [] : Object.keys(rawPools);
  const routes = input['routes'];
  if (Array.isArray(routes)) {
    routes.forEach((route: unknown, index) => {
      if (!isPlainObject(route)) return;
      const pool = route['pool'];
      if (typeof pool !== 'string' || !POOL_NAME_PATTERN.test(pool) || poolNames.includes(pool)) return;
      const known = poolNames.length === 0 ? ' (no pools are defined)' : didYouMean(pool, poolNames) || ` (pools: ${poolNames.join(', ')})`;
      ctx.report(['routes', index, 'pool'], `no pool named "${pool}"${known}`);
    });
  }
  const noRoutes = routes === undefined || (Array.isArray(routes) && routes.length === 0);
  if (noRoutes && poolNames.length > 1) {
    ctx.report(
      ['routes'],
      `there are ${poolNames.length} pools (${poolNames.join(', ')}) but no routes; add routes to say which requests go to which pool`,
    );
  }
}

// ---------------------------------------------------------------- building the typed config

function decodeDefaults<T>(spec: Spec<T>): T {
  const ctx = new DecodeContext();
  const value = spec.decode({}, [], ctx);
  if (value === INVALID) throw new Error(`defaults do not validate: ${ctx.problems.map((p) => p.message).join('; ')}`);
  return value;
}

const POOL_FIELDS = poolSpec.fields;
const OUTLIER_DEFAULTS = decodeDefaults(POOL_FIELDS.outlierDetection.spec);
const TIMEOUT_DEFAULTS = decodeDefaults(POOL_FIELDS.timeouts.spec);
const RETRY_BUDGET_DEFAULTS = decodeDefaults(POOL_FIELDS.retryBudget.spec);
const CIRCUIT_BREAKER_DEFAULTS = decodeDefaults(POOL_FIELDS.circuitBreaker.spec);
const EWMA_DEFAULTS = decodeDefaults(POOL_FIELDS.ewma.spec);
const CONNECTIONS_DEFAULTS = decodeDefaults(POOL_FIELDS.connections.spec);
const FILE_FIELDS = fileSpec.fields;
const ADMIN_DEFAULTS = decodeDefaults(FILE_FIELDS.admin.spec);
const LIMITS_DEFAULTS = decodeDefaults(FILE_FIELDS.limits.spec);
const LOG_DEFAULTS = decodeDefaults(FILE_FIELDS.log.spec);
const SHUTDOWN_DEFAULTS = decodeDefaults(FILE_FIELDS.shutdown.spec);

function buildHealthCheck(shape: NonNullable<PoolShape['healthCheck']>): HealthCheckConfig {
  return {
    path: shape.path ?? null,
    intervalMs: shape.interval,
    unhealthyIntervalMs: shape.unhealthyInterval ?? shape.interval,
    timeoutMs: shape.timeout ?? defaultHealthCheckTimeoutMs(shape.interval),
    rise: shape.rise,
    fall: shape.fall,
    expectedStatuses: shape.expectedStatuses.map(([low, high]) => [low, high] as const),
    host: shape.host ?? null,
    jitter: shape.jitter,
    grpc: shape.grpc === undefined ? null : { service: shape.grpc.service ?? '' },
    reuseConnection: shape.reuseConnection,
  };
}

function buildRateLimit(shape: RateLimitShape | undefined): RateLimitConfig | null {
  if (shape === undefined) return null;
  return {
    requestsPerSecond: shape.requestsPerSecond,
    burst: shape.burst ?? Math.max(1, Math.ceil(shape.requestsPerSecond)),
    by: shape.by,
    maxKeys: shape.maxKeys,
  };
}

function buildDnsDiscovery(shape: DnsDiscoveryShape | undefined): DnsDiscoveryConfig | null {
  if (shape === undefined) return null;
  return {
    name: shape.name ?? null,
    type: shape.type ?? 'A',
    // SRV records carry their ports; 0 stands for "from the record".
    port: shape.type === 'SRV' ? 0 : (shape.port ?? (shape.scheme === 'https' ? 443 : 80)),
    scheme: shape.scheme ?? 'http',
    intervalMs: shape.interval,
    servers: shape.servers === undefined ? null : [...shape.servers],
    drain: [...(shape.drain ?? [])],
  };
}

function buildPool(name: string, shape: PoolShape): PoolConfig {
  const outlier = shape.outlierDetection ?? OUTLIER_DEFAULTS;
  const timeouts = shape.timeouts ?? TIMEOUT_DEFAULTS;
  const budget = shape.retryBudget ?? RETRY_BUDGET_DEFAULTS;
  const breaker = shape.circuitBreaker ?? CIRCUIT_BREAKER_DEFAULTS;
  const ewma = shape.ewma ?? EWMA_DEFAULTS;
  const backends: BackendConfig[] = shape.backends.map((backend) => ({
    id: backend.id ?? defaultBackendId(backend.url),
    url: backend.url,
    weight: backend.weight,
    drain: backend.drain,
    backup: backend.backup,
  }));
  const sticky = shape.sticky;
  return {
    name,
    strategy: shape.strategy,
    protocol: shape.protocol,
    backends,
    hashOn: shape.hashOn ?? null,
    ringSize: shape.ringSize ?? DEFAULTS.ringSize,
    sticky:
      sticky === undefined
        ? null
        : { cookie: sticky.cookie, ttlMs: sticky.ttl ?? null, secure: sticky.secure, httpOnly: sticky.httpOnly, sameSite: sticky.sameSite ?? null },
    healthCheck: shape.healthCheck === undefined ? null : buildHealthCheck(shape.healthCheck),
    outlierDetection: {
      enabled: outlier.enabled,
      consecutiveGatewayFailures: outlier.consecutiveGatewayFailures,
      consecutive5xx: outlier.consecutive5xx,
      baseEjectionTimeMs: outlier.baseEjectionTime,
      maxEjectionTimeMs: outlier.maxEjectionTime,
      maxEjectionPercent: outlier.maxEjectionPercent,
      activeCheckUnejects: outlier.activeCheckUnejects,
    },
    timeouts: { connectMs: timeouts.connect, responseMs: timeouts.response, idleMs: timeouts.idle, tunnelMs: timeouts.tunnel },
    retries: shape.retries,
    retryBudget: { percent: budget.percent, minConcurrent: budget.minConcurrent },
    panicThresholdPercent: shape.panicThreshold,
    slowStartMs: shape.slowStart,
    ewma: { decayMs: ewma.decay, initialMs: ewma.initial },
    circuitBreaker: { maxRequestsPerBackend: breaker.maxRequestsPerBackend, maxPendingPerBackend: breaker.maxPendingPerBackend },
    connections: { max: (shape.connections ?? CONNECTIONS_DEFAULTS).max },
    tls: { ca: shape.tls?.ca ?? null, serverName: shape.tls?.serverName ?? null, cert: shape.tls?.cert ?? null, key: shape.tls?.key ?? null },
    rateLimit: buildRateLimit(shape.rateLimit),
    discovery: buildDnsDiscovery(shape.discovery?.dns),
  };
}

function buildRoute(shape: RouteShape): RouteConfig {
  const match = shape.match;
  return {
    name: shape.name ?? null,
    match: {
      host: match?.host ?? null,
      path: match?.path ?? null,
      pathPrefix: match?.pathPrefix ?? '/',
      pathPrefixSegments: match?.pathPrefixSegments ?? false,
      pathRegex: match?.pathRegex ?? null,
      methods: match?.methods === undefined ? null : [...match.methods],
      headers: match?.headers ?? [],
      query: { ...match?.query },
      listener: match?.listener ?? null,
    },
    pool: shape.pool ?? null,
    redirect:
      shape.redirect === undefined
        ? null
        : {
            scheme: shape.redirect.scheme ?? null,
            host: shape.redirect.host ?? null,
            port: shape.redirect.port ?? null,
            path: shape.redirect.path ?? null,
            stripQuery: shape.redirect.stripQuery,
            status: shape.redirect.status,
          },
    respond:
      shape.respond === undefined
        ? null
        : {
            status: shape.respond.status,
            body: shape.respond.body,
            contentType: shape.respond.contentType ?? (shape.respond.body === '' ? null : 'text/plain; charset=utf-8'),
          },
    rewrite:
      shape.rewrite === undefined
        ? null
        : {
            stripPrefix: shape.rewrite.stripPrefix ?? null,
            replacePrefix: shape.rewrite.replacePrefix === undefined ? null : { ...shape.rewrite.replacePrefix },
            pathRegex: shape.rewrite.pathRegex === undefined ? null : { ...shape.rewrite.pathRegex },
            host: shape.rewrite.host ?? null,
            hostFromBackend: shape.rewrite.hostFromBackend,
          },
    headers:
      shape.headers === undefined
        ? null
        : { request: buildHeaderRules(shape.headers.request), response: buildHeaderRules(shape.headers.response) },
    timeoutMs: shape.timeout ?? null,
    retries: shape.retries ?? null,
    retryOn: shape.retryOn === undefined ? null : [...shape.retryOn],
    maxBodySize: shape.maxBodySize,
    rateLimit: buildRateLimit(shape.rateLimit),
  };
}

function buildHeaderRules(shape: NonNullable<RouteShape['headers']>['request']): HeaderRules | null {
  if (shape === undefined) return null;
  const lower = (entries: Record<string, string>) => Object.entries(entries).map(([name, value]) => [name.toLowerCase(), value] as const);
  return { set: lower(shape.set ?? {}), add: lower(shape.add ?? {}), remove: [...(shape.remove ?? [])] };
}

function buildReplicated(shape: ReplicatedShape): ReplicatedConfig {
  const pools: Record<string, PoolConfig> = {};
  for (const [name, pool] of Object.entries(shape.pools)) {
    Object.defineProperty(pools, name, { value: buildPool(name, pool), enumerable: true, writable: true, configurable: true });
  }
  return { routes: shape.routes.map(buildRoute), pools };
}

function buildListenerTls(shape: ListenerTlsShape): TlsListenerConfig {
  const certificates = shape.certificates ?? [{ cert: shape.cert!, key: shape.key! }];
  return {
    certificates: certificates.map(({ cert, key }) => ({ cert, key })),
    minVersion: shape.minVersion,
    ciphers: shape.ciphers ?? null,
    clientCa: shape.clientCa ?? null,
    clientAuth: shape.clientAuth ?? 'none',
    clientCertHeader: shape.clientCertHeader?.toLowerCase() ?? null,
  };
}

/** The file's listeners, or the one listener that listen + tls describe. */
function buildListeners(shape: FileShape): ListenerConfig[] {
  if (shape.listeners === undefined) {
    const tls = shape.tls === undefined ? null : buildListenerTls(shape.tls);
    return [{ name: DEFAULTS.listenerName, listen: shape.listen ?? DEFAULTS.listen, tls, http2: true, h2c: false, redirectToHttps: false }];
  }
  return shape.listeners.map((listener) => ({
    name: listener.name,
    listen: listener.listen,
    tls: listener.tls === undefined ? null : buildListenerTls(listener.tls),
    http2: listener.http2,
    h2c: listener.h2c,
    redirectToHttps: listener.redirectToHttps,
  }));
}

function buildConfig(shape: FileShape): Config {
  const admin = shape.admin ?? ADMIN_DEFAULTS;
  const limits = shape.limits ?? LIMITS_DEFAULTS;
  const log = shape.log ?? LOG_DEFAULTS;
  const cluster = shape.cluster;
  return {
    listeners: buildListeners(shape),
    admin: { listen: admin.listen, token: admin.token ?? null, tokenFile: admin.tokenFile ?? null },
    cluster:
      cluster === undefined
        ? null
        : {
            nodeId: cluster.nodeId,
            listen: cluster.listen,
            dataDir: cluster.dataDir ?? `data/${cluster.nodeId}`,
            peers: { ...cluster.peers },
            secret: cluster.secret ?? null,
            secretFile: cluster.secretFile ?? null,
            electionTimeoutMs: cluster.electionTimeout,
            heartbeatIntervalMs: cluster.heartbeatInterval,
            historySize: cluster.historySize,
            ...(cluster.join === undefined ? {} : { join: cluster.join }),
            ...(cluster.snapshotEvery === undefined ? {} : { snapshotEvery: cluster.snapshotEvery }),
          },
    trustedProxies: [...shape.trustedProxies],
    limits: {
      maxConnections: limits.maxConnections,
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeoutMs: limits.headersTimeout,
      requestTimeoutMs: limits.requestTimeout,
      keepAliveTimeoutMs: limits.keepAliveTimeout,
      maxBodySize: limits.maxBodySize,
      rejectEncodedSlash: limits.rejectEncodedSlash,
      maxConnectionsPerIp: limits.maxConnectionsPerIp,
    },
    log: { level: log.level, access: log.access, accessFile: log.accessFile ?? null },
    workers: shape.workers === 'auto' ? availableParallelism() : shape.workers,
    shutdownDrainMs: (shape.shutdown ?? SHUTDOWN_DEFAULTS).drainTimeout,
    shutdownPreStopDelayMs: (shape.shutdown ?? SHUTDOWN_DEFAULTS).preStopDelay,
    ...buildReplicated(shape),
  };
}

/**
 * One backend of pool `name` validated on its own: `plainPool` is the pool's plain form with that backend alone in its
 * list. A pool validates each backend by itself but for duplicate ids and URLs, so when the result keeps `was`'s id and
 * URL and every other setting of the pool reads as in `pool`, it is what validating the whole pool would give for that
 * backend: with 1,000 backends, a one-backend edit costs one backend's validation. Null otherwise (validate the whole
 * pool, for its problems and their paths).
 */
export function validatedLoneBackend(name: string, plainPool: Record<string, unknown>, pool: PoolConfig, was: BackendConfig): BackendConfig | null {
  const result = validateReplicated({ routes: [], pools: { [name]: plainPool } });
  if (!result.ok) return null;
  const validated = result.config.pools[name]!;
  const [backend, ...others] = validated.backends;
  if (backend === undefined || others.length > 0 || backend.id !== was.id || backend.url !== was.url || poolSettingsJson(validated) !== poolSettingsJson(pool)) return null;
  return backend;
}

/**
 * `was` (a validated backend) with its weight and drain flag set to `patch`'s where given, when those values decode as the
 * backend spec decodes those fields. No rule of the spec reads a backend's weight or drain flag beside another field, a
 * pool setting or another backend, so this is what validating the whole pool would give for that backend, at the cost of
 * two leaves. Null when a value does not decode (validate the pool, for its problems and their paths).
 */
export function backendWithFlags(was: BackendConfig, patch: { readonly weight?: unknown; readonly drain?: unknown }): BackendConfig | null {
  const ctx = new DecodeContext();
  const { weight: weightField, drain: drainField } = backendSpec.fields;
  const weight = patch.weight === undefined ? was.weight : weightField.spec.decode(patch.weight, [], ctx);
  const drain = patch.drain === undefined ? was.drain : drainField.spec.decode(patch.drain, [], ctx);
  if (weight === INVALID || drain === INVALID || ctx.problems.length > 0) return null;
  return { ...was, weight, drain };
}

/** A validated pool's settings (all but its backends) as JSON, kept per pool object (validated pools are frozen). */
const settingsJsonOf = new WeakMap<PoolConfig, string>();

/**
 * The JSON of everything in `pool` but its backends. Validated configs are plain JSON data built in one key order,
 * so equal JSON means equal settings; node's isDeepStrictEqual on the same objects was half of a one-backend edit's
 * validation on a real node.
 */
function poolSettingsJson(pool: PoolConfig): string {
  let json = settingsJsonOf.get(pool);
  if (json === undefined) {
    json = JSON.stringify({ ...pool, backends: [] });
    if (Object.isFrozen(pool)) settingsJsonOf.set(pool, json);
  }
  return json;
}

/** Whether two configs route and balance alike; only routes and pools count, whatever else the objects carry. */
export function sameReplicated(a: ReplicatedConfig, b: ReplicatedConfig): boolean {
  // Configs one command apart share every part the command left alone (the reducer keeps them, down to the backends a
  // weight change did not touch): those are not serialised.
  const same = (x: unknown, y: unknown): boolean => x === y || JSON.stringify(x) === JSON.stringify(y);
  const samePool = (x: PoolConfig, y: PoolConfig): boolean =>
    x === y ||
    (x.backends.length === y.backends.length && x.backends.every((backend, index) => same(backend, y.backends[index])) && poolSettingsJson(x) === poolSettingsJson(y));
  if (!same(a.routes, b.routes)) return false;
  const names = Object.keys(a.pools);
  const others = Object.keys(b.pools);
  return names.length === others.length && names.every((name, index) => others[index] === name && samePool(a.pools[name]!, b.pools[name]!));
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
