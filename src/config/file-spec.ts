// What balancer.yaml may contain, section by section: the one description the validator, the JSON Schema and write-back share.

import {
  DEFAULTS,
  DNS_RECORD_TYPES,
  HASH_STRATEGIES,
  RETRY_CONDITIONS,
  SAME_SITE_VALUES,
  STRATEGY_NAMES,
  UPSTREAM_PROTOCOLS,
  type HashOn,
  type HeaderMatch,
  type LogLevelName,
  type RateLimitKey,
  type RedirectStatus,
  type UpstreamProtocol,
} from './schema.js';
import { captureGroupCount, unsafeRegexReason } from './route-regex.js';
import { normalizePath } from '../proxy/normalize-path.js';
import { HEADER_VARIABLES, UNSETTABLE_HEADERS, unknownVariables } from '../proxy/header-rules.js';
import {
  INVALID,
  boolean,
  describeValue,
  didYouMean,
  duration,
  formatDuration,
  formatPath,
  hostPort,
  integer,
  leaf,
  list,
  number,
  object,
  oneOf,
  optional,
  parseCidr,
  parseHostname,
  parseHostPort,
  record,
  required,
  size,
  string,
  withDefault,
  DecodeContext,
  type Infer,
  type Path,
  type JsonValue,
  type LeafSpec,
} from './spec.js';
import { splitHostPort } from '../net-address.js';
import { isIP } from 'node:net';

export const POOL_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;
export const LISTENER_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;
export const BACKEND_ID_PATTERN = /^[A-Za-z0-9_.:[\]-]+$/;
export const NODE_ID_PATTERN = /^[A-Za-z0-9_.-]+$/;
export const MAX_WEIGHT = 10_000;
/** The weight rule as every surface states it (config file, admin API, CLI): 0 is refused, draining is the way to stop traffic. */
export const WEIGHT_RULE = `must be a whole number from 1 to ${MAX_WEIGHT} (to stop sending to a backend, drain it)`;
export const MAX_RETRIES = 10;
export const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

// ---------------------------------------------------------------- special leaves

/**
 * Backend URLs seen lately and what they parse to. Every config change validates every backend of the config (twice
 * or more, with the file rewrite), and URL parsing was the largest part of that for a 1,000-backend pool. Bounded:
 * emptied when full.
 */
const backendUrlCache = new Map<string, { readonly value: string; readonly id: string } | { readonly error: string }>();
const BACKEND_URL_CACHE_SIZE = 20_000;

function cachedBackendUrl(input: string): { readonly value: string; readonly id: string } | { readonly error: string } {
  let parsed = backendUrlCache.get(input);
  if (parsed === undefined) {
    const origin = parseOrigin(input);
    parsed = 'error' in origin ? origin : { value: origin.value, id: idOfOrigin(origin.value) };
    if (backendUrlCache.size >= BACKEND_URL_CACHE_SIZE) backendUrlCache.clear();
    backendUrlCache.set(input, parsed);
  }
  return parsed;
}

/** A backend is an origin: scheme, host and port, nothing else. Stored as URL.origin (default ports dropped). */
export function parseBackendUrl(input: string): { value: string } | { error: string } {
  const parsed = cachedBackendUrl(input);
  return 'error' in parsed ? { error: parsed.error } : { value: parsed.value };
}

function parseOrigin(input: string): { value: string } | { error: string } {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { error: `must be an absolute http:// or https:// URL, got ${describeValue(input)}` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `must use http or https, got ${JSON.stringify(url.protocol.slice(0, -1))}` };
  }
  if (url.hostname === '') return { error: `must name a host, got ${describeValue(input)}` };
  if (url.username !== '' || url.password !== '') return { error: 'must not contain a user name or password' };
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(input)) {
    return { error: `must be an origin like http://10.0.0.5:8080, without path, query or fragment, got ${describeValue(input)}` };
  }
  return { value: url.origin };
}

/** `host:port` of an origin, with the scheme's default port spelled out: the id a backend gets when it names none. */
export function defaultBackendId(origin: string): string {
  const parsed = cachedBackendUrl(origin);
  return 'error' in parsed ? idOfOrigin(origin) : parsed.id;
}

function idOfOrigin(origin: string): string {
  const url = new URL(origin);
  return `${url.hostname}:${url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port}`;
}

function parseHostPattern(input: string): { value: string } | { error: string } {
  const wildcard = input.startsWith('*.');
  const parsed = parseHostname(wildcard ? input.slice(2) : input);
  if ('error' in parsed) return { error: `must be a host name like api.example.com or *.example.com, got ${describeValue(input)}` };
  return { value: wildcard ? `*.${parsed.value}` : parsed.value };
}

type StatusRanges = readonly (readonly [number, number])[];
const STATUS_RANGE_PATTERN = /^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$/;

function parseStatusEntry(value: unknown): readonly [number, number] | string {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 100 && value <= 599) return [value, value];
    return `must be an HTTP status from 100 to 599, got ${describeValue(value)}`;
  }
  if (typeof value === 'string') {
    const match = STATUS_RANGE_PATTERN.exec(value);
    if (match !== null) {
      const low = Number(match[1]);
      const high = match[2] === undefined ? low : Number(match[2]);
      if (low <= high) return [low, high];
      return `must be a range with the lower status first, got ${describeValue(value)}`;
    }
  }
  return `must be a status like 200, a range like "200-399", or a list of those, got ${describeValue(value)}`;
}

function encodeStatusEntry([low, high]: readonly [number, number]): JsonValue {
  return low === high ? low : `${low}-${high}`;
}

const statusEntrySchema = {
  anyOf: [
    { type: 'integer', minimum: 100, maximum: 599 },
    { type: 'string', pattern: STATUS_RANGE_PATTERN.source },
  ],
} as const;

export const expectedStatusesSpec: LeafSpec<StatusRanges> = leaf({
  description: 'Statuses that count as a passing check: 200, "200-399", or a list of those.',
  decode(value, path, ctx) {
    const entries = Array.isArray(value) ? (value as unknown[]) : [value];
    if (entries.length === 0) {
      ctx.report(path, 'must list at least one status');
      return INVALID;
    }
    const ranges: (readonly [number, number])[] = [];
    let ok = true;
    entries.forEach((entry, index) => {
      const parsed = parseStatusEntry(entry);
      if (typeof parsed === 'string') {
        ctx.report(Array.isArray(value) ? [...path, index] : path, parsed);
        ok = false;
      } else ranges.push(parsed);
    });
    return ok ? ranges : INVALID;
  },
  encode: (ranges) => (ranges.length === 1 ? encodeStatusEntry(ranges[0]!) : ranges.map(encodeStatusEntry)),
  schema: () => ({
    description: 'Statuses that count as a passing check: 200, "200-399", or a list of those.',
    anyOf: [statusEntrySchema, { type: 'array', minItems: 1, items: statusEntrySchema }],
  }),
});

const workers: LeafSpec<number | 'auto'> = leaf<number | 'auto'>({
  description: 'Data-plane worker processes: auto (one per CPU), or a number; 0 runs the data plane in the main process.',
  decode(value, path, ctx) {
    if (value === 'auto') return 'auto';
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= DEFAULTS.maxWorkers) return value;
    ctx.report(path, `must be auto or an integer from 0 to ${DEFAULTS.maxWorkers}, got ${describeValue(value)}`);
    return INVALID;
  },
  encode: (value) => value,
  schema: () => ({
    description: 'Data-plane worker processes: auto (one per CPU), or a number; 0 runs the data plane in the main process.',
    anyOf: [{ const: 'auto' }, { type: 'integer', minimum: 0, maximum: DEFAULTS.maxWorkers }],
  }),
});

function nonEmptyString(description: string): LeafSpec<string> {
  return string({ description });
}

// ---------------------------------------------------------------- replicated: pools and routes

const grpcHealthCheckSpec = object(
  {
    service: optional(
      string({
        minLength: 0,
        maxLength: 256,
        pattern: /^\S*$/,
        patternHint: 'must contain no spaces',
        description: 'The service asked about, e.g. my.package.Orders (default: empty, the server as a whole).',
      }),
    ),
  },
  {
    description:
      'Check with the gRPC health protocol (grpc.health.v1.Health/Check over HTTP/2) instead: a backend passes only when it answers SERVING. Needs protocol h2 or h2c; host sets :authority, expectedStatuses does not apply.',
  },
);

