// The typed, validated configuration and every default, named. validate.ts is the only producer of these objects.

export type StrategyName = 'random' | 'round-robin' | 'weighted' | 'least-request' | 'peak-ewma' | 'ring-hash' | 'maglev';
export const STRATEGY_NAMES: readonly StrategyName[] = ['random', 'round-robin', 'weighted', 'least-request', 'peak-ewma', 'ring-hash', 'maglev'];
/** The strategies that pick by a hash of a request value (`hashOn`), so the same value keeps landing on the same backend. */
export const HASH_STRATEGIES: readonly StrategyName[] = ['ring-hash', 'maglev'];

/** All durations below are milliseconds. */
export const DEFAULTS = {
  listen: '127.0.0.1:8080',
  /** The listener that the one-listener form (listen + tls) makes. */
  listenerName: 'default',
  adminListen: '127.0.0.1:9090',
  strategy: 'round-robin' as StrategyName,
  weight: 1,
  retries: 2,
  /** Envoy's retry budget: retries may add at most 20% to active requests, but always allow 3 concurrent. */
  retryBudgetPercent: 20,
  retryBudgetMinConcurrent: 3,
  /** Envoy's default: below 50% healthy, spread over all backends rather than crush the survivors. */
  panicThresholdPercent: 50,
  slowStartMs: 0,
  /** Linkerd's defaults: latency measured over about ten seconds; an unmeasured backend is taken to answer in 10 ms. */
  ewma: { decayMs: 10_000, initialMs: 10 },
  /** tunnelMs: HAProxy's `timeout tunnel` as its documentation's WebSocket example sets it (1h). */
  timeouts: { connectMs: 5_000, responseMs: 60_000, idleMs: 60_000, tunnelMs: 3_600_000 },
  healthCheck: {
    intervalMs: 2_000,
    timeoutMs: 1_000,
    rise: 2,
    fall: 3,
    /** Fraction of the interval by which each check is randomly shifted, so checks of many backends don't align. */
    jitter: 0.1,
    expectedStatuses: [[200, 399]] as const,
    /** Envoy's default: an HTTP check reuses the connection the last passing check left open. */
    reuseConnection: true,
  },
  outlierDetection: {
    /** Passive ejection is on unless a pool turns it off: it is what keeps a dying backend from taking traffic between checks. */
    enabled: true,
    consecutiveGatewayFailures: 5,
    consecutive5xx: 5,
    baseEjectionTimeMs: 30_000,
    maxEjectionTimeMs: 300_000,
    /** Envoy's default; at least one backend may always be ejected, as in Envoy. */
    maxEjectionPercent: 10,
    /** Envoy's successful_active_health_check_uneject_host default: a passing active check ends an ejection. */
    activeCheckUnejects: true,
  },
  upstream: {
    /** Below the common backend keep-alive (Node 5s, nginx 75s) so we close idle connections before they do. */
    freeSocketTimeoutMs: 4_000,
  },
  /** 0: no limit on connections per backend (HAProxy's default); each concurrent request may have its own. */
  connectionsMax: 0,
  limits: {
    maxConnections: 10_000,
    maxHeaderSize: 16 * 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 300_000,
    keepAliveTimeoutMs: 5_000,
    /** 0 means unlimited. */
    maxBodySize: 0,
    /** %2F and %5C in a path are answered 400: a backend may read them as separators that routes never saw. */
    rejectEncodedSlash: true,
    /** 0: no limit on concurrent connections from one client address. */
    maxConnectionsPerIp: 0,
  },
  /** 0 means unlimited concurrent requests per backend, and then nothing waits. */
  circuitBreaker: { maxRequestsPerBackend: 0, maxPendingPerBackend: 0 },
  log: { level: 'info' as LogLevelName, access: false, accessFile: null },
  /** 0 runs the data plane in the main process. */
  workers: 0,
  /** Bounds `workers: N` so a typo cannot fork thousands of processes. */
  maxWorkers: 256,
  shutdownDrainMs: 10_000,
  /** 0: the listener stops accepting as soon as SIGTERM arrives. */
  shutdownPreStopDelayMs: 0,
  electionTimeoutMs: 1_000,
  heartbeatIntervalMs: 100,
  /** Replicated config versions kept for history, diff and rollback. */
  historySize: 50,
  /** A redirect that names no status is temporary: a 301 is cached by browsers and hard to take back. */
  redirectStatus: 302 as RedirectStatus,
  /** ring-hash: points on the ring for a backend of the pool's highest weight (Envoy's default minimum ring is 1024). */
  ringSize: 1024,
  /** Maglev's lookup table size: a prime, as in Envoy (65537). */
  maglevTableSize: 65_537,
  /** A sticky cookie is kept from scripts unless the pool says otherwise. */
  stickyHttpOnly: true,
  /** Clients a rate limit keeps a token bucket for (per process); the least recently seen are forgotten beyond it. */
  rateLimitMaxKeys: 100_000,
  /** How often DNS names are resolved again when the answer names no shorter TTL. */
  dnsIntervalMs: 30_000,
  /** A TTL below this does not make lookups more frequent (a TTL of 0 would otherwise mean a lookup loop). */
  dnsMinIntervalMs: 1_000,
} as const;

