// The file-shaped JSON form of routes and pools (defaults left out): what GET /api/v1/config returns and Raft commands carry.

import {
  DEFAULTS,
  defaultHealthCheckTimeoutMs,
  type BackendConfig,
  type DnsDiscoveryConfig,
  type HeaderRules,
  type HealthCheckConfig,
  type PoolConfig,
  type RateLimitConfig,
  type ReplicatedConfig,
  type RouteConfig,
} from './schema.js';
import { defaultBackendId, expectedStatusesSpec, hashOnSpec, headerMatchSpec, rateLimitKeySpec } from './file-spec.js';
import { formatDuration, formatSize, type JsonValue } from './spec.js';
import { deepFreeze } from './validate.js';

export type PlainObject = { [key: string]: JsonValue };

export interface PlainReplicated {
  readonly routes: readonly PlainObject[];
  readonly pools: { readonly [name: string]: PlainObject };
}

/** Sets key only when value differs from the default it would get anyway, so the output reads like a hand-written file. */
function setUnlessDefault(target: PlainObject, key: string, value: JsonValue, defaultValue: JsonValue): void {
  if (value !== defaultValue) target[key] = value;
}

function durationUnlessDefault(target: PlainObject, key: string, ms: number, defaultMs: number): void {
  if (ms !== defaultMs) target[key] = formatDuration(ms);
}

/**
 * Plain forms of validated (frozen) backends, by backend object. Configs one command apart share every backend the
 * command left alone, and the plain form of the whole config is built several times per change (history, the file
 * rewrite's target and what the file reads as): with 1,000 backends that was O(config) work per weight change. The
 * forms are frozen too, so a consumer that changed one would throw instead of changing it for everyone.
 */
const plainBackends = new WeakMap<BackendConfig, PlainObject>();

/** One backend's plain form: what a pool's `backends` list holds for it. Frozen when `backend` is (copy it to edit). */
export function toPlainBackend(backend: BackendConfig): PlainObject {
  const known = plainBackends.get(backend);
  if (known !== undefined) return known;
  const out: PlainObject = { url: backend.url };
  setUnlessDefault(out, 'weight', backend.weight, DEFAULTS.weight);
  setUnlessDefault(out, 'id', backend.id, defaultBackendId(backend.url));
  setUnlessDefault(out, 'drain', backend.drain, false);
  setUnlessDefault(out, 'backup', backend.backup, false);
  if (Object.isFrozen(backend)) plainBackends.set(backend, Object.freeze(out));
  return out;
}

const DEFAULT_STATUSES = JSON.stringify(expectedStatusesSpec.encode(DEFAULTS.healthCheck.expectedStatuses));

function plainHealthCheck(check: HealthCheckConfig): PlainObject {
  const out: PlainObject = {};
  if (check.path !== null) out['path'] = check.path;
  durationUnlessDefault(out, 'interval', check.intervalMs, DEFAULTS.healthCheck.intervalMs);
  durationUnlessDefault(out, 'unhealthyInterval', check.unhealthyIntervalMs, check.intervalMs);
  durationUnlessDefault(out, 'timeout', check.timeoutMs, defaultHealthCheckTimeoutMs(check.intervalMs));
  setUnlessDefault(out, 'rise', check.rise, DEFAULTS.healthCheck.rise);
  setUnlessDefault(out, 'fall', check.fall, DEFAULTS.healthCheck.fall);
  const statuses = expectedStatusesSpec.encode(check.expectedStatuses);
  if (JSON.stringify(statuses) !== DEFAULT_STATUSES) out['expectedStatuses'] = statuses;
  if (check.host !== null) out['host'] = check.host;
  setUnlessDefault(out, 'jitter', check.jitter, DEFAULTS.healthCheck.jitter);
  if (check.grpc !== null) out['grpc'] = check.grpc.service === '' ? {} : { service: check.grpc.service };
  setUnlessDefault(out, 'reuseConnection', check.reuseConnection, DEFAULTS.healthCheck.reuseConnection);
  return out;
}

