// The admin HTTP server: /metrics, /healthz, /readyz, the dashboard page and the token-guarded /api/v1 control API.

import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { LineCounter, parseDocument } from 'yaml';
import type { ChangeOrigin, ControlPlane } from '../control/types.js';
import type { HistoryEntry } from '../control/history.js';
import { unifiedDiff } from '../config/diff.js';
import { CLI_USER_AGENT_PREFIX } from '../version.js';
import { BalancerError, errorMessage, type ErrorBody, type ProblemDetail } from '../errors.js';
import { isPlainObject } from '../json.js';
import type { Logger } from '../log.js';
import { createTokenChecker, TOKEN_HOWTO } from './auth.js';
import { MetricsHistory } from './history.js';
import { charsetIsUtf8, mapError, mediaType, readBody, sendJson, sendText } from './http-util.js';
import { canAnswerClientError, dropAfterClientError, endConnection, isClosing } from '../connection-close.js';
import { parseErrorReply } from '../proxy/error-status.js';
import { listRoutes, RouteTestError, testRoute } from '../proxy/route-explain.js';
import { validateReplicated } from '../config/validate.js';
import type { ReplicatedConfig } from '../config/schema.js';
import type { RequestCounters } from '../metrics/request-counters.js';

/** 1 MiB: a config with thousands of backends fits; anything bigger is a mistake or an attack. */
const DEFAULT_ADMIN_BODY_LIMIT = 1024 * 1024;

/** Time an admin client has to send a request head, unless the node's `limits.headersTimeout` says otherwise. */
const DEFAULT_ADMIN_HEADERS_TIMEOUT_MS = 10_000;
/** Time an admin client has to send a whole request (a config of up to the body limit). */
const ADMIN_REQUEST_TIMEOUT_MS = 30_000;

const CONFIG_MEDIA_TYPES: readonly string[] = ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml'];
const JSON_MEDIA_TYPES: readonly string[] = ['application/json'];

export interface AdminServerOptions {
  control: ControlPlane;
  /**
   * requestFamilies: the dashboard history's cheaper read (see PrometheusMetrics.renderRequestFamilies); default render.
   * requestCounters: its read without text, where the counters live in this process (see PrometheusMetrics.requestCounters).
   */
  metrics: { render(): Promise<string>; contentType: string; requestFamilies?(): Promise<string>; requestCounters?(): Map<string, RequestCounters> };
  /** null: no token configured, so every /api/v1 call is refused with instructions. */
  token: string | null;
  logger: Logger;
  bodyLimit?: number;
  headersTimeoutMs?: number;
}

type Params = Readonly<Record<string, string>>;

interface Call {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly params: Params;
  /** Reads and parses the body, enforcing the size limit and one of `accepted` media types. */
  body(accepted: readonly string[]): Promise<{ value: unknown; text: string }>;
}

type Handler = (call: Call) => Promise<void> | void;

interface Route {
  readonly segments: readonly string[];
  readonly methods: Readonly<Record<string, Handler>>;
  readonly api: boolean;
}

function route(path: string, methods: Record<string, Handler>): Route {
  const withHead: Record<string, Handler> = { ...methods };
  if (methods['GET'] !== undefined && methods['HEAD'] === undefined) withHead['HEAD'] = methods['GET'];
  return { segments: path.split('/').slice(1), methods: withHead, api: path.startsWith('/api/') };
}

function matchRoute(routes: readonly Route[], segments: readonly string[]): { route: Route; params: Params } | null {
  for (const candidate of routes) {
    if (candidate.segments.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let matched = true;
    for (let i = 0; i < segments.length; i++) {
      const pattern = candidate.segments[i]!;
      const actual = segments[i]!;
      if (pattern.startsWith(':')) {
        if (actual === '') {
          matched = false;
          break;
        }
        params[pattern.slice(1)] = actual;
      } else if (pattern !== actual) {
        matched = false;
        break;
      }
    }
    if (matched) return { route: candidate, params };
  }
  return null;
}

function badRequest(message: string, details: readonly ProblemDetail[] = []): BalancerError {
  return new BalancerError('BAD_REQUEST', message, { details });
}

function parseBody(text: string, type: string): unknown {
  if (text.trim() === '') throw badRequest('request body is empty');
  if (type === 'application/json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw badRequest(`request body is not valid JSON: ${errorMessage(error)}`);
    }
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    throw badRequest(
      'request body is not valid YAML',
      doc.errors.map((e) => {
        const at = lineCounter.linePos(e.pos[0]);
        return { path: '', line: at.line, column: at.col, message: e.message };
      }),
    );
  }
  return doc.toJS() as unknown;
}

