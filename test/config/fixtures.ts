// Config texts and validation helpers shared by the config tests.

import { formatProblem, validateConfigText } from '../../src/config/validate.js';

export const FILE = 'balancer.yaml';

/** Every problem of a file text, as `balancer.yaml:LINE:COL: message`; none when it is valid. */
export function problemLines(text: string): string[] {
  const result = validateConfigText(text, FILE);
  if (result.ok) return [];
  return result.problems.map((problem) => formatProblem(FILE, problem));
}

/** The typed config of a text that must be valid. */
export function valid(text: string) {
  const result = validateConfigText(text, FILE);
  if (!result.ok) throw new Error(result.problems.map((p) => formatProblem(FILE, p)).join('\n'));
  return result.config;
}

/** Every section and nearly every key, in the styles people write (flow maps, quoted strings, comments). */
export const FULL_EXAMPLE = `# yaml-language-server: $schema=./balancer.schema.json
listen: 127.0.0.1:8080            # the proxy's listener
tls: { cert: ./cert.pem, key: ./key.pem }
admin:
  listen: 127.0.0.1:9090
  token: change-me
routes:
  - match: { host: API.Example.com, pathPrefix: /v1 }
    pool: api
    maxBodySize: 10mb
  - match: { host: "*.example.com" }
    pool: web
  - pool: web
pools:
  web:
    strategy: weighted
    backends:
      - { url: http://127.0.0.1:9001, weight: 3, id: web-1 }
      - { url: http://127.0.0.1:9002 }
      - { url: "https://Backend.example.com/", drain: true }
    healthCheck: { path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3 }
  api:
    strategy: least-request
    backends:
      - url: http://[::1]:9100
    healthCheck:
      interval: 1500
      unhealthyInterval: 10s
      timeout: 250ms
      expectedStatuses: ["200-299", 404]
      host: health.internal
      jitter: 0
    outlierDetection: { consecutive5xx: 0, baseEjectionTime: 10s, maxEjectionTime: 1m, maxEjectionPercent: 50 }
    timeouts: { connect: 1s, response: 30s, idle: 2m }
    retries: 0
    retryBudget: { percent: 10, minConcurrent: 1 }
    panicThreshold: 0
    slowStart: 30s
    circuitBreaker: { maxRequestsPerBackend: 100, maxPendingPerBackend: 10 }
    connections: { max: 512 }
    tls: { ca: ./ca.pem, serverName: api.internal }
cluster:
  nodeId: n1
  listen: 127.0.0.1:7001
  dataDir: ./data/n1
  peers: { n1: 127.0.0.1:7001, n2: 127.0.0.1:7002, n3: "[::1]:7003" }
  secretFile: ./cluster.secret
  electionTimeout: 1s
  heartbeatInterval: 100ms
trustedProxies: [10.0.0.0/8, 192.168.1.1, "fd00::/8", "::1"]
limits: { maxConnections: 500, maxHeaderSize: 32kb, headersTimeout: 5s, requestTimeout: 1m, keepAliveTimeout: 5s, maxBodySize: 1gb }
log: { level: debug, access: true }
workers: auto
shutdown: { drainTimeout: 1.5s, preStopDelay: 3s }
`;