/** A check's timeout when the file names none: the usual 1 s, but always below the interval (`interval: 1s` alone is valid). */
export function defaultHealthCheckTimeoutMs(intervalMs: number): number {
  return Math.min(DEFAULTS.healthCheck.timeoutMs, Math.max(1, Math.floor(intervalMs / 2)));
}

export interface BackendConfig {
  readonly id: string;
  readonly url: string;
  readonly weight: number;
  readonly drain: boolean;
  /** Gets traffic only while no primary (non-backup) backend of the pool is up. */
  readonly backup: boolean;
  /**
   * Never in the replicated config: the addresses this node resolved the URL's host name to, where connections go, the
   * one in use first (the name stays for Host, SNI and checks). Absent for IP literals and before a first answer (the
   * system resolves at each connect then).
   */
  readonly addresses?: readonly string[];
  /** Never in the replicated config: set on a backend this node found in DNS (discovery.dns), which the API can only drain. */
  readonly discovered?: true;
}

/** The request value a hashing strategy keys on: a header, a cookie, a query parameter, or the client address. */
export type HashOn = { readonly header: string } | { readonly cookie: string } | { readonly query: string } | 'sourceIp';

/** How hashOn reads in status lines and messages: `header x-user`, `cookie session`, `query id`, `sourceIp`. */
export function hashOnText(hashOn: HashOn): string {
  if (hashOn === 'sourceIp') return 'sourceIp';
  if ('header' in hashOn) return `header ${hashOn.header}`;
  if ('cookie' in hashOn) return `cookie ${hashOn.cookie}`;
  return `query ${hashOn.query}`;
}

export type SameSite = 'Strict' | 'Lax' | 'None';
export const SAME_SITE_VALUES: readonly SameSite[] = ['Strict', 'Lax', 'None'];

/** Sticky sessions: a cookie naming the backend (opaquely) keeps a client on it while it is available. */
export interface StickyConfig {
  readonly cookie: string;
  /** Max-Age of the cookie; null makes it a session cookie. */
  readonly ttlMs: number | null;
  readonly secure: boolean;
  readonly httpOnly: boolean;
  /** null: no SameSite attribute (browsers then treat it as Lax). */
  readonly sameSite: SameSite | null;
}

export interface HealthCheckConfig {
  /** HTTP GET path; null means a TCP connect check. */
  readonly path: string | null;
  readonly intervalMs: number;
  /** Interval while a backend is down (HAProxy's `downinter`). */
  readonly unhealthyIntervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** Inclusive status ranges that count as passing. */
  readonly expectedStatuses: readonly (readonly [number, number])[];
  /** Host header for HTTP checks (:authority for gRPC ones); null sends the backend's host:port. */
  readonly host: string | null;
  readonly jitter: number;
  /** A gRPC check (grpc.health.v1.Health/Check over HTTP/2) instead of an HTTP GET or a TCP connect; null: none. */
  readonly grpc: GrpcHealthCheckConfig | null;
  /** HTTP checks keep their connection while they pass (false: a fresh connection per check, as HAProxy does). */
  readonly reuseConnection: boolean;
}

export interface GrpcHealthCheckConfig {
  /** The service asked about; '' asks about the server as a whole (the gRPC health protocol's convention). */
  readonly service: string;
}

export interface OutlierDetectionConfig {
  readonly enabled: boolean;
  /** Consecutive connect failures, resets and timeouts that eject a backend; 0 disables. */
  readonly consecutiveGatewayFailures: number;
  /** Consecutive 5xx answers that eject a backend; 0 disables. */
  readonly consecutive5xx: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  /** A passing active check ends an ejection early; false keeps an ejected backend out for the whole ejection time. */
  readonly activeCheckUnejects: boolean;
}