function nonEmpty(target: PlainObject, key: string, section: PlainObject): void {
  if (Object.keys(section).length > 0) target[key] = section;
}

function plainRateLimit(limit: RateLimitConfig): PlainObject {
  const out: PlainObject = { requestsPerSecond: limit.requestsPerSecond };
  setUnlessDefault(out, 'burst', limit.burst, Math.max(1, Math.ceil(limit.requestsPerSecond)));
  if (limit.by.kind !== 'sourceIp') out['by'] = rateLimitKeySpec.encode(limit.by);
  setUnlessDefault(out, 'maxKeys', limit.maxKeys, DEFAULTS.rateLimitMaxKeys);
  return out;
}

function plainDnsDiscovery(dns: DnsDiscoveryConfig): PlainObject {
  const out: PlainObject = {};
  if (dns.name !== null) out['name'] = dns.name;
  setUnlessDefault(out, 'type', dns.type, 'A');
  if (dns.type !== 'SRV') setUnlessDefault(out, 'port', dns.port, dns.scheme === 'https' ? 443 : 80);
  setUnlessDefault(out, 'scheme', dns.scheme, 'http');
  durationUnlessDefault(out, 'interval', dns.intervalMs, DEFAULTS.dnsIntervalMs);
  if (dns.servers !== null) out['servers'] = [...dns.servers];
  if (dns.drain.length > 0) out['drain'] = [...dns.drain];
  return out;
}

/**
 * Plain forms of validated (frozen) pools, by pool object, frozen through. A change leaves every other pool the object
 * it was, and the plain form of a config is built three times per change (history, the file rewrite's target and
 * what the file reads as): with 1,000 backends each build looked up every backend's form, ~0.4 ms warm and several ms
 * cold, for the same pool object each time.
 */
const plainPools = new WeakMap<PoolConfig, PlainObject>();

/** A pool's plain form; frozen (shared) when `pool` is: spread it to edit. */
export function toPlainPool(pool: PoolConfig): PlainObject {
  const known = plainPools.get(pool);
  if (known !== undefined) return known;
  const out = plainPoolOf(pool);
  if (Object.isFrozen(pool)) {
    // The backends' forms are frozen already (toPlainBackend): freezing their list whole spares a walk of every one.
    Object.freeze(out['backends']);
    plainPools.set(pool, deepFreeze(out));
  }
  return out;
}