type FieldType = 'string' | 'number' | 'boolean' | 'object';

/** Checks a JSON body's shape, listing every wrong or unknown field; semantic checks stay with the validator. */
function fields<T>(value: unknown, spec: Record<string, { type: FieldType; required?: boolean }>): T {
  if (!isPlainObject(value)) throw badRequest('request body must be a JSON object');
  const problems: ProblemDetail[] = [];
  const record = value;
  for (const [name, rule] of Object.entries(spec)) {
    const field = record[name];
    if (field === undefined) {
      if (rule.required === true) problems.push({ path: name, message: `${name} is required` });
    } else if (typeof field !== rule.type) {
      problems.push({ path: name, message: `${name} must be a ${rule.type}` });
    }
  }
  for (const name of Object.keys(record)) {
    if (!(name in spec)) {
      problems.push({ path: name, message: `unknown field ${name}; expected one of ${Object.keys(spec).join(', ')}` });
    }
  }
  if (problems.length > 0) throw badRequest('request body has invalid fields', problems);
  return record as T;
}

/** `"N"` → N; `*` → no precondition; anything else is malformed (weak tags never match a strong If-Match). */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (trimmed === '*') return undefined;
  const match = /^"(\d{1,15})"$/.exec(trimmed);
  if (match === null) {
    throw badRequest(`If-Match must be a config version as an ETag, like "12" (got ${JSON.stringify(header)})`);
  }
  return Number(match[1]);
}

/**
 * The Idempotency-Key header, which becomes the write's request id: sent again with the same key, a write is
 * applied at most once (in a cluster; a single node answers every write definitely, so it needs none).
 */
function idempotencyKey(req: IncomingMessage): { requestId?: string } {
  const header = req.headers['idempotency-key'];
  if (header === undefined) return {};
  if (Array.isArray(header) || !/^[A-Za-z0-9._:-]{1,128}$/.test(header)) {
    throw badRequest('Idempotency-Key must be one value of 1 to 128 letters, digits and . _ : -');
  }
  return { requestId: header };
}

/** `?force=true` (or `1`, or a bare `?force`) lets a write through the check that refuses changes taking traffic down. */
function parseForce(url: string | undefined): boolean {
  const query = new URLSearchParams((url ?? '').split('?')[1] ?? '');
  const values = query.getAll('force');
  if (values.length === 0) return false;
  if (values.length > 1) throw badRequest('give force at most once');
  const value = values[0]!.toLowerCase();
  if (value === '' || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw badRequest(`force must be true or false, got ${JSON.stringify(values[0])}`);
}

/** An X-Request-Id a caller may send: printable, short; anything else is ignored rather than stored. */
const CLIENT_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Who is asking, for the config history: the CLI says so in its User-Agent; the caller's X-Request-Id is kept. */
function changeOrigin(req: IncomingMessage): ChangeOrigin {
  const via = (req.headers['user-agent'] ?? '').startsWith(CLI_USER_AGENT_PREFIX) ? 'cli' : 'api';
  const clientRequestId = req.headers['x-request-id'];
  return typeof clientRequestId === 'string' && CLIENT_REQUEST_ID.test(clientRequestId) ? { via, clientRequestId } : { via };
}

/** `?name=N` as a config version: a positive whole number. */
function versionParam(url: string | undefined, name: string): number {
  const raw = new URLSearchParams((url ?? '').split('?')[1] ?? '').get(name);
  if (raw === null) throw badRequest(`give ?${name}=VERSION`);
  return parseVersion(raw, name);
}

function parseVersion(raw: string, name: string): number {
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1) throw badRequest(`${name} must be a config version (a whole number from 1), got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function historyEntry(control: ControlPlane, version: number): HistoryEntry {
  const entry = control.history().find((candidate) => candidate.version === version);
  if (entry === undefined) {
    throw new BalancerError('NOT_FOUND', `version ${version} is not in this node's config history; GET /api/v1/config/history lists the versions it keeps`);
  }
  return entry;
}