const healthCheckSpec = object(
  {
    path: optional(
      string({
        pattern: /^\/\S*$/,
        patternHint: 'must start with / and contain no spaces',
        description: 'HTTP path to GET; without it the check is a TCP connect.',
      }),
    ),
    interval: withDefault(duration({ min: 1, description: 'Time between checks of a healthy backend.' }), DEFAULTS.healthCheck.intervalMs as number),
    unhealthyInterval: optional(duration({ min: 1, description: 'Time between checks of a backend that is down (default: interval).' })),
    timeout: optional(duration({ min: 1, description: 'A check that takes longer fails; must be below interval (default: 1s, or half the interval when that is shorter).' })),
    rise: withDefault(integer(1, 100, 'Passing checks in a row that bring a backend up.'), DEFAULTS.healthCheck.rise as number),
    fall: withDefault(integer(1, 100, 'Failing checks in a row that take a backend down.'), DEFAULTS.healthCheck.fall as number),
    expectedStatuses: withDefault(expectedStatusesSpec, DEFAULTS.healthCheck.expectedStatuses as StatusRanges),
    host: optional(string({ parse: parseHostname, description: 'Host header for HTTP checks (default: the backend host:port).' })),
    jitter: withDefault(
      number({ min: 0, max: 1, integer: false, description: 'Fraction of the interval by which checks are randomly shifted.' }),
      DEFAULTS.healthCheck.jitter as number,
    ),
    grpc: optional(grpcHealthCheckSpec),
    reuseConnection: withDefault(
      boolean(
        'HTTP checks keep their connection open for the next check while they pass (as Envoy does); a failing status, an error or a timeout closes it, so the next check dials fresh. false: a new connection for every check (as HAProxy does), which also sees a backend that stops accepting connections. TCP and gRPC checks always dial.',
      ),
      DEFAULTS.healthCheck.reuseConnection as boolean,
    ),
  },
  {
    description: 'Active health checks; absent means none, {} means TCP connect checks with defaults.',
    check(value, path, ctx) {
      if (value.grpc !== undefined && value.path !== undefined) {
        ctx.report([...path, 'grpc'], 'set either path (an HTTP GET check) or grpc (a gRPC health check), not both');
      }
      if (value.timeout !== undefined && value.timeout >= value.interval) {
        ctx.report([...path, 'timeout'], `must be less than interval (${formatDuration(value.interval)}), got ${formatDuration(value.timeout)}`);
      }
    },
  },
);

const outlierDetectionSpec = object(
  {
    enabled: withDefault(boolean('Passive ejection of failing backends.'), DEFAULTS.outlierDetection.enabled as boolean),
    consecutiveGatewayFailures: withDefault(
      integer(0, 1000, 'Connect failures, resets and timeouts in a row that eject a backend; 0 disables.'),
      DEFAULTS.outlierDetection.consecutiveGatewayFailures as number,
    ),
    consecutive5xx: withDefault(integer(0, 1000, '5xx answers in a row that eject a backend; 0 disables.'), DEFAULTS.outlierDetection.consecutive5xx as number),
    baseEjectionTime: withDefault(duration({ min: 1, description: 'First ejection length; each further one is longer.' }), DEFAULTS.outlierDetection.baseEjectionTimeMs as number),
    maxEjectionTime: withDefault(duration({ min: 1, description: 'Longest ejection.' }), DEFAULTS.outlierDetection.maxEjectionTimeMs as number),
    maxEjectionPercent: withDefault(
      number({ min: 0, max: 100, integer: false, description: 'Most of the pool (percent) ejected at once; one backend may always be.' }),
      DEFAULTS.outlierDetection.maxEjectionPercent as number,
    ),
    activeCheckUnejects: withDefault(
      boolean(
        'A passing active health check ends an ejection early (Envoy\'s default). Set false when the health check can pass while live requests fail (a /healthz that does not touch what requests need): the backend then stays out for the whole ejection time.',
      ),
      DEFAULTS.outlierDetection.activeCheckUnejects as boolean,
    ),
  },
  {
    description: 'Passive health: eject backends that fail live requests.',
    check(value, path, ctx) {
      if (value.maxEjectionTime < value.baseEjectionTime) {
        ctx.report([...path, 'maxEjectionTime'], `must be at least baseEjectionTime (${formatDuration(value.baseEjectionTime)}), got ${formatDuration(value.maxEjectionTime)}`);
      }
    },
  },
);

const timeoutsSpec = object(
  {
    connect: withDefault(duration({ min: 1, description: 'TCP (and TLS) connect to a backend.' }), DEFAULTS.timeouts.connectMs as number),
    response: withDefault(duration({ min: 1, description: 'From request sent to response headers.' }), DEFAULTS.timeouts.responseMs as number),
    idle: withDefault(duration({ min: 1, description: 'No bytes either way once the exchange is under way.' }), DEFAULTS.timeouts.idleMs as number),
    tunnel: withDefault(
      duration({
        min: 1,
        description:
          'No bytes either way on a WebSocket (or other upgraded) connection: both sides are closed, within half this time again. Applies to tunnels opened after a change.',
      }),
      DEFAULTS.timeouts.tunnelMs as number,
    ),
  },
  { description: 'Upstream timeouts.' },
);

const ewmaSpec = object(
  {
    decay: withDefault(
      duration({ min: 1, description: 'Time constant of the latency average; a backend not measured for this long is probed with one request.' }),
      DEFAULTS.ewma.decayMs as number,
    ),
    initial: withDefault(duration({ description: 'Latency assumed for a backend with no measurement yet.' }), DEFAULTS.ewma.initialMs as number),
  },
  { description: 'The per-backend peak-EWMA latency (kept for every pool, shown in status and metrics; peak-ewma picks by it).' },
);

const retryBudgetSpec = object(
  {
    percent: withDefault(number({ min: 0, max: 100, integer: false, description: 'Retries may add at most this percent to active requests.' }), DEFAULTS.retryBudgetPercent as number),
    minConcurrent: withDefault(integer(0, 100_000, 'Retries always allowed concurrently, whatever the percent.'), DEFAULTS.retryBudgetMinConcurrent as number),
  },
  { description: 'Caps retries so they cannot multiply load during an outage.' },
);

const circuitBreakerSpec = object(
  {
    maxRequestsPerBackend: withDefault(integer(0, 1_000_000, 'Concurrent requests per backend; 0 means unlimited.'), DEFAULTS.circuitBreaker.maxRequestsPerBackend as number),
    maxPendingPerBackend: withDefault(integer(0, 1_000_000, 'Requests that may wait for a slot per backend; 0 means none wait.'), DEFAULTS.circuitBreaker.maxPendingPerBackend as number),
  },
  { description: 'Per-backend concurrency limits.' },
);

const connectionsSpec = object(
  {
    max: withDefault(
      integer(0, 1_000_000, 'Connections to each backend per process; 0 means no limit. An HTTP/1.1 connection carries one request at a time. With protocol h2 or h2c, requests share connections, with a body (every gRPC call) or without, up to 100 at a time on each (fewer if the backend says so); another opens only when every open one is full. Requests beyond that wait for a free connection, up to the connect timeout, and then get 503 without counting against the backend.'),
      DEFAULTS.connectionsMax as number,
    ),
  },
  { description: 'Connections balancer opens to each backend.' },
);

const upstreamTlsSpec = object(
  {
    ca: optional(nonEmptyString('PEM file of CAs to verify https backends against, relative to the config file (default: system CAs).')),
    serverName: optional(string({ parse: parseHostname, description: 'SNI and certificate name to expect (default: the host of the backend URL, with no SNI for an IP; never the client Host).' })),
    cert: optional(nonEmptyString('PEM file of the client certificate (chain) presented to https backends that ask for one (mutual TLS), relative to the config file; needs key. Re-read when it changes.')),
    key: optional(nonEmptyString('PEM file of the client certificate\'s private key, relative to the config file; needs cert.')),
  },
  {
    description: 'How https backends are verified (never unverified), and the client certificate balancer presents to them.',
    check(value, path, ctx) {
      if (value.cert !== undefined && value.key === undefined) ctx.report([...path, 'key'], 'is required with cert (the client certificate\'s private key)');
      if (value.key !== undefined && value.cert === undefined) ctx.report([...path, 'cert'], 'is required with key (the client certificate it belongs to)');
    },
  },
);