function plainPoolOf(pool: PoolConfig): PlainObject {
  const out: PlainObject = {};
  setUnlessDefault(out, 'strategy', pool.strategy, DEFAULTS.strategy);
  // Backends a node found in DNS are its own, never part of the replicated form.
  out['backends'] = pool.backends.filter((backend) => backend.discovered !== true).map(toPlainBackend);
  if (pool.hashOn !== null) out['hashOn'] = hashOnSpec.encode(pool.hashOn);
  if (pool.strategy === 'ring-hash') setUnlessDefault(out, 'ringSize', pool.ringSize, DEFAULTS.ringSize);
  if (pool.sticky !== null) {
    const { cookie, ttlMs, secure, httpOnly, sameSite } = pool.sticky;
    const sticky: PlainObject = { cookie };
    if (ttlMs !== null) sticky['ttl'] = formatDuration(ttlMs);
    setUnlessDefault(sticky, 'secure', secure, false);
    setUnlessDefault(sticky, 'httpOnly', httpOnly, DEFAULTS.stickyHttpOnly);
    if (sameSite !== null) sticky['sameSite'] = sameSite;
    out['sticky'] = sticky;
  }
  if (pool.healthCheck !== null) out['healthCheck'] = plainHealthCheck(pool.healthCheck);

  const outlier: PlainObject = {};
  const od = pool.outlierDetection;
  const odDefaults = DEFAULTS.outlierDetection;
  setUnlessDefault(outlier, 'enabled', od.enabled, odDefaults.enabled);
  setUnlessDefault(outlier, 'consecutiveGatewayFailures', od.consecutiveGatewayFailures, odDefaults.consecutiveGatewayFailures);
  setUnlessDefault(outlier, 'consecutive5xx', od.consecutive5xx, odDefaults.consecutive5xx);
  durationUnlessDefault(outlier, 'baseEjectionTime', od.baseEjectionTimeMs, odDefaults.baseEjectionTimeMs);
  durationUnlessDefault(outlier, 'maxEjectionTime', od.maxEjectionTimeMs, odDefaults.maxEjectionTimeMs);
  setUnlessDefault(outlier, 'maxEjectionPercent', od.maxEjectionPercent, odDefaults.maxEjectionPercent);
  setUnlessDefault(outlier, 'activeCheckUnejects', od.activeCheckUnejects, odDefaults.activeCheckUnejects);
  nonEmpty(out, 'outlierDetection', outlier);

  const timeouts: PlainObject = {};
  durationUnlessDefault(timeouts, 'connect', pool.timeouts.connectMs, DEFAULTS.timeouts.connectMs);
  durationUnlessDefault(timeouts, 'response', pool.timeouts.responseMs, DEFAULTS.timeouts.responseMs);
  durationUnlessDefault(timeouts, 'idle', pool.timeouts.idleMs, DEFAULTS.timeouts.idleMs);
  durationUnlessDefault(timeouts, 'tunnel', pool.timeouts.tunnelMs, DEFAULTS.timeouts.tunnelMs);
  nonEmpty(out, 'timeouts', timeouts);

  setUnlessDefault(out, 'retries', pool.retries, DEFAULTS.retries);
  const budget: PlainObject = {};
  setUnlessDefault(budget, 'percent', pool.retryBudget.percent, DEFAULTS.retryBudgetPercent);
  setUnlessDefault(budget, 'minConcurrent', pool.retryBudget.minConcurrent, DEFAULTS.retryBudgetMinConcurrent);
  nonEmpty(out, 'retryBudget', budget);
  setUnlessDefault(out, 'panicThreshold', pool.panicThresholdPercent, DEFAULTS.panicThresholdPercent);
  durationUnlessDefault(out, 'slowStart', pool.slowStartMs, DEFAULTS.slowStartMs);
  const ewma: PlainObject = {};
  durationUnlessDefault(ewma, 'decay', pool.ewma.decayMs, DEFAULTS.ewma.decayMs);
  durationUnlessDefault(ewma, 'initial', pool.ewma.initialMs, DEFAULTS.ewma.initialMs);
  nonEmpty(out, 'ewma', ewma);

  const breaker: PlainObject = {};
  setUnlessDefault(breaker, 'maxRequestsPerBackend', pool.circuitBreaker.maxRequestsPerBackend, DEFAULTS.circuitBreaker.maxRequestsPerBackend);
  setUnlessDefault(breaker, 'maxPendingPerBackend', pool.circuitBreaker.maxPendingPerBackend, DEFAULTS.circuitBreaker.maxPendingPerBackend);
  nonEmpty(out, 'circuitBreaker', breaker);

  setUnlessDefault(out, 'protocol', pool.protocol, 'http1');
  const connections: PlainObject = {};
  setUnlessDefault(connections, 'max', pool.connections.max, DEFAULTS.connectionsMax);
  nonEmpty(out, 'connections', connections);

  const tls: PlainObject = {};
  if (pool.tls.ca !== null) tls['ca'] = pool.tls.ca;
  if (pool.tls.serverName !== null) tls['serverName'] = pool.tls.serverName;
  if (pool.tls.cert !== null) tls['cert'] = pool.tls.cert;
  if (pool.tls.key !== null) tls['key'] = pool.tls.key;
  nonEmpty(out, 'tls', tls);
  if ((pool.rateLimit ?? null) !== null) out['rateLimit'] = plainRateLimit(pool.rateLimit!);
  if ((pool.discovery ?? null) !== null) out['discovery'] = { dns: plainDnsDiscovery(pool.discovery!) };
  return out;
}

function plainHeaderRules(rules: HeaderRules): PlainObject {
  const out: PlainObject = {};
  if (rules.set.length > 0) out['set'] = Object.fromEntries(rules.set);
  if (rules.add.length > 0) out['add'] = Object.fromEntries(rules.add);
  if (rules.remove.length > 0) out['remove'] = [...rules.remove];
  return out;
}