export interface TimeoutsConfig {
  readonly connectMs: number;
  /** Time from request sent to response headers received. */
  readonly responseMs: number;
  /** Time without bytes in either direction once the exchange is under way. */
  readonly idleMs: number;
  /** Time without bytes in either direction on an upgraded connection (WebSocket). */
  readonly tunnelMs: number;
}

export interface RetryBudgetConfig {
  readonly percent: number;
  readonly minConcurrent: number;
}

export interface CircuitBreakerConfig {
  /** Concurrent requests per backend; 0 means unlimited. */
  readonly maxRequestsPerBackend: number;
  /** Requests that may wait for a slot per backend before 503; 0 means none wait. */
  readonly maxPendingPerBackend: number;
}

export interface ConnectionsConfig {
  /** Connections per backend per process; 0 means no limit. Requests beyond it wait for a free one (not a backend failure). */
  readonly max: number;
}

export interface UpstreamTlsConfig {
  /** PEM file of CAs to verify https backends against, instead of the system CAs. */
  readonly ca: string | null;
  readonly serverName: string | null;
  /** PEM client certificate (chain) presented to https backends that ask for one, and its key; both or neither. */
  readonly cert: string | null;
  readonly key: string | null;
}

/** The per-backend latency estimate every pool keeps and the peak-ewma strategy picks by. */
export interface EwmaConfig {
  /** Time constant of the moving average, and how long a measurement stays current. */
  readonly decayMs: number;
  /** What a backend not yet measured is taken to answer in. */
  readonly initialMs: number;
}

export type UpstreamProtocol = 'http1' | 'h2' | 'h2c';
export const UPSTREAM_PROTOCOLS: readonly UpstreamProtocol[] = ['http1', 'h2', 'h2c'];

/** Whose requests share one token bucket: the client address (after trusted proxies) or a request header's value. */
export type RateLimitKey = { readonly kind: 'sourceIp' } | { readonly kind: 'header'; /** Lower case. */ readonly name: string };

/** A token bucket per client: `burst` requests at once, refilled at `requestsPerSecond`; local to each process. */
export interface RateLimitConfig {
  readonly requestsPerSecond: number;
  readonly burst: number;
  readonly by: RateLimitKey;
  /** Clients remembered at once (least recently seen forgotten first): bounds the memory a flood of addresses takes. */
  readonly maxKeys: number;
}

export type DnsRecordType = 'A' | 'AAAA' | 'SRV';
export const DNS_RECORD_TYPES: readonly DnsRecordType[] = ['A', 'AAAA', 'SRV'];

/** Backends found in DNS: every address the name resolves to is a backend of its own, local to each node. */
export interface DnsDiscoveryConfig {
  /** Null: no backends are discovered; the settings say how the host names of backend URLs are resolved. */
  readonly name: string | null;
  /** Port of A/AAAA backends; 0 for SRV, whose records carry their own. */
  readonly port: number;
  readonly type: DnsRecordType;
  readonly scheme: 'http' | 'https';
  /** Longest time between lookups; a shorter TTL in the answer makes them sooner. */
  readonly intervalMs: number;
  /** host:port of DNS servers to ask instead of the system's. */
  readonly servers: readonly string[] | null;
  /** Ids (host:port) of discovered backends an operator drains: they get no new requests while DNS still names them. */
  readonly drain: readonly string[];
}

export interface PoolConfig {
  readonly name: string;
  readonly strategy: StrategyName;
  /** http1, h2 (HTTP/2 over TLS by ALPN) or h2c (HTTP/2 over plain TCP, prior knowledge). */
  readonly protocol: UpstreamProtocol;
  readonly backends: readonly BackendConfig[];
  /** ring-hash and maglev: what they hash; null for the other strategies. */
  readonly hashOn: HashOn | null;
  /** ring-hash: points per backend of the highest weight. */
  readonly ringSize: number;
  readonly sticky: StickyConfig | null;
  readonly healthCheck: HealthCheckConfig | null;
  readonly outlierDetection: OutlierDetectionConfig;
  readonly timeouts: TimeoutsConfig;
  readonly retries: number;
  readonly retryBudget: RetryBudgetConfig;
  readonly panicThresholdPercent: number;
  readonly slowStartMs: number;
  readonly ewma: EwmaConfig;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly connections: ConnectionsConfig;
  readonly tls: UpstreamTlsConfig;
  /** Per-client limit on the requests this pool takes (after the route's own, if any); null: none. */
  readonly rateLimit: RateLimitConfig | null;
  /** Backends found in DNS, beside `backends`; null: none. */
  readonly discovery: DnsDiscoveryConfig | null;
}