export const backendSpec = object(
  {
    url: required(string({ parse: parseBackendUrl, description: 'Origin of the backend: http(s)://host[:port], no path.' })),
    weight: withDefault(
      integer(1, MAX_WEIGHT, 'Relative share of traffic for weighted, least-request and peak-ewma, and of the keys for ring-hash and maglev.', WEIGHT_RULE),
      DEFAULTS.weight as number,
    ),
    id: optional(
      string({
        pattern: BACKEND_ID_PATTERN,
        patternHint: 'must contain only letters, digits and _ . : [ ] -',
        maxLength: 128,
        description: 'Stable name in metrics and the admin API (default: host:port of the url).',
      }),
    ),
    drain: withDefault(boolean('A draining backend gets no new requests; in-flight ones finish.'), false),
    backup: withDefault(
      boolean('A backup gets traffic only while no primary (non-backup) backend of the pool is up: before panic mode spreads traffic over the primaries that are down.'),
      false,
    ),
  },
  { description: 'One upstream server.' },
);

const backendsSpec = list(backendSpec, {
  description: 'The servers of this pool.',
  maxItems: 10_000,
  check(entries, path, ctx) {
    const ids = new Map<string, number>();
    const urls = new Map<string, number>();
    for (const { index, value } of entries) {
      const id = value.id ?? defaultBackendId(value.url);
      const idTaken = ids.get(id);
      if (idTaken !== undefined) {
        ctx.report([...path, index, ...(value.id === undefined ? ['url'] : ['id'])], `duplicate backend id "${id}" (also ${formatPath([...path, idTaken])}); give one of them an id`);
      } else ids.set(id, index);
      const urlTaken = urls.get(value.url);
      if (urlTaken !== undefined) {
        // The same id already explains this one; a second line would be noise.
        if (idTaken === undefined) ctx.report([...path, index, 'url'], `duplicate backend url ${value.url} (also ${formatPath([...path, urlTaken])})`);
      } else urls.set(value.url, index);
    }
  },
});

// ---------------------------------------------------------------- request values: what hashing strategies and sticky sessions read

const headerName = string({ pattern: HEADER_NAME_PATTERN, patternHint: 'must be an HTTP header name', parse: (value) => ({ value: value.toLowerCase() }) });
/** RFC 6265: a cookie name is an HTTP token, like a header name (but its case matters). */
const cookieName = string({ pattern: HEADER_NAME_PATTERN, maxLength: 256, patternHint: "must be a cookie name (letters, digits and !#$%&'*+.^_`|~-)" });
const queryName = string({ maxLength: 256 });

const HASH_ON_FORMS = 'sourceIp, {header: NAME}, {cookie: NAME} or {query: NAME}';
const hashOnMappingSpec = object(
  { header: optional(headerName), cookie: optional(cookieName), query: optional(queryName) },
  {
    check(value, path, ctx) {
      const given = [value.header, value.cookie, value.query].filter((item) => item !== undefined).length;
      if (given !== 1) ctx.report(path, `set exactly one of header, cookie and query (got ${given === 0 ? 'none' : 'more than one'}), or use sourceIp`);
    },
  },
);
const HASH_ON_DESCRIPTION =
  'The request value ring-hash and maglev hash: {header: NAME}, {cookie: NAME}, {query: NAME} (the first value when repeated), or sourceIp (the client address, read from X-Forwarded-For only past trustedProxies). A request without it gets a random backend.';

export const hashOnSpec: LeafSpec<HashOn> = leaf<HashOn>({
  description: HASH_ON_DESCRIPTION,
  decode(value, path, ctx) {
    if (value === 'sourceIp') return 'sourceIp';
    if (typeof value === 'string' || typeof value !== 'object' || value === null || Array.isArray(value)) {
      const hint = typeof value === 'string' ? didYouMean(value, ['sourceIp']) : '';
      ctx.report(path, `must be ${HASH_ON_FORMS}, got ${describeValue(value)}${hint}`);
      return INVALID;
    }
    const decoded = hashOnMappingSpec.decode(value, path, ctx);
    if (decoded === INVALID) return INVALID;
    if (decoded.header !== undefined) return { header: decoded.header };
    if (decoded.cookie !== undefined) return { cookie: decoded.cookie };
    return { query: decoded.query! };
  },
  encode: (value) => (value === 'sourceIp' ? 'sourceIp' : { ...value }),
  schema: () => ({
    description: HASH_ON_DESCRIPTION,
    anyOf: [
      { const: 'sourceIp' },
      object({ header: required(headerName) }).schema(),
      object({ cookie: required(cookieName) }).schema(),
      object({ query: required(queryName) }).schema(),
    ],
  }),
});

/** Envoy's largest ring: more points cost memory and build time on every config change. */
export const MAX_RING_POINTS = 8_388_608;

const stickySpec = object(
  {
    cookie: required(cookieName),
    ttl: optional(duration({ min: 1_000, description: "The cookie's lifetime (Max-Age), in whole seconds; without it the cookie lasts the browser session." })),
    secure: withDefault(boolean('Secure attribute: browsers send the cookie back only over HTTPS.'), false),
    httpOnly: withDefault(boolean('HttpOnly attribute: scripts in the page cannot read the cookie.'), DEFAULTS.stickyHttpOnly as boolean),
    sameSite: optional(oneOf(SAME_SITE_VALUES, 'SameSite attribute (default: none sent, which browsers treat as Lax).')),
  },
  {
    description:
      "Sticky sessions: the first answer sets a cookie naming its backend (an opaque hash of the backend id, never its address); requests that bring it back go to that backend while it is available, and to another one, with a new cookie, when it is not. Works with any strategy.",
    check(value, path, ctx) {
      if (value.ttl !== undefined && value.ttl % 1_000 !== 0) ctx.report([...path, 'ttl'], `must be whole seconds (cookies count Max-Age in seconds), got ${formatDuration(value.ttl)}`);
      if (value.sameSite === 'None' && !value.secure) ctx.report([...path, 'sameSite'], 'SameSite=None needs secure: true (browsers drop such a cookie without Secure)');
    },
  },
);

// ---------------------------------------------------------------- rate limits and discovery (pools and routes)

const rateLimitHeaderSpec = object(
  { header: required(headerName) },
  { description: 'The value of this request header names the client.' },
);

const RATE_LIMIT_KEY_DESCRIPTION =
  'Whose requests share a bucket: sourceIp (the client address, after trustedProxies), or {header: NAME} (its value; a request without the header counts as its client address).';

export const rateLimitKeySpec: LeafSpec<RateLimitKey> = leaf<RateLimitKey>({
  description: RATE_LIMIT_KEY_DESCRIPTION,
  decode(value, path, ctx) {
    if (value === 'sourceIp') return { kind: 'sourceIp' };
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const decoded = rateLimitHeaderSpec.decode(value, path, ctx);
      return decoded === INVALID ? INVALID : { kind: 'header', name: decoded.header };
    }
    ctx.report(path, `must be sourceIp or {header: NAME}, got ${describeValue(value)}`);
    return INVALID;
  },
  encode: (key) => (key.kind === 'sourceIp' ? 'sourceIp' : { header: key.name }),
  schema: () => ({ description: RATE_LIMIT_KEY_DESCRIPTION, anyOf: [{ const: 'sourceIp' }, rateLimitHeaderSpec.schema()] }),
});

export const rateLimitSpec = object(
  {
    requestsPerSecond: required(
      number({ min: 0.001, max: 1_000_000, integer: false, description: 'Requests per second each client may make on average (fractions allowed: 0.5 is one every two seconds).' }),
    ),
    burst: optional(integer(1, 1_000_000, 'Requests a client may make at once before the rate applies: the size of its bucket (default: requestsPerSecond, rounded up).')),
    by: withDefault(rateLimitKeySpec, { kind: 'sourceIp' } as RateLimitKey),
    maxKeys: withDefault(
      integer(1, 10_000_000, 'Clients remembered at once in each process; beyond it the least recently seen is forgotten (its bucket starts full again).'),
      DEFAULTS.rateLimitMaxKeys as number,
    ),
  },
  {
    description:
      'A token bucket per client: past it, requests get 429 with Retry-After and RateLimit-Limit/-Remaining/-Reset. Counted in each process: with workers, or several nodes, a client can get that many times the rate (see docs/operations.md).',
  },
);