/** The current replicated config as the data plane compiles it (the control plane keeps its file form). */
async function typedConfig(control: ControlPlane): Promise<{ version: number; config: ReplicatedConfig }> {
  const { version, config } = await control.getConfig();
  const typed = validateReplicated(config);
  // What the control plane applied validated once already; failing now would be a bug, not bad input.
  if (!typed.ok) throw new BalancerError('INTERNAL', `the current config does not validate: ${typed.problems.map((problem) => problem.message).join('; ')}`);
  return { version, config: typed.config };
}

function etag(version: number): string {
  return `"${version}"`;
}

function backendLocation(pool: string, id: string): string {
  return `/api/v1/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(id)}`;
}

/** The admin listener; its token can change while it runs (the file was edited). */
export interface AdminServer extends Server {
  /** From the next request on, only `token` is accepted (null: the API is disabled, as at start without one). */
  setToken(token: string | null): void;
}

export function createAdminServer(options: AdminServerOptions): AdminServer {
  const { control, metrics, logger } = options;
  const bodyLimit = options.bodyLimit ?? DEFAULT_ADMIN_BODY_LIMIT;
  let checkToken = createTokenChecker(options.token);
  const disabledMessage = `the admin API is disabled because no admin token is set: ${TOKEN_HOWTO}`;
  if (options.token === null) logger.warn(disabledMessage);
  // The dashboard's charts: sampled each second while the admin listener is open.
  const requestCounters = metrics.requestCounters;
  const history = new MetricsHistory({
    requestFamilies: () => (metrics.requestFamilies ?? metrics.render)(),
    ...(requestCounters === undefined ? {} : { requestCounters: () => requestCounters() }),
    status: () => control.status(),
    changes: () => control.history(),
  });

  const routes: readonly Route[] = [
    route('/', {
      GET: async ({ res }) => {
        // Loaded on the first visit: the page (~80 KB of text, twice: the module's source and the built page) is
        // heap for the life of the process, and a gateway that nobody opens the dashboard of never needs it.
        const { DASHBOARD_HTML, DASHBOARD_SECURITY_HEADERS } = await import('./dashboard.js');
        sendText(res, 200, DASHBOARD_HTML, 'text/html; charset=utf-8', DASHBOARD_SECURITY_HEADERS);
      },
    }),
    route('/metrics', {
      GET: async ({ res }) => sendText(res, 200, await metrics.render(), metrics.contentType),
    }),
    route('/healthz', { GET: ({ res }) => sendText(res, 200, 'ok\n', 'text/plain; charset=utf-8') }),
    route('/readyz', {
      GET: ({ res }) => {
        const notReady = control.readiness.notReady();
        if (notReady.length === 0) sendText(res, 200, 'ready\n', 'text/plain; charset=utf-8');
        else sendText(res, 503, `not ready: ${notReady.map((item) => item.reason).join('; ')}\n`, 'text/plain; charset=utf-8');
      },
    }),
    route('/api/v1/status', { GET: ({ res }) => sendJson(res, 200, control.status()) }),
    route('/api/v1/history', { GET: ({ res }) => sendJson(res, 200, history.snapshot()) }),
    route('/api/v1/config', {
      GET: async ({ res }) => {
        const { version, config } = await control.getConfig();
        sendJson(res, 200, { version, routes: config.routes, pools: config.pools }, { ETag: etag(version) });
      },
      PUT: async ({ req, res, body }) => {
        const ifMatch = parseIfMatch(req.headers['if-match']);
        const force = parseForce(req.url);
        const { value, text } = await body(CONFIG_MEDIA_TYPES);
        if (!isPlainObject(value)) {
          throw badRequest('config body must be a mapping with routes and pools');
        }
        // GET returns the version beside routes and pools; dropping it lets a GET-edit-PUT round trip work.
        const { version: _ignored, ...replicated } = value;
        const result = await control.putConfig(replicated, {
          ...(ifMatch === undefined ? {} : { ifMatch }),
          sourceText: text,
          force,
          origin: changeOrigin(req),
          ...idempotencyKey(req),
        });
        logger.info('config replaced through the admin API', { version: result.version, requestId: result.requestId, ...(force ? { forced: true } : {}) });
        sendJson(res, 200, { version: result.version }, { ETag: etag(result.version), 'X-Request-Id': result.requestId });
      },
    }),
    route('/api/v1/config/history', {
      GET: ({ res }) => {
        const versions = control.history().map(({ config: _config, ...summary }) => summary);
        sendJson(res, 200, { current: control.status().version, versions });
      },
    }),
    route('/api/v1/config/history/:version', {
      GET: ({ res, params }) => {
        const { config, ...summary } = historyEntry(control, parseVersion(params['version']!, 'version'));
        sendJson(res, 200, { ...summary, routes: config.routes, pools: config.pools }, { ETag: etag(summary.version) });
      },
    }),
    route('/api/v1/config/diff', {
      GET: async ({ req, res }) => {
        const from = historyEntry(control, versionParam(req.url, 'from'));
        const to = historyEntry(control, versionParam(req.url, 'to'));
        // Loaded by the first diff (as by the first change, control/local-store.ts): most nodes never ask for one.
        const { renderReplicatedText } = await import('../config/write.js');
        const diff = unifiedDiff(renderReplicatedText(from.config), renderReplicatedText(to.config), { from: `v${from.version}`, to: `v${to.version}` });
        sendJson(res, 200, { from: from.version, to: to.version, diff });
      },
    }),
    route('/api/v1/config/rollback', {
      POST: async ({ req, res, body }) => {
        const ifMatch = parseIfMatch(req.headers['if-match']);
        const force = parseForce(req.url);
        const input = fields<{ version: number }>((await body(JSON_MEDIA_TYPES)).value, { version: { type: 'number', required: true } });
        if (!Number.isSafeInteger(input.version) || input.version < 1) throw badRequest('version must be a config version (a whole number from 1)');
        const result = await control.rollback(input.version, { ...(ifMatch === undefined ? {} : { ifMatch }), force, origin: changeOrigin(req), ...idempotencyKey(req) });
        logger.info('config rolled back through the admin API', { to: input.version, version: result.version, requestId: result.requestId, ...(force ? { forced: true } : {}) });
        sendJson(res, 200, { version: result.version, rolledBackTo: input.version }, { ETag: etag(result.version), 'X-Request-Id': result.requestId });
      },
    }),
    route('/api/v1/pools/:pool/backends', {
      POST: async ({ req, res, params, body }) => {
        const pool = params['pool']!;
        const input = fields<{ url: string; weight?: number; id?: string; backup?: boolean }>((await body(JSON_MEDIA_TYPES)).value, {
          url: { type: 'string', required: true },
          weight: { type: 'number' },
          id: { type: 'string' },
          backup: { type: 'boolean' },
        });
        const result = await control.addBackend(pool, input, { origin: changeOrigin(req), ...idempotencyKey(req) });
        logger.info('backend added through the admin API', { pool, backend: result.backend.id, version: result.version, requestId: result.requestId });
        sendJson(res, 201, { version: result.version, backend: result.backend }, { Location: backendLocation(pool, result.backend.id), 'X-Request-Id': result.requestId });
      },
    }),
    route('/api/v1/pools/:pool/backends/:id', {
      PATCH: async ({ req, res, params, body }) => {
        const pool = params['pool']!;
        const id = params['id']!;
        const patch = fields<{ weight?: number; drain?: boolean }>((await body(JSON_MEDIA_TYPES)).value, {
          weight: { type: 'number' },
          drain: { type: 'boolean' },
        });
        if (patch.weight === undefined && patch.drain === undefined) {
          throw badRequest('nothing to change: give weight and/or drain');
        }
        const result = await control.updateBackend(pool, id, patch, { origin: changeOrigin(req), ...idempotencyKey(req) });
        logger.info('backend updated through the admin API', { pool, backend: id, ...patch, version: result.version, requestId: result.requestId });
        sendJson(res, 200, { version: result.version }, { 'X-Request-Id': result.requestId });
      },
      DELETE: async ({ req, res, params }) => {
        const pool = params['pool']!;
        const id = params['id']!;
        const force = parseForce(req.url);
        const result = await control.removeBackend(pool, id, { force, origin: changeOrigin(req), ...idempotencyKey(req) });
        logger.info('backend removed through the admin API', { pool, backend: id, version: result.version, requestId: result.requestId, ...(force ? { forced: true } : {}) });
        sendJson(res, 200, { version: result.version }, { 'X-Request-Id': result.requestId });
      },
    }),
    route('/api/v1/routes', {
      GET: async ({ res }) => {
        const { version, config } = await typedConfig(control);
        sendJson(res, 200, { version, routes: listRoutes(config) }, { ETag: etag(version) });
      },
    }),
    route('/api/v1/routes/test', {
      POST: async ({ res, body }) => {
        const input = fields<{ method: string; url: string; headers?: unknown; listener?: string }>((await body(JSON_MEDIA_TYPES)).value, {
          method: { type: 'string', required: true },
          url: { type: 'string', required: true },
          headers: { type: 'object' },
          listener: { type: 'string' },
        });
        const headers = input.headers ?? {};
        if (Array.isArray(headers) || headers === null || Object.values(headers).some((value) => typeof value !== 'string')) {
          throw badRequest('headers must be an object of header name to string value');
        }
        const { version, config } = await typedConfig(control);
        try {
          sendJson(res, 200, { version, ...testRoute(config, { method: input.method, url: input.url, headers: headers as Record<string, string>, ...(input.listener === undefined ? {} : { listener: input.listener }) }) });
        } catch (error) {
          if (error instanceof RouteTestError) throw badRequest(error.message);
          throw error;
        }
      },
    }),
    route('/api/v1/cluster', { GET: ({ res }) => sendJson(res, 200, control.cluster()) }),
    route('/api/v1/cluster/members', {
      POST: async ({ res, body }) => {
        const input = fields<{ id: string; address: string; learner?: boolean }>((await body(JSON_MEDIA_TYPES)).value, {
          id: { type: 'string', required: true },
          address: { type: 'string', required: true },
          learner: { type: 'boolean' },
        });
        const status = await control.addMember(input.id, input.address, input.learner ?? false);
        logger.info('cluster member added through the admin API', { member: input.id, address: input.address });
        sendJson(res, 200, status);
      },
    }),
    route('/api/v1/cluster/members/:id', {
      DELETE: async ({ res, params }) => {
        const status = await control.removeMember(params['id']!);
        logger.info('cluster member removed through the admin API', { member: params['id'] });
        sendJson(res, 200, status);
      },
    }),
    route('/api/v1/cluster/leader', {
      POST: async ({ res, body }) => {
        const input = fields<{ id: string }>((await body(JSON_MEDIA_TYPES)).value, { id: { type: 'string', required: true } });
        const status = await control.transferLeader(input.id);
        logger.info('leadership transfer requested through the admin API', { to: input.id });
        sendJson(res, 200, status);
      },
    }),
  ];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const rawPath = (req.url ?? '/').split('?')[0]!;
    let allow: readonly string[] | undefined;
    try {
      let segments: string[];
      try {
        segments = rawPath.split('/').slice(1).map((s) => decodeURIComponent(s));
      } catch {
        throw badRequest('the request path is not valid percent-encoding');
      }
      // No CORS: a preflight is refused outright (before auth, since browsers never send credentials with one).
      if (method === 'OPTIONS') {
        const found = matchRoute(routes, segments);
        if (found === null) throw new BalancerError('NOT_FOUND', `no such endpoint: ${rawPath}`);
        allow = Object.keys(found.route.methods);
        throw new BalancerError('METHOD_NOT_ALLOWED', `OPTIONS is not supported (no CORS); allowed: ${allow.join(', ')}`);
      }
      const isApi = segments[0] === 'api';
      // Authenticate before routing, so unauthenticated callers learn nothing about which API paths exist.
      if (isApi) {
        const outcome = checkToken(req.headers['authorization']);
        if (outcome === 'disabled') throw new BalancerError('ADMIN_TOKEN_NOT_SET', disabledMessage);
        if (outcome === 'missing') {
          throw new BalancerError('UNAUTHORIZED', 'this call needs an Authorization: Bearer TOKEN header');
        }
        if (outcome === 'wrong') throw new BalancerError('FORBIDDEN', 'the admin token is not valid');
      }
      const found = matchRoute(routes, segments);
      if (found === null) throw new BalancerError('NOT_FOUND', `no such endpoint: ${rawPath}`);
      const handler = found.route.methods[method];
      if (handler === undefined) {
        allow = Object.keys(found.route.methods);
        throw new BalancerError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${rawPath}; allowed: ${allow.join(', ')}`);
      }
      await handler({
        req,
        res,
        params: found.params,
        body: async (accepted) => {
          const type = mediaType(req.headers['content-type']);
          if (type === null || !accepted.includes(type) || !charsetIsUtf8(req.headers['content-type'])) {
            throw new BalancerError(
              'UNSUPPORTED_MEDIA_TYPE',
              `Content-Type must be ${accepted.join(' or ')} (UTF-8); got ${req.headers['content-type'] ?? 'none'}`,
            );
          }
          const text = await readBody(req, bodyLimit);
          return { value: parseBody(text, type), text };
        },
      });
    } catch (error) {
      const mapped = mapError(error, allow);
      if (mapped.internal) {
        logger.error('admin request failed', { method, path: rawPath, error });
      } else if (mapped.status >= 500) {
        logger.warn('admin request could not be served', { method, path: rawPath, code: mapped.body.error.code });
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const headers: Record<string, string> = { ...mapped.headers };
      // The unread rest of an oversized or refused body would otherwise have to be drained first.
      if (!req.complete) headers['Connection'] = 'close';
      sendJson(res, mapped.status, mapped.body, headers);
    }
  };

  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_ADMIN_HEADERS_TIMEOUT_MS;
  const server = createServer(
    {
      // Bounded so that slow or stuck clients cannot pin admin sockets; Node checks on this period (30 s by default).
      headersTimeout,
      requestTimeout: Math.max(ADMIN_REQUEST_TIMEOUT_MS, headersTimeout),
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    },
    (req, res) => {
      // The rest of a request head that timed out, completed while its connection lingers: never served.
      if (isClosing(req.socket)) {
        req.socket.destroy();
        return;
      }
      void handle(req, res);
    },
  );
  // Node's own answer destroys at once, which can reset the connection before the client read it.
  server.on('clientError', (error: Error & { code?: string }, socket) => {
    if (!canAnswerClientError(error.code, socket)) {
      dropAfterClientError(error.code, socket);
      return;
    }
    const reply = parseErrorReply(error.code);
    const body: ErrorBody = { error: { code: reply.code, message: reply.message, details: [] } };
    const text = JSON.stringify(body) + '\n';
    endConnection(
      socket,
      `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
    );
  });
  server.on('listening', () => {
    history.start();
    void history.sample().catch((error: unknown) => logger.warn('dashboard history sample failed', { err: error }));
  });
  server.on('close', () => history.stop());
  return Object.assign(server, {
    setToken(token: string | null): void {
      checkToken = createTokenChecker(token);
      if (token === null) logger.warn(disabledMessage);
    },
  });
}