export function toPlainRoute(route: RouteConfig): PlainObject {
  const match: PlainObject = {};
  if (route.match.host !== null) match['host'] = route.match.host;
  const given = route.match;
  if (given.path !== null) match['path'] = given.path;
  // pathPrefixSegments refuses to stand without a pathPrefix, even the default one.
  if (given.pathPrefix !== '/' || given.pathPrefixSegments) match['pathPrefix'] = given.pathPrefix;
  setUnlessDefault(match, 'pathPrefixSegments', given.pathPrefixSegments, false);
  if (given.pathRegex !== null) match['pathRegex'] = given.pathRegex;
  if (given.methods !== null) match['methods'] = [...given.methods];
  if (given.headers.length > 0) match['headers'] = headerMatchSpec.encode(given.headers);
  if (Object.keys(given.query).length > 0) match['query'] = { ...given.query };
  if (given.listener !== null) match['listener'] = given.listener;
  const out: PlainObject = {};
  if (route.name !== null) out['name'] = route.name;
  nonEmpty(out, 'match', match);
  if (route.pool !== null) out['pool'] = route.pool;
  if (route.redirect !== null) {
    const { scheme, host, port, path, stripQuery, status } = route.redirect;
    const redirect: PlainObject = {};
    if (scheme !== null) redirect['scheme'] = scheme;
    if (host !== null) redirect['host'] = host;
    if (port !== null) redirect['port'] = port;
    if (path !== null) redirect['path'] = path;
    setUnlessDefault(redirect, 'stripQuery', stripQuery, false);
    setUnlessDefault(redirect, 'status', status, DEFAULTS.redirectStatus);
    out['redirect'] = redirect;
  }
  if (route.respond !== null) {
    const { status, body, contentType } = route.respond;
    const respond: PlainObject = { status };
    if (body !== '') respond['body'] = body;
    // The default type is the one a body gets when none is named.
    if (contentType !== null && !(body !== '' && contentType === 'text/plain; charset=utf-8')) respond['contentType'] = contentType;
    out['respond'] = respond;
  }
  if (route.rewrite !== null) {
    const { stripPrefix, replacePrefix, pathRegex, host, hostFromBackend } = route.rewrite;
    const rewrite: PlainObject = {};
    if (stripPrefix !== null) rewrite['stripPrefix'] = stripPrefix;
    if (replacePrefix !== null) rewrite['replacePrefix'] = { ...replacePrefix };
    if (pathRegex !== null) rewrite['pathRegex'] = { ...pathRegex };
    if (host !== null) rewrite['host'] = host;
    setUnlessDefault(rewrite, 'hostFromBackend', hostFromBackend, false);
    out['rewrite'] = rewrite;
  }
  if (route.headers !== null) {
    const headers: PlainObject = {};
    if (route.headers.request !== null) headers['request'] = plainHeaderRules(route.headers.request);
    if (route.headers.response !== null) headers['response'] = plainHeaderRules(route.headers.response);
    out['headers'] = headers;
  }
  if (route.timeoutMs !== null) out['timeout'] = formatDuration(route.timeoutMs);
  if (route.retries !== null) out['retries'] = route.retries;
  if (route.retryOn !== null) out['retryOn'] = [...route.retryOn];
  if (route.maxBodySize !== 0) out['maxBodySize'] = formatSize(route.maxBodySize);
  if ((route.rateLimit ?? null) !== null) out['rateLimit'] = plainRateLimit(route.rateLimit!);
  return out;
}

/** validateReplicated(toPlainReplicated(x)) gives back x. */
export function toPlainReplicated(replicated: ReplicatedConfig): PlainReplicated {
  const pools: { [name: string]: PlainObject } = {};
  for (const [name, pool] of Object.entries(replicated.pools)) {
    Object.defineProperty(pools, name, { value: toPlainPool(pool), enumerable: true, writable: true, configurable: true });
  }
  return { routes: replicated.routes.map(toPlainRoute), pools };
}