/** One header condition of a route: exactly one of an exact value, a pattern, or presence (true) or absence (false). */
export interface HeaderMatch {
  /** Lower case. */
  readonly name: string;
  readonly value: string | null;
  /** Anchored, from the safe subset route-regex.ts accepts. */
  readonly regex: string | null;
  readonly present: boolean | null;
}

/** Every condition given must hold; paths are compared after normalisation. */
export interface RouteMatch {
  /** Exact host, or `*.example.com` for any subdomain; null matches any host. */
  readonly host: string | null;
  /** Exact path; null: any. */
  readonly path: string | null;
  readonly pathPrefix: string;
  /** The prefix matches whole segments only: `/api` takes `/api` and `/api/x`, never `/apiary`. */
  readonly pathPrefixSegments: boolean;
  /** Anchored pattern over the whole path; null: any. */
  readonly pathRegex: string | null;
  /** Upper case; null: any method. */
  readonly methods: readonly string[] | null;
  readonly headers: readonly HeaderMatch[];
  /** Query parameter -> exact (decoded) value. */
  readonly query: Readonly<Record<string, string>>;
  /** The name of the listener the request arrived on; null: any. */
  readonly listener: string | null;
}

/** How a route changes the request it forwards: at most one path rule, and the Host. */
export interface RouteRewrite {
  readonly stripPrefix: string | null;
  readonly replacePrefix: { readonly from: string; readonly to: string } | null;
  /** The whole path matched (anchored) and replaced; `$1` and `$<name>` refer to groups. */
  readonly pathRegex: { readonly pattern: string; readonly replacement: string } | null;
  /** Host header (host or host:port) sent instead of the client's. */
  readonly host: string | null;
  /** Host becomes the backend's host:port. */
  readonly hostFromBackend: boolean;
}

export type RedirectStatus = 301 | 302 | 303 | 307 | 308;

/** Each part given replaces the request's in the Location. */
export interface RouteRedirect {
  readonly scheme: 'http' | 'https' | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly path: string | null;
  readonly stripQuery: boolean;
  readonly status: RedirectStatus;
}

export interface RouteRespond {
  readonly status: number;
  readonly body: string;
  readonly contentType: string | null;
}

/** Header edits on one direction; names are lower case. Applied in the order remove, set, add. */
export interface HeaderRules {
  /** Replaces any field of that name. */
  readonly set: readonly (readonly [string, string])[];
  /** Appends a field, keeping those already there. */
  readonly add: readonly (readonly [string, string])[];
  readonly remove: readonly string[];
}

export interface RouteHeaderRules {
  /** On the request sent to the backend. */
  readonly request: HeaderRules | null;
  /** On the response sent to the client (the route's own redirect or fixed answer too). */
  readonly response: HeaderRules | null;
}

/** What a route retries on: connect failures, resets, 502/503/504 answers, or any 5xx answer and any failure. */
export type RetryCondition = 'connect-failure' | 'reset' | 'gateway-error' | '5xx';
export const RETRY_CONDITIONS: readonly RetryCondition[] = ['connect-failure', 'reset', 'gateway-error', '5xx'];

export interface RouteConfig {
  /** Shown in metrics (the `route` label), `balancer routes list` and logs; null: the route's index stands in. */
  readonly name: string | null;
  readonly match: RouteMatch;
  /** Exactly one of pool, redirect and respond is set. */
  readonly pool: string | null;
  readonly redirect: RouteRedirect | null;
  readonly respond: RouteRespond | null;
  readonly rewrite: RouteRewrite | null;
  readonly headers: RouteHeaderRules | null;
  /** The whole exchange, retries included; 504 when it runs out; null: no limit beyond the pool's timeouts. */
  readonly timeoutMs: number | null;
  /** Overrides the pool's retries; null: the pool's. */
  readonly retries: number | null;
  /** null: the pool's behaviour (failures the backend never saw, and idempotent requests' connect failures, resets and timeouts). */
  readonly retryOn: readonly RetryCondition[] | null;
  /** Maximum request body in bytes for this route; 0 means the listener's limit. */
  readonly maxBodySize: number;
  /** Per-client limit on the requests this route takes; null: none. */
  readonly rateLimit: RateLimitConfig | null;
}