/** A DNS server to ask: an IP address with a port (a name would need a DNS server to find it). */
function parseDnsServer(input: string): { value: string } | { error: string } {
  const parsed = parseHostPort(input, false);
  if ('error' in parsed) return { error: `must be ip:port or [ipv6]:port of a DNS server, got ${describeValue(input)}` };
  const { host } = splitHostPort(input);
  if (isIP(host) === 0) return { error: `must be the IP address of a DNS server (with its port), not a name, got ${describeValue(input)}` };
  return parsed;
}

function parseDnsName(input: string): { value: string } | { error: string } {
  const name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (isIP(name) !== 0) return { error: `must be a DNS name, not an address (list addresses as backends), got ${describeValue(input)}` };
  const parsed = parseHostname(name);
  if ('error' in parsed && /^_/.test(name)) {
    // SRV names start with _service._proto.
    const labels = name.toLowerCase().split('.');
    if (labels.length > 2 && labels.every((label, index) => (index < 2 ? /^_[a-z0-9-]{1,62}$/ : /^(?!-)[a-z0-9-]{1,63}(?<!-)$/).test(label))) return { value: labels.join('.') };
  }
  return 'error' in parsed ? { error: `must be a DNS name like api.internal or _http._tcp.api.internal, got ${describeValue(input)}` } : parsed;
}

const dnsDiscoverySpec = object(
  {
    name: optional(
      string({
        parse: parseDnsName,
        description: 'The name to resolve: each address (A, AAAA) or each target (SRV) becomes a backend. Without it, nothing is discovered and the other keys say how the host names of backend URLs are resolved.',
      }),
    ),
    type: optional(oneOf(DNS_RECORD_TYPES, 'A (the default), AAAA, or SRV (whose records give ports and weights).')),
    port: optional(integer(1, 65535, 'Port of the backends for A and AAAA (default: 80, or 443 with scheme https); SRV records carry their own.')),
    scheme: optional(oneOf(['http', 'https'] as const, 'How the discovered backends are spoken to: http (the default) or https (verified against tls.serverName, else the name).')),
    interval: withDefault(
      duration({ min: DEFAULTS.dnsMinIntervalMs, description: 'Longest time between lookups (a shorter TTL in the answer makes the next one sooner); also how often the names of static backend URLs are resolved again.' }),
      DEFAULTS.dnsIntervalMs as number,
    ),
    servers: optional(
      list(string({ parse: parseDnsServer }), {
        description: 'DNS servers to ask (ip:port), instead of the system\'s resolver; they resolve static backend URLs of the pool too.',
        maxItems: 16,
        check: (entries, path, ctx) => {
          if (entries.length === 0 && !ctx.problems.some((problem) => formatPath(problem.path).startsWith(formatPath(path)))) ctx.report(path, 'must list at least one server (leave servers out for the system resolver)');
        },
      }),
    ),
    drain: optional(
      list(string({ pattern: BACKEND_ID_PATTERN, patternHint: 'must be a backend id (host:port)' }), {
        description: 'Ids (address:port) of discovered backends that get no new requests while DNS still names them (`balancer backends drain` sets it).',
        maxItems: 10_000,
      }),
    ),
  },
  {
    description: 'Backends from DNS: each address a backend of its own (own health, metrics label address:port), added and removed as answers change; local to each node. A failed lookup keeps the last answer.',
    check(value, path, ctx) {
      if (value.type === 'SRV' && value.port !== undefined) ctx.report([...path, 'port'], 'SRV records carry the port of each target: leave port out');
      if (value.name === undefined) {
        for (const key of ['type', 'port', 'scheme', 'drain'] as const) {
          if (value[key] !== undefined) ctx.report([...path, key], 'applies to the backends found by name, which is not set');
        }
      } else if (value.type === 'SRV' && !value.name.startsWith('_')) {
        ctx.report([...path, 'name'], `an SRV name starts with _service._proto (like _http._tcp.${value.name}), got "${value.name}"`);
      }
    },
  },
);

/** hashOn and ringSize belong to the strategies that use them: a key the strategy would ignore is a mistake worth saying. */
function checkHashing(
  value: { readonly strategy: string; readonly hashOn: HashOn | undefined; readonly ringSize: number | undefined; readonly backends: readonly unknown[] },
  path: Path,
  ctx: DecodeContext,
): void {
  const hashes = (HASH_STRATEGIES as readonly string[]).includes(value.strategy);
  if (hashes && value.hashOn === undefined) ctx.report([...path, 'strategy'], `strategy ${value.strategy} picks by a hash of a request value: add hashOn: ${HASH_ON_FORMS}`);
  if (!hashes && value.hashOn !== undefined) ctx.report([...path, 'hashOn'], `hashOn is read only by strategies ${HASH_STRATEGIES.join(' and ')}; this pool's strategy is ${value.strategy}`, 'key');
  if (value.ringSize !== undefined && value.strategy !== 'ring-hash') {
    ctx.report([...path, 'ringSize'], `ringSize is read only by strategy ring-hash; this pool's strategy is ${value.strategy}`, 'key');
    return;
  }
  const ringSize = value.ringSize ?? DEFAULTS.ringSize;
  if (value.strategy === 'ring-hash' && ringSize * value.backends.length > MAX_RING_POINTS) {
    ctx.report(
      [...path, value.ringSize === undefined ? 'strategy' : 'ringSize'],
      `${ringSize} points for each of ${value.backends.length} backends exceed the ring's ${MAX_RING_POINTS} points; set ringSize to at most ${Math.floor(MAX_RING_POINTS / value.backends.length)}`,
    );
  }
}
const discoverySpec = object({ dns: required(dnsDiscoverySpec) }, { description: 'Where else this pool finds backends.' });

export const poolSpec = object(
  {
    strategy: withDefault(oneOf(STRATEGY_NAMES, 'How a backend is picked for each request.'), DEFAULTS.strategy),
    protocol: withDefault(
      oneOf(UPSTREAM_PROTOCOLS, 'How balancer talks to the backends: http1; h2, HTTP/2 over TLS (https backends); h2c, HTTP/2 without TLS by prior knowledge (http backends), as gRPC servers speak it.'),
      'http1' as UpstreamProtocol,
    ),
    backends: withDefault(backendsSpec, []),
    hashOn: optional(hashOnSpec),
    ringSize: optional(
      integer(1, 65_536, `Points on the ring for each backend of the pool's highest weight (lighter backends get proportionally fewer); more points spread keys more evenly (default ${DEFAULTS.ringSize}).`),
    ),
    sticky: optional(stickySpec),
    healthCheck: optional(healthCheckSpec),
    outlierDetection: optional(outlierDetectionSpec),
    timeouts: optional(timeoutsSpec),
    retries: withDefault(integer(0, MAX_RETRIES, 'Retries on another backend after a failure.'), DEFAULTS.retries as number),
    retryBudget: optional(retryBudgetSpec),
    panicThreshold: withDefault(
      number({ min: 0, max: 100, integer: false, description: 'Below this percent of healthy backends, traffic spreads over all of them.' }),
      DEFAULTS.panicThresholdPercent as number,
    ),
    slowStart: withDefault(duration({ description: 'A backend that comes up ramps its share of traffic over this time.' }), DEFAULTS.slowStartMs as number),
    ewma: optional(ewmaSpec),
    circuitBreaker: optional(circuitBreakerSpec),
    connections: optional(connectionsSpec),
    tls: optional(upstreamTlsSpec),
    rateLimit: optional(rateLimitSpec),
    discovery: optional(discoverySpec),
  },
  {
    description: 'A named group of backends.',
    check(value, path, ctx) {
      checkHashing(value, path, ctx);
      value.backends.forEach((backend, index) => {
        const https = backend.url.startsWith('https:');
        if (value.protocol === 'h2c' && https) ctx.report([...path, 'backends', index, 'url'], 'protocol h2c is HTTP/2 without TLS: use an http:// URL, or protocol h2 for https backends');
        if (value.protocol === 'h2' && !https) ctx.report([...path, 'backends', index, 'url'], 'protocol h2 is HTTP/2 over TLS: use an https:// URL, or protocol h2c for plain backends');
      });
      if (value.healthCheck?.grpc !== undefined && value.protocol === 'http1') {
        ctx.report([...path, 'healthCheck', 'grpc'], 'gRPC health checks speak HTTP/2: set the pool\'s protocol to h2c (http:// backends) or h2 (https:// backends)');
      }
      const dns = value.discovery?.dns;
      if (dns !== undefined) {
        if (value.protocol === 'h2c' && dns.scheme === 'https') ctx.report([...path, 'discovery', 'dns', 'scheme'], 'protocol h2c is HTTP/2 without TLS: use scheme http, or protocol h2');
        if (value.protocol === 'h2' && dns.name !== undefined && dns.scheme !== 'https') ctx.report([...path, 'discovery', 'dns', 'scheme'], 'protocol h2 is HTTP/2 over TLS: use scheme https, or protocol h2c');
        if (dns.type === 'SRV' && dns.scheme === 'https' && value.tls?.serverName === undefined) {
          ctx.report([...path, 'tls', 'serverName'], 'is required for https backends found by SRV: the name their certificates carry (an SRV name is not one)');
        }
      }
    },
  },
);

// ---------------------------------------------------------------- routes

export const ROUTE_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;
const METHOD_PATTERN = /^[A-Z][A-Z_-]*$/;

/** A list check: no entry twice, and not empty (unless its entries were refused, which is reported already). */
function distinctNonEmpty(noun: string, emptyMessage: string): (entries: readonly { readonly index: number; readonly value: string }[], path: Path, ctx: DecodeContext) => void {
  return (entries, path, ctx) => {
    const itemProblems = ctx.problems.some((problem) => problem.path.length > path.length && formatPath(problem.path).startsWith(formatPath(path)));
    if (entries.length === 0 && !itemProblems) ctx.report(path, emptyMessage);
    const seen = new Set<string>();
    for (const { index, value } of entries) {
      if (seen.has(value)) ctx.report([...path, index], `duplicate ${noun} ${value}`);
      seen.add(value);
    }
  };
}

function parseRouteRegex(value: string): { value: string } | { error: string } {
  const reason = unsafeRegexReason(value);
  return reason === null ? { value } : { error: reason };
}

/** A path a route compares against: requests are normalised first, so a path that is not normalised never matches. */
function parseRoutePath(value: string): { value: string } | { error: string } {
  const normalized = normalizePath(value, true);
  if ('error' in normalized) return { error: `must not contain ${normalized.detail}: request paths with an escaped slash are refused before routes match` };
  if (normalized.path !== value) {
    return { error: `would never match: request paths are normalised before routes see them (dot segments, doubled slashes, escapes), so write ${JSON.stringify(normalized.path)}` };
  }
  return { value };
}

/** A Host header value: a host name or IP, with an optional port. */
function parseHostHeader(value: string): { value: string } | { error: string } {
  const bad = { error: `must be a host name, optionally with a port (api.internal, api.internal:8080, [::1]:8080), got ${describeValue(value)}` };
  if (value.startsWith('[') || /:\d+$/.test(value)) return 'error' in parseHostPort(value, false) ? bad : { value: value.toLowerCase() };
  return 'error' in parseHostname(value) ? bad : { value: value.toLowerCase() };
}

function routePath(description: string): LeafSpec<string> {
  return string({ pattern: /^\/\S*$/, patternHint: 'must start with / and contain no spaces', parse: parseRoutePath, description });
}


const headerConditionSpec = object(
  {
    name: required(headerName),
    value: optional(string({ minLength: 0, description: 'Exact value.' })),
    regex: optional(string({ parse: parseRouteRegex, description: 'Pattern the whole value must match (RE2-style subset, anchored).' })),
    present: optional(boolean('true: the header is present with any value; false: it is absent.')),
  },
  {
    description: 'One header condition: exactly one of value, regex and present.',
    check(value, path, ctx) {
      const given = [value.value, value.regex, value.present].filter((item) => item !== undefined).length;
      if (given !== 1) ctx.report(path, `set exactly one of value, regex and present (got ${given === 0 ? 'none' : 'more than one'})`);
    },
  },
);
const headerConditionList = list(headerConditionSpec);
const headerValueMap = record(string({ minLength: 0 }), { keyPattern: HEADER_NAME_PATTERN, keyHint: 'must be an HTTP header name' });

export const headerMatchSpec: LeafSpec<readonly HeaderMatch[]> = leaf({
  description: 'Header conditions: {name: value} for exact values, or a list of {name, value | regex | present}.',
  decode(value, path, ctx) {
    if (Array.isArray(value)) {
      const decoded = headerConditionList.decode(value, path, ctx);
      if (decoded === INVALID) return INVALID;
      return decoded.map((item) => ({ name: item.name, value: item.value ?? null, regex: item.regex ?? null, present: item.present ?? null }));
    }
    const decoded = headerValueMap.decode(value, path, ctx);
    if (decoded === INVALID) return INVALID;
    return Object.entries(decoded).map(([name, exact]) => ({ name: name.toLowerCase(), value: exact, regex: null, present: null }));
  },
  encode(conditions) {
    if (conditions.every((item) => item.value !== null)) return Object.fromEntries(conditions.map((item) => [item.name, item.value!]));
    return conditions.map((item) => {
      const out: Record<string, JsonValue> = { name: item.name };
      if (item.value !== null) out['value'] = item.value;
      if (item.regex !== null) out['regex'] = item.regex;
      if (item.present !== null) out['present'] = item.present;
      return out;
    });
  },
  schema: () => ({
    description: 'Header conditions: {name: value} for exact values, or a list of {name, value | regex | present}.',
    anyOf: [headerValueMap.schema(), headerConditionList.schema()],
  }),
});