/** The part Raft replicates: identical on every node of a cluster. */
export interface ReplicatedConfig {
  readonly routes: readonly RouteConfig[];
  readonly pools: Readonly<Record<string, PoolConfig>>;
}

export interface CertificateConfig {
  readonly cert: string;
  readonly key: string;
}

export type TlsVersionName = 'TLSv1.2' | 'TLSv1.3';

export interface TlsListenerConfig {
  /** In file order: each is chosen by the SNI names it carries; the first serves clients without SNI or with an unknown name. */
  readonly certificates: readonly CertificateConfig[];
  readonly minVersion: TlsVersionName;
  /** OpenSSL cipher list; null keeps Node's default. */
  readonly ciphers: string | null;
  /** CAs client certificates are verified against; set exactly when clientAuth is not 'none'. */
  readonly clientCa: string | null;
  /** none: no client certificate asked for; request: optional, but one sent must verify; require: mandatory. */
  readonly clientAuth: 'none' | 'request' | 'require';
  /** Header (lower case) carrying the verified subject to backends, always removed from what clients send; null: none. */
  readonly clientCertHeader: string | null;
}

/** One address the proxy serves on. */
export interface ListenerConfig {
  readonly name: string;
  readonly listen: string;
  readonly tls: TlsListenerConfig | null;
  /** TLS listeners: offer h2 by ALPN beside http/1.1. */
  readonly http2: boolean;
  /** Plain listeners: accept prior-knowledge HTTP/2 beside HTTP/1.1. */
  readonly h2c: boolean;
  /** Answer with a redirect to the first TLS listener, except requests a route naming this listener takes. */
  readonly redirectToHttps: boolean;
}

export interface AdminConfig {
  readonly listen: string;
  readonly token: string | null;
  readonly tokenFile: string | null;
}

export interface ClusterConfig {
  readonly nodeId: string;
  readonly listen: string;
  readonly dataDir: string;
  /** Node id -> address this node uses to reach it. */
  readonly peers: Readonly<Record<string, string>>;
  readonly secret: string | null;
  readonly secretFile: string | null;
  readonly electionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  /** Present only when the file sets it: start empty and wait to be added, instead of bootstrapping from peers. */
  readonly join?: boolean;
  /** Present only when the file sets it; the Raft driver's default applies otherwise. */
  readonly snapshotEvery?: number;
  readonly historySize: number;
}

export interface LimitsConfig {
  readonly maxConnections: number;
  readonly maxHeaderSize: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxBodySize: number;
  /** 400 for %2F or %5C in a request path; false keeps them escaped, and routes see them escaped. */
  readonly rejectEncodedSlash: boolean;
  /** Concurrent connections one client address may hold open on a listener (per process); 0: no limit. */
  readonly maxConnectionsPerIp: number;
}

export type LogLevelName = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface LogConfig {
  readonly level: LogLevelName;
  readonly access: boolean;
  /** Where the access log goes when `access` is on; null for standard output. Absolute once loaded. */
  readonly accessFile: string | null;
}

/** Settings that belong to this node alone and are never replicated. */
export interface LocalConfig {
  /** At least one; the file's listen + tls make the single listener named "default". */
  readonly listeners: readonly ListenerConfig[];
  readonly admin: AdminConfig;
  readonly cluster: ClusterConfig | null;
  /** CIDRs whose X-Forwarded-* headers are trusted and extended rather than replaced. */
  readonly trustedProxies: readonly string[];
  readonly limits: LimitsConfig;
  readonly log: LogConfig;
  /** Data-plane worker processes; 0 runs the data plane in the main process. */
  readonly workers: number;
  readonly shutdownDrainMs: number;
  /** After SIGTERM, how long /readyz answers 503 while the listener still accepts, before the drain begins. */
  readonly shutdownPreStopDelayMs: number;
}

export interface Config extends LocalConfig, ReplicatedConfig {}

/** Keys of the file that belong to the replicated part. */
export const REPLICATED_KEYS = ['routes', 'pools'] as const;