const matchSpec = object(
  {
    host: optional(string({ parse: parseHostPattern, description: 'Exact host, or *.example.com for any subdomain (default: any host).' })),
    path: optional(routePath('The exact request path (after normalisation).')),
    pathPrefix: optional(routePath('Request paths starting with this (default /: every path).')),
    pathPrefixSegments: withDefault(boolean('true: pathPrefix matches whole segments only (/api takes /api and /api/x, never /apiary).'), false),
    pathRegex: optional(
      string({
        parse: parseRouteRegex,
        description: 'Pattern the whole path must match, anchored; an RE2-style subset without backreferences, lookaround or nested repetition, so no request can make it backtrack for long.',
      }),
    ),
    methods: optional(
      list(string({ pattern: METHOD_PATTERN, patternHint: 'must be an upper-case HTTP method like GET' }), {
        description: 'Request methods this route takes (default: any).',
        check: distinctNonEmpty('method', 'must list at least one method (leave methods out to take any)'),
      }),
    ),
    headers: optional(headerMatchSpec),
    query: optional(
      record(string({ minLength: 0 }), {
        description: 'Query parameters that must be present with exactly these (decoded) values.',
        keyPattern: /^[^&=#]+$/,
        keyHint: 'must be a query parameter name',
      }),
    ),
    listener: optional(
      string({
        pattern: LISTENER_NAME_PATTERN,
        patternHint: 'must be a listener name (letters, digits and _ . -)',
        description: 'The listener the request arrived on (listeners[].name; the listen + tls form is named default). Listeners are local to each node: a name no node has matches nothing.',
      }),
    ),
  },
  {
    description: 'What requests this route takes; every condition given must hold (default: all requests).',
    check(value, path, ctx) {
      if (value.pathPrefixSegments && value.pathPrefix === undefined) {
        ctx.report([...path, 'pathPrefixSegments'], 'applies to pathPrefix, which is not set');
      }
    },
  },
);

const rewriteSpec = object(
  {
    stripPrefix: optional(routePath('Removed from the start of the path (/api/x becomes /x).')),
    replacePrefix: optional(
      object(
        {
          from: required(routePath('The prefix to replace.')),
          to: required(string({ pattern: /^\/\S*$/, patternHint: 'must start with / and contain no spaces', description: 'What replaces it.' })),
        },
        { description: 'Replaces a path prefix: {from: /v1, to: /v2} turns /v1/x into /v2/x.' },
      ),
    ),
    pathRegex: optional(
      object(
        {
          pattern: required(string({ parse: parseRouteRegex, description: 'Anchored pattern over the whole path (the same subset as match.pathRegex).' })),
          replacement: required(string({ pattern: /^\/\S*$/, patternHint: 'must start with / and contain no spaces', description: 'The new path; $1 and $<name> insert groups.' })),
        },
        {
          description: 'Replaces the whole path when it matches the pattern.',
          check(value, path, ctx) {
            const groups = captureGroupCount(value.pattern);
            for (const reference of value.replacement.matchAll(/\$(\d+)/g)) {
              if (Number(reference[1]) > groups) {
                ctx.report([...path, 'replacement'], `refers to $${reference[1]} but the pattern has ${groups} capture group${groups === 1 ? '' : 's'}`);
              }
            }
          },
        },
      ),
    ),
    host: optional(string({ parse: parseHostHeader, description: 'Host header (host or host:port) sent to the backend instead of the client\'s.' })),
    hostFromBackend: withDefault(boolean('true: the Host header becomes the picked backend\'s host:port.'), false),
  },
  {
    description: 'How the forwarded request changes (the query string is kept); X-Forwarded-Host keeps the client\'s Host.',
    check(value, path, ctx) {
      const pathRules = (['stripPrefix', 'replacePrefix', 'pathRegex'] as const).filter((key) => value[key] !== undefined);
      if (pathRules.length > 1) ctx.report(path, `set at most one of stripPrefix, replacePrefix and pathRegex (got ${pathRules.join(', ')})`);
      if (value.host !== undefined && value.hostFromBackend) ctx.report([...path, 'hostFromBackend'], 'set host or hostFromBackend, not both');
    },
  },
);

/** A header value: `${clientIp}`, `${requestId}`, `${host}` and `${scheme}` are filled per request. */
const headerValue = string({
  minLength: 0,
  parse(value) {
    const unknown = unknownVariables(value);
    if (unknown.length === 0) return { value };
    return { error: `uses unknown variable \${${unknown[0]}}; the variables are ${HEADER_VARIABLES.map((name) => `\${${name}}`).join(', ')}` };
  },
});

function checkSettable(names: Iterable<string>, path: Path, ctx: DecodeContext): void {
  for (const name of names) {
    const why = UNSETTABLE_HEADERS.get(name.toLowerCase());
    if (why !== undefined) ctx.report([...path, name], `${name} cannot be changed by header rules: ${why}`, 'key');
  }
}

const headerRulesSpec = object(
  {
    set: optional(record(headerValue, { description: 'Fields set to these values, replacing any already there.', keyPattern: HEADER_NAME_PATTERN, keyHint: 'must be an HTTP header name' })),
    add: optional(record(headerValue, { description: 'Fields added, keeping any already there.', keyPattern: HEADER_NAME_PATTERN, keyHint: 'must be an HTTP header name' })),
    remove: optional(list(headerName, { description: 'Fields removed.' })),
  },
  {
    description: 'Header edits, applied in the order remove, set, add; values may use ${clientIp}, ${requestId}, ${host} and ${scheme}.',
    check(value, path, ctx) {
      checkSettable(Object.keys(value.set ?? {}), [...path, 'set'], ctx);
      checkSettable(Object.keys(value.add ?? {}), [...path, 'add'], ctx);
      (value.remove ?? []).forEach((name, index) => {
        const why = UNSETTABLE_HEADERS.get(name);
        if (why !== undefined) ctx.report([...path, 'remove', index], `${name} cannot be changed by header rules: ${why}`);
      });
    },
  },
);

const routeHeadersSpec = object(
  {
    request: optional(headerRulesSpec),
    response: optional(headerRulesSpec),
  },
  { description: 'Header rules for the request to the backend and the response to the client.' },
);

const REDIRECT_STATUSES: readonly RedirectStatus[] = [301, 302, 303, 307, 308];

const redirectSpec = object(
  {
    scheme: optional(oneOf(['http', 'https'] as const, 'Scheme of the Location (default: the request\'s).')),
    host: optional(string({ parse: parseHostname, description: 'Host of the Location (default: the request\'s).' })),
    port: optional(integer(1, 65535, 'Port of the Location (default: the request\'s while scheme and host stay, else the scheme\'s default).')),
    path: optional(string({ pattern: /^\/\S*$/, patternHint: 'must start with / and contain no spaces', description: 'Path of the Location (default: the request\'s, normalised).' })),
    stripQuery: withDefault(boolean('true: the Location has no query string.'), false),
    status: withDefault(
      leaf<RedirectStatus>({
        description: 'Redirect status: 301, 302, 303, 307 or 308.',
        decode(value, path, ctx) {
          if ((REDIRECT_STATUSES as readonly unknown[]).includes(value)) return value as RedirectStatus;
          ctx.report(path, `must be one of ${REDIRECT_STATUSES.join(', ')}, got ${describeValue(value)}`);
          return INVALID;
        },
        encode: (value) => value,
        schema: () => ({ description: 'Redirect status: 301, 302, 303, 307 or 308.', enum: [...REDIRECT_STATUSES] }),
      }),
      DEFAULTS.redirectStatus,
    ),
  },
  {
    description: 'Answer with a redirect instead of forwarding.',
    check(value, path, ctx) {
      if (value.scheme === undefined && value.host === undefined && value.port === undefined && value.path === undefined) {
        ctx.report(path, 'must change at least one of scheme, host, port and path (otherwise it redirects to itself)');
      }
    },
  },
);

const respondSpec = object(
  {
    status: required(integer(200, 599, 'Status of the answer.')),
    body: withDefault(string({ minLength: 0, description: 'Body of the answer (UTF-8).' }), ''),
    contentType: optional(string({ description: 'Content-Type of the answer (default: text/plain; charset=utf-8 when there is a body).' })),
  },
  {
    description: 'Answer with a fixed response instead of forwarding.',
    check(value, path, ctx) {
      if ((value.status === 204 || value.status === 304) && value.body !== '') ctx.report([...path, 'body'], `a ${value.status} answer has no body`);
    },
  },
);

const routeSpec = object(
  {
    name: optional(
      string({
        pattern: ROUTE_NAME_PATTERN,
        patternHint: 'must contain only letters, digits and _ . -',
        maxLength: 64,
        description: 'Names the route in metrics (the route label), `balancer routes list` and logs (default: its index).',
      }),
    ),
    match: optional(matchSpec),
    pool: optional(string({ pattern: POOL_NAME_PATTERN, patternHint: 'must be a pool name', description: 'The pool that serves matching requests (or redirect, or respond).' })),
    redirect: optional(redirectSpec),
    respond: optional(respondSpec),
    rewrite: optional(rewriteSpec),
    headers: optional(routeHeadersSpec),
    timeout: optional(duration({ min: 1, description: 'The whole exchange with the backends, retries included; 504 ROUTE_TIMEOUT when it runs out.' })),
    retries: optional(integer(0, MAX_RETRIES, "Retries on another backend after a failure (overrides the pool's).")),
    retryOn: optional(
      list(oneOf(RETRY_CONDITIONS, 'connect-failure, reset, gateway-error (a 502/503/504 answer) or 5xx (any 5xx answer, and any failure).'), {
        description: "What is retried (default: the pool's behaviour); requests that may have reached a backend are retried only when idempotent and bodiless.",
        check: distinctNonEmpty('condition', 'must list at least one condition (leave retryOn out for the default)'),
      }),
    ),
    maxBodySize: withDefault(size({ description: 'Largest request body for this route; 0 means the listener limit.' }), 0),
    rateLimit: optional(rateLimitSpec),
  },
  {
    description: 'Requests that match go to the pool, or get the redirect or the fixed answer; the first matching route wins.',
    check(value, path, ctx) {
      const targets = (['pool', 'redirect', 'respond'] as const).filter((key) => value[key] !== undefined);
      if (targets.length !== 1) {
        ctx.report(path, `set exactly one of pool, redirect and respond (got ${targets.length === 0 ? 'none' : targets.join(', ')})`);
      } else if (value.pool === undefined) {
        for (const key of ['rewrite', 'timeout', 'retries', 'retryOn'] as const) {
          if (value[key] !== undefined) ctx.report([...path, key], `applies to requests forwarded to a pool; a route with ${targets[0]} forwards nothing`);
        }
      }
    },
  },
);

export const routesSpec = list(routeSpec, {
  description: 'First match in file order wins.',
  maxItems: 10_000,
  check(entries, path, ctx) {
    const names = new Map<string, number>();
    for (const { index, value } of entries) {
      if (value.name === undefined) continue;
      const taken = names.get(value.name);
      if (taken !== undefined) ctx.report([...path, index, 'name'], `duplicate route name "${value.name}" (also ${formatPath([...path, taken])})`);
      else names.set(value.name, index);
    }
  },
});
export const poolsSpec = record(poolSpec, {
  description: 'Named pools of backends.',
  keyPattern: POOL_NAME_PATTERN,
  keyHint: 'pool names may contain only letters, digits and _ . -',
});

// ---------------------------------------------------------------- local sections

const LOG_LEVELS: readonly LogLevelName[] = ['debug', 'info', 'warn', 'error', 'silent'];

const nodeIdSpec = string({ pattern: NODE_ID_PATTERN, patternHint: 'must contain only letters, digits and _ . -', maxLength: 64, description: 'This node; must be a key of peers.' });
const peerAddressSpec = hostPort({ allowPortZero: false, description: 'Address this node uses to reach the peer.' });

/** A member added through the admin API or the CLI is checked by the rules of cluster.nodeId and cluster.peers in the file. */
export function memberProblems(id: string, address: string): string[] {
  const ctx = new DecodeContext();
  nodeIdSpec.decode(id, ['id'], ctx);
  peerAddressSpec.decode(address, ['address'], ctx);
  return ctx.problems.map((problem) => `${formatPath(problem.path)}: ${problem.message}`);
}

const clusterSpec = object(
  {
    nodeId: required(nodeIdSpec),
    listen: required(hostPort({ allowPortZero: false, description: 'Address for Raft peer traffic.' })),
    dataDir: optional(nonEmptyString('Raft log and snapshots, relative to the config file (default: data/<nodeId>).')),
    peers: required(
      record(peerAddressSpec, {
        description: 'Node id -> address, this node included.',
        keyPattern: NODE_ID_PATTERN,
        keyHint: 'node ids may contain only letters, digits and _ . -',
      }),
    ),
    secret: optional(nonEmptyString('Shared secret that authenticates every peer message (or secretFile).')),
    secretFile: optional(nonEmptyString('File holding the shared secret, relative to the config file.')),
    electionTimeout: withDefault(duration({ min: 10, description: 'Base Raft election timeout.' }), DEFAULTS.electionTimeoutMs as number),
    heartbeatInterval: withDefault(duration({ min: 1, description: 'Leader heartbeat to voters; well below electionTimeout. Learners, which never campaign, get one every half electionTimeout (changes still reach them at once).' }), DEFAULTS.heartbeatIntervalMs as number),
    join: optional(
      boolean(
        'true: this node joins a running cluster (added with `balancer cluster add`) and starts with an empty log instead of bootstrapping from peers; like etcd initial-cluster-state=existing. Ignored once the data dir holds a log.',
      ),
    ),
    snapshotEvery: optional(integer(1, 100_000_000, 'Applied entries between state-machine snapshots, after which the log is compacted (default 1000).')),
    historySize: withDefault(
      integer(1, 10_000, 'Replicated config versions this node keeps, with when, from where and the request id, for `balancer config history`, `diff` and `rollback`.'),
      DEFAULTS.historySize,
    ),
  },
  {
    description: 'Raft group that replicates routes and pools; absent means a single node.',
    check(value, path, ctx) {
      if ((value.secret === undefined) === (value.secretFile === undefined)) {
        ctx.report(value.secret === undefined ? path : [...path, 'secretFile'], 'set exactly one of secret and secretFile');
      }
      if (!Object.hasOwn(value.peers, value.nodeId)) {
        const hint = Object.keys(value.peers).length === 0 ? '' : ` (peers: ${Object.keys(value.peers).join(', ')})`;
        ctx.report([...path, 'nodeId'], `must be one of the keys of peers, got "${value.nodeId}"${hint}`);
      }
      if (value.heartbeatInterval >= value.electionTimeout) {
        ctx.report([...path, 'heartbeatInterval'], `must be less than electionTimeout (${formatDuration(value.electionTimeout)}), got ${formatDuration(value.heartbeatInterval)}`);
      }
    },
  },
);

// ---------------------------------------------------------------- listeners

export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export const CLIENT_AUTH_MODES = ['request', 'require'] as const;

const certificateSpec = object(
  {
    cert: required(nonEmptyString('PEM certificate chain, relative to the config file; its DNS names (subjectAltName, else CN) choose it by SNI.')),
    key: required(nonEmptyString('PEM private key, relative to the config file.')),
  },
  { description: 'One certificate and its key.' },
);

export const listenerTlsSpec = object(
  {
    cert: optional(nonEmptyString('PEM certificate chain, relative to the config file (the one-certificate form of certificates).')),
    key: optional(nonEmptyString('PEM private key, relative to the config file.')),
    certificates: optional(
      list(certificateSpec, {
        description: 'Certificates chosen by the SNI name a client asks for (exact and *.wildcard names); the first serves clients without SNI or with an unknown name.',
        maxItems: 10_000,
      }),
    ),
    minVersion: withDefault(oneOf(TLS_VERSIONS, 'Oldest TLS version accepted.'), 'TLSv1.2'),
    ciphers: optional(nonEmptyString('OpenSSL cipher list for TLS 1.2 (default: Node\'s).')),
    clientCa: optional(nonEmptyString('PEM file of CAs that client certificates must chain to, relative to the config file.')),
    clientAuth: optional(
      oneOf(CLIENT_AUTH_MODES, 'Client certificates: request (optional, but one sent must verify) or require (no certificate, no connection); needs clientCa.'),
    ),
    clientCertHeader: optional(
      string({
        pattern: HEADER_NAME_PATTERN,
        patternHint: 'must be an HTTP header name',
        description: 'Header that tells backends the verified client certificate subject; always removed from what clients send (default: none).',
      }),
    ),
  },
  {
    description: 'Terminate TLS on the listener.',
    check(value, path, ctx) {
      const single = value.cert !== undefined || value.key !== undefined;
      if (single && value.certificates !== undefined) ctx.report([...path, 'certificates'], 'set cert and key, or certificates, not both');
      else if (value.cert !== undefined && value.key === undefined) ctx.report([...path, 'key'], 'is required with cert');
      else if (value.key !== undefined && value.cert === undefined) ctx.report([...path, 'cert'], 'is required with key');
      else if (!single && (value.certificates === undefined || value.certificates.length === 0)) {
        ctx.report(path, 'needs a certificate: set cert and key, or certificates: [{cert, key}, ...]');
      }
      if (value.clientAuth !== undefined && value.clientCa === undefined) ctx.report([...path, 'clientCa'], `is required with clientAuth: ${value.clientAuth} (the CAs client certificates are verified against)`);
      if (value.clientCa !== undefined && value.clientAuth === undefined) ctx.report([...path, 'clientAuth'], 'is required with clientCa: request or require');
      if (value.clientCertHeader !== undefined && value.clientAuth === undefined) {
        ctx.report([...path, 'clientCertHeader'], 'needs clientAuth (and clientCa): without client certificates there is no subject to pass on');
      }
    },
  },
);

const listenerSpec = object(
  {
    name: required(
      string({ pattern: LISTENER_NAME_PATTERN, patternHint: 'must contain only letters, digits and _ . -', maxLength: 64, description: 'Names the listener in routes (match.listener), logs and metrics.' }),
    ),
    listen: required(hostPort({ allowPortZero: true, description: 'host:port, [::1]:port or :port.' })),
    tls: optional(listenerTlsSpec),
    http2: withDefault(boolean('On a TLS listener, offer HTTP/2 by ALPN (h2) beside HTTP/1.1.'), true),
    h2c: withDefault(boolean('On a plain listener, accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1.'), false),
    redirectToHttps: withDefault(
      boolean('Answer every request with a redirect to the first TLS listener (308; 301 for GET and HEAD), except requests a route naming this listener takes.'),
      false,
    ),
  },
  {
    description: 'One address balancer serves on.',
    check(value, path, ctx) {
      if (value.tls !== undefined && value.h2c) ctx.report([...path, 'h2c'], 'is for plain listeners; a TLS listener offers HTTP/2 by ALPN (http2)');
      if (value.tls !== undefined && value.redirectToHttps) ctx.report([...path, 'redirectToHttps'], 'is for plain listeners; this one already speaks https');
    },
  },
);

/** Two listeners clash when they bind the same port on the same address, or one of them on every address. */
function listenersClash(a: string, b: string): boolean {
  const left = splitHostPort(a);
  const right = splitHostPort(b);
  if (left.port === 0 || right.port === 0 || left.port !== right.port) return false;
  const any = (host: string): boolean => host === '0.0.0.0' || host === '::';
  return left.host.toLowerCase() === right.host.toLowerCase() || any(left.host) || any(right.host);
}

export const listenersSpec = list(listenerSpec, {
  description: 'The proxy listeners (instead of listen and tls); changed, added and removed without a restart.',
  maxItems: 1_000,
  check(entries, path, ctx) {
    const names = new Map<string, number>();
    entries.forEach(({ index, value }, position) => {
      const taken = names.get(value.name);
      if (taken !== undefined) ctx.report([...path, index, 'name'], `duplicate listener name "${value.name}" (also ${formatPath([...path, taken])})`);
      else names.set(value.name, index);
      for (const other of entries.slice(0, position)) {
        if (listenersClash(value.listen, other.value.listen)) {
          ctx.report([...path, index, 'listen'], `${value.listen} clashes with ${formatPath([...path, other.index])} (${other.value.listen}): two listeners cannot bind the same port`);
          break;
        }
      }
      if (value.redirectToHttps && !entries.some((entry) => entry.value.tls !== undefined)) {
        ctx.report([...path, index, 'redirectToHttps'], 'needs a TLS listener to redirect to: add one with tls');
      }
    });
  },
});

const limitsSpec = object(
  {
    maxConnections: withDefault(integer(1, 10_000_000, 'Concurrent client connections (with workers: N, in each worker process).'), DEFAULTS.limits.maxConnections as number),
    maxHeaderSize: withDefault(size({ min: 1024, description: 'Largest request head; larger gets 431.' }), DEFAULTS.limits.maxHeaderSize as number),
    headersTimeout: withDefault(duration({ min: 1, description: 'Time a client has to send the request head (proxy and admin listeners).' }), DEFAULTS.limits.headersTimeoutMs as number),
    requestTimeout: withDefault(duration({ min: 1, description: 'Time a client has to send the whole request.' }), DEFAULTS.limits.requestTimeoutMs as number),
    keepAliveTimeout: withDefault(duration({ min: 1, description: 'Idle client keep-alive connections close after this.' }), DEFAULTS.limits.keepAliveTimeoutMs as number),
    maxBodySize: withDefault(size({ description: 'Largest request body; 0 means unlimited.' }), DEFAULTS.limits.maxBodySize as number),
    rejectEncodedSlash: withDefault(
      boolean('400 for %2F or %5C in a request path, which some backends read as separators that routes never saw; false keeps them escaped (routes see them escaped too).'),
      DEFAULTS.limits.rejectEncodedSlash as boolean,
    ),
    maxConnectionsPerIp: withDefault(
      integer(0, 10_000_000, 'Concurrent connections one client address may hold open on each listener (with workers: N, in each worker process); more are closed at once; 0 means no limit.'),
      DEFAULTS.limits.maxConnectionsPerIp as number,
    ),
  },
  { description: 'Listener limits.' },
);

export const fileSpec = object(
  {
    listen: optional(
      hostPort({ allowPortZero: true, description: 'The proxy listener: host:port, [::1]:port or :port (default 127.0.0.1:8080); the one-listener form of listeners.' }),
    ),
    tls: optional(listenerTlsSpec),
    listeners: optional(listenersSpec),
    admin: optional(
      object(
        {
          listen: withDefault(hostPort({ allowPortZero: true, description: 'Admin API, /metrics, /healthz, /readyz.' }), DEFAULTS.adminListen as string),
          token: optional(nonEmptyString('Bearer token for /api/v1 (or tokenFile, or $BALANCER_ADMIN_TOKEN).')),
          tokenFile: optional(nonEmptyString('File holding the bearer token, relative to the config file.')),
        },
        {
          description: 'The admin listener.',
          check(value, path, ctx) {
            if (value.token !== undefined && value.tokenFile !== undefined) ctx.report([...path, 'tokenFile'], 'set token or tokenFile, not both');
          },
        },
      ),
    ),
    routes: withDefault(routesSpec, []),
    pools: withDefault(poolsSpec, {}),
    cluster: optional(clusterSpec),
    trustedProxies: withDefault(
      list(string({ parse: parseCidr, description: 'IPv4/IPv6 CIDR or single address.' }), {
        description: 'Peers whose X-Forwarded-* headers are trusted and extended.',
      }),
      [],
    ),
    limits: optional(limitsSpec),
    log: optional(
      object(
        {
          level: withDefault(oneOf(LOG_LEVELS, 'Least severe level logged (the access log is not affected).'), DEFAULTS.log.level),
          access: withDefault(
            boolean('The access log: one JSON line per request (rejected, unrouted and upgraded ones too), on standard output or in accessFile.'),
            DEFAULTS.log.access as boolean,
          ),
          accessFile: optional(
            nonEmptyString('File the access log is appended to instead of standard output, relative to the config file; reopened on SIGUSR1 (logrotate).'),
          ),
        },
        {
          description: 'Logging.',
          check(value, path, ctx) {
            if (value.accessFile !== undefined && value.access !== true) {
              ctx.report([...path, 'accessFile'], 'accessFile is set but access is not true: set log.access: true to write the access log');
            }
          },
        },
      ),
    ),
    workers: withDefault(workers, DEFAULTS.workers as number | 'auto'),
    shutdown: optional(
      object(
        {
          drainTimeout: withDefault(duration({ description: 'How long in-flight requests may finish once the listener stops accepting.' }), DEFAULTS.shutdownDrainMs as number),
          preStopDelay: withDefault(
            duration({
              description:
                'After SIGTERM, how long the listener keeps accepting while /readyz answers 503, so a load balancer in front (kube-proxy, an L4 balancer) stops sending first; then the drain begins.',
            }),
            DEFAULTS.shutdownPreStopDelayMs as number,
          ),
        },
        { description: 'Graceful shutdown.' },
      ),
    ),
  },
  {
    description: 'balancer configuration (balancer.yaml).',
    check(value, path, ctx) {
      if (value.listeners === undefined) return;
      if (value.listeners.length === 0) ctx.report([...path, 'listeners'], 'must name at least one listener');
      for (const key of ['listen', 'tls'] as const) {
        if (value[key] !== undefined) ctx.report([...path, key], `set either listen/tls (one listener) or listeners, not both: move it into an entry of listeners`);
      }
    },
  },
);

export const LOCAL_KEYS: readonly string[] = Object.keys(fileSpec.fields).filter((key) => key !== 'routes' && key !== 'pools');

export const replicatedSpec = object(
  { routes: withDefault(routesSpec, []), pools: withDefault(poolsSpec, {}) },
  {
    description: 'The replicated part of the configuration: routes and pools.',
    unknownKeyHint: (key) =>
      LOCAL_KEYS.includes(key) ? `is local to each node and cannot be set here; only routes and pools are replicated` : undefined,
  },
);

export type FileShape = Infer<typeof fileSpec>;
export type ListenerTlsShape = Infer<typeof listenerTlsSpec>;
export type PoolShape = Infer<typeof poolSpec>;
export type RouteShape = Infer<typeof routeSpec>;
export type RateLimitShape = Infer<typeof rateLimitSpec>;
export type DnsDiscoveryShape = Infer<typeof dnsDiscoverySpec>;
export type ReplicatedShape = Infer<typeof replicatedSpec>;
