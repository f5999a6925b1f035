import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAdminServer } from '../../src/admin/api.js';
import { adminBaseUrl, EXIT_CODES, type ClientOptions } from '../../src/cli/admin-call.js';
import {
  backendsAddCommand,
  backendsDrainCommand,
  backendsRemoveCommand,
  backendsWeightCommand,
  clusterAddCommand,
  clusterRemoveCommand,
  clusterStatusCommand,
  clusterTransferCommand,
  configDiffCommand,
  configHistoryCommand,
  configRollbackCommand,
  registerClientCommands,
  statusCommand,
} from '../../src/cli/client.js';
import { BalancerError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { closeServer, createFakeControl, listenLocal, type FakeControl } from '../admin/fake-control.js';
import { freePort } from '../helpers/ports.js';

const TOKEN = 'cli-token';

class Capture extends Writable {
  text = '';
  isTTY?: boolean;
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

let control: FakeControl;
let base: string;
let out: Capture;
let err: Capture;
const server = createAdminServer({
  control: new Proxy({} as FakeControl, { get: (_t, key) => Reflect.get(control, key) }),
  metrics: createMetrics({ collectDefault: false }),
  token: TOKEN,
  logger: silentLogger,
});

beforeAll(async () => {
  base = await listenLocal(server);
});
afterAll(() => closeServer(server));
beforeEach(() => {
  control = createFakeControl();
  out = new Capture();
  err = new Capture();
});
afterEach(() => {
  process.exitCode = undefined;
  vi.unstubAllEnvs();
});

function opts(extra: Partial<ClientOptions> = {}): ClientOptions {
  return { admin: base, token: TOKEN, json: false, out, err, ...extra };
}

describe('status', () => {
  it('prints aligned tables with backend ids, states and the cluster, without colour off a terminal', async () => {
    control.setBackend('web', 'web-2', { state: 'down', reason: 'health check failed 3 times' });
    expect(await statusCommand(opts())).toBe(EXIT_CODES.ok);
    const text = out.text;
    expect(text).not.toContain('\u001b[');
    expect(text).toContain('node n1  config v3  ready');
    expect(text).toMatch(/web-1\s+http:\/\/127\.0\.0\.1:9001\s+up\s+3\s+3\s+0/);
    expect(text).toMatch(/web-2\s+http:\/\/127\.0\.0\.1:9002\s+down\s+1\s+1\s+0\s+health check failed 3 times/);
    expect(text).toContain('api-1');
    expect(text).toContain('role leader · term 5 · leader n1 · commit 42 · applied 42');
    expect(text).toMatch(/n3\s+127\.0\.0\.1:7003\s+voter\s+12\s+no/);
    // Columns line up: every row of the web table starts its URL at the same offset.
    const rows = text.split('\n').filter((l) => l.startsWith('web-') || l.startsWith('BACKEND'));
    const urlColumn = rows.map((l) => l.search(/http|URL/));
    expect(new Set(urlColumn).size).toBe(1);
    expect(err.text).toBe('');
  });

  it('shows what a pool hashes on, its sticky cookie, its backup backends and when the backups serve', async () => {
    const row = (id: string, backup: boolean) => ({ id, url: 'http://127.0.0.1:9201', weight: 1, effectiveWeight: 1, backup, state: 'up' as const, inflight: 0, latencyEwmaMs: 10, latencyMeasured: false, consecutiveFailures: 0, ejections: 0, reason: '' });
    control.pools = [
      { name: 'cart', strategy: 'ring-hash', hashOn: 'sourceIp', stickyCookie: 'SRV', panic: false, backupsServing: true, backends: [row('cart-1', false), row('cart-9', true)] },
      { name: 'shop', strategy: 'maglev', hashOn: { query: 'user' }, panic: false, backupsServing: false, backends: [row('shop-1', false)] },
    ];
    expect(await statusCommand(opts())).toBe(EXIT_CODES.ok);
    expect(out.text).toContain('pool cart  ring-hash on sourceIp, sticky cookie SRV  BACKUPS SERVING: no primary backend is up');
    expect(out.text).toContain('pool shop  maglev on query user\n');
    expect(out.text).toMatch(/cart-9 \(backup\)\s+http/);
    expect(out.text).toMatch(/cart-1\s+http/);
  });

  it('colours states on a terminal unless NO_COLOR is set', async () => {
    out.isTTY = true;
    await statusCommand(opts());
    expect(out.text).toContain('\u001b[32mup');
    out = new Capture();
    out.isTTY = true;
    vi.stubEnv('NO_COLOR', '1');
    await statusCommand(opts());
    expect(out.text).not.toContain('\u001b[');
  });

  it('--json prints the API JSON unchanged', async () => {
    expect(await statusCommand(opts({ json: true }))).toBe(EXIT_CODES.ok);
    expect(JSON.parse(out.text)).toEqual(JSON.parse(JSON.stringify(control.status())));
  });

  it('accepts host:port as --admin, like admin.listen', async () => {
    expect(await statusCommand(opts({ admin: base.replace('http://', '') }))).toBe(EXIT_CODES.ok);
    expect(adminBaseUrl('0.0.0.0:9090')).toBe('http://127.0.0.1:9090');
    expect(adminBaseUrl('[::]:9090')).toBe('http://[::1]:9090');
    expect(adminBaseUrl('https://lb.example:9443/')).toBe('https://lb.example:9443');
    expect(adminBaseUrl('ftp://x')).toBeNull();
  });
});

describe('failures and exit codes', () => {
  it('unreachable: exit 3 with a message naming the address', async () => {
    const port = await freePort();
    expect(await statusCommand(opts({ admin: `http://127.0.0.1:${port}` }))).toBe(EXIT_CODES.unreachable);
    expect(err.text).toBe(
      `cannot reach admin API at http://127.0.0.1:${port} (ECONNREFUSED): is balancer running? use --admin URL\n`,
    );
    expect(out.text).toBe('');
  });

  it('no answer in time: exit 3', async () => {
    const silent = createServer(() => {});
    const url = await listenLocal(silent);
    try {
      expect(await statusCommand(opts({ admin: url, timeoutMs: 200 }))).toBe(EXIT_CODES.unreachable);
      expect(err.text).toContain('did not answer within 0.2 s');
    } finally {
      await closeServer(silent);
    }
  });

  it('something that is not the admin API: exit 3', async () => {
    const other: Server = createServer((_req, res) => res.end('<html>hello</html>'));
    const url = await listenLocal(other);
    try {
      expect(await statusCommand(opts({ admin: url }))).toBe(EXIT_CODES.unreachable);
      expect(err.text).toContain("is this balancer's admin listener?");
    } finally {
      await closeServer(other);
    }
  });

  it('wrong token: exit 4; missing token: exit 4', async () => {
    expect(await statusCommand(opts({ token: 'wrong' }))).toBe(EXIT_CODES.auth);
    expect(err.text).toBe('token rejected (403): set --token or BALANCER_ADMIN_TOKEN\n');
    err.text = '';
    expect(await statusCommand(opts({ token: null }))).toBe(EXIT_CODES.auth);
    expect(err.text).toBe('token missing (401): set --token or BALANCER_ADMIN_TOKEN\n');
  });

  it('invalid change: exit 1 with every problem listed', async () => {
    control.failWrites = new BalancerError('CONFIG_INVALID', 'config has 2 problems', {
      details: [
        { path: 'pools.web.backends[2].url', message: 'url must use http or https' },
        { path: 'pools.web.backends[2].weight', line: 4, column: 9, message: 'weight must be at most 1000' },
        { path: 'routes[0].pool', message: 'routes[0].pool: unknown pool "nope"' },
      ],
    });
    expect(await backendsAddCommand(opts(), 'web', 'ftp://x', { weight: 5000 })).toBe(EXIT_CODES.refused);
    expect(err.text).toBe(
      'refused (422 CONFIG_INVALID): config has 2 problems\n' +
        '  - pools.web.backends[2].url: url must use http or https\n' +
        '  - pools.web.backends[2].weight:4:9: weight must be at most 1000\n' +
        '  - routes[0].pool: unknown pool "nope"\n',
    );
  });

  it('not found: exit 1; --json still prints the error body', async () => {
    expect(await backendsRemoveCommand(opts({ json: true }), 'web', 'nope')).toBe(EXIT_CODES.refused);
    expect(JSON.parse(out.text)).toMatchObject({ error: { code: 'NOT_FOUND' } });
    expect(err.text).toContain('refused (404 NOT_FOUND)');
  });

  it('no leader: exit 5', async () => {
    control.failWrites = new BalancerError('NO_LEADER', 'no Raft leader is known');
    expect(await backendsDrainCommand(opts(), 'web', 'web-1')).toBe(EXIT_CODES.unavailable);
    expect(err.text).toBe('unavailable (503 NO_LEADER): no Raft leader is known; retry in 1 s\n');
  });
});

describe('backend and cluster commands', () => {
  it('add, drain, undrain, weight and remove a backend', async () => {
    expect(await backendsAddCommand(opts(), 'web', 'http://127.0.0.1:9003', { weight: 2, id: 'web-3' })).toBe(0);
    expect(out.text).toBe('added backend web-3 (http://127.0.0.1:9003, weight 2) to pool web; config version 4\n');
    expect(await backendsDrainCommand(opts(), 'web', 'web-3')).toBe(0);
    expect(await backendsDrainCommand(opts(), 'web', 'web-3', false)).toBe(0);
    expect(await backendsWeightCommand(opts(), 'web', 'web-3', 7)).toBe(0);
    expect(await backendsRemoveCommand(opts(), 'web', 'web-3')).toBe(0);
    expect(await backendsRemoveCommand(opts(), 'web', 'web-1', true)).toBe(0);
    expect(control.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['addBackend', 'web', { url: 'http://127.0.0.1:9003', weight: 2, id: 'web-3' }],
      ['updateBackend', 'web', 'web-3', { drain: true }],
      ['updateBackend', 'web', 'web-3', { drain: false }],
      ['updateBackend', 'web', 'web-3', { weight: 7 }],
      ['removeBackend', 'web', 'web-3', { force: false, origin: { via: 'cli' } }],
      ['removeBackend', 'web', 'web-1', { force: true, origin: { via: 'cli' } }],
    ]);
    expect(out.text).toContain('removed backend web-3 from pool web; config version 8\n');
  });

  it('adds a backup backend', async () => {
    expect(await backendsAddCommand(opts(), 'web', 'http://127.0.0.1:9009', { id: 'spare', backup: true })).toBe(0);
    expect(out.text).toBe('added backend spare (http://127.0.0.1:9009, weight 1, backup) to pool web; config version 4\n');
    expect(control.calls.map((c) => [c.method, ...c.args])).toEqual([['addBackend', 'web', { url: 'http://127.0.0.1:9009', id: 'spare', backup: true }]]);
  });

  it('cluster status, add, remove and transfer', async () => {
    expect(await clusterStatusCommand(opts())).toBe(0);
    expect(out.text).toMatch(/n1 \(this node\)\s+127\.0\.0\.1:7001\s+leader\s+42\s+yes/);
    expect(await clusterAddCommand(opts(), 'n4', '127.0.0.1:7004', true)).toBe(0);
    expect(out.text).toContain('added n4 (127.0.0.1:7004) as a learner');
    expect(out.text).toMatch(/n4\s+127\.0\.0\.1:7004\s+learner/);
    expect(await clusterRemoveCommand(opts(), 'n4')).toBe(0);
    out.text = '';
    expect(await clusterTransferCommand(opts({ json: true }), 'n2')).toBe(0);
    expect(JSON.parse(out.text)).toMatchObject({ leader: 'n2' });
  });
});

describe('config commands', () => {
  it('history lists versions newest first with when, from where, what and the request ids; the current one is marked', async () => {
    control.version = 3;
    expect(await configHistoryCommand(opts())).toBe(0);
    const lines = out.text.split('\n');
    expect(lines[0]).toMatch(/^VERSION\s+WHEN\s+FROM\s+CHANGE\s+REQUEST ID$/);
    expect(lines[1]).toMatch(/^v3 \*\s+2026-11-30 01:02:03Z\s+CLI on n2\s+add backend web\/web-2\s+req-3$/);
    expect(lines[2]).toMatch(/^v2\s+2026-11-30 01:00:00Z\s+file \/etc\/balancer\/balancer.yaml on n1\s+set config\s+req-2 \(deploy-42\)$/);
    out.text = '';
    expect(await configHistoryCommand(opts({ json: true }), 1)).toBe(0);
    expect(JSON.parse(out.text).versions.map((v: { version: number }) => v.version)).toEqual([3]);
  });

  it('diff prints a unified diff of routes and pools between two versions', async () => {
    expect(await configDiffCommand(opts(), 2, 3)).toBe(0);
    expect(out.text).toContain('--- v2\n+++ v3\n');
    expect(out.text).toContain('+      - { url: http://10.0.0.2:80, id: web-2 }\n');
    out.text = '';
    expect(await configDiffCommand(opts(), 3, 3)).toBe(0);
    expect(out.text).toBe('v3 and v3 have the same routes and pools\n');
    expect(await configDiffCommand(opts(), 2, 99)).toBe(EXIT_CODES.refused);
    expect(err.text).toContain('version 99 is not in');
  });

  it('rollback asks the API for a compare-and-set rollback, identifying itself as the CLI', async () => {
    expect(await configRollbackCommand(opts(), 2)).toBe(0);
    expect(out.text).toBe('rolled back to the config of v2: it is now version 4\n');
    expect(await configRollbackCommand(opts(), 2, true)).toBe(0);
    expect(control.calls.filter((c) => c.method === 'rollback').map((c) => c.args)).toEqual([
      [2, { force: false, origin: { via: 'cli' } }],
      [2, { force: true, origin: { via: 'cli' } }],
    ]);
    expect(await configRollbackCommand(opts(), 42)).toBe(EXIT_CODES.refused);
  });
});

describe('registerClientCommands', () => {
  function program(defaults: { admin: string; token: string | null }): Command {
    const p = new Command().name('balancer');
    registerClientCommands(p, async () => defaults, { out, err });
    return p;
  }

  it('runs a command with explicit --admin/--token and sets the exit code', async () => {
    const resolve = vi.fn(async () => ({ admin: 'http://127.0.0.1:1', token: 'unused' }));
    const p = new Command().name('balancer');
    registerClientCommands(p, resolve, { out, err });
    await p.parseAsync(['backends', 'weight', 'web', 'web-1', '5', '--admin', base, '--token', TOKEN], { from: 'user' });
    expect(process.exitCode).toBe(0);
    expect(resolve).not.toHaveBeenCalled();
    expect(control.calls.at(-1)).toEqual({ method: 'updateBackend', args: ['web', 'web-1', { weight: 5 }] });
  });

  it('falls back to the resolved defaults', async () => {
    await program({ admin: base.replace('http://', ''), token: TOKEN }).parseAsync(['status', '--json'], { from: 'user' });
    expect(process.exitCode).toBe(0);
    expect(JSON.parse(out.text)).toMatchObject({ node: 'n1' });
  });

  it('maps an unreachable admin API and a wrong token to their exit codes', async () => {
    const port = await freePort();
    await program({ admin: `127.0.0.1:${port}`, token: TOKEN }).parseAsync(['cluster', 'status'], { from: 'user' });
    expect(process.exitCode).toBe(EXIT_CODES.unreachable);
    await program({ admin: base, token: 'bad' }).parseAsync(['backends', 'drain', 'web', 'web-1'], { from: 'user' });
    expect(process.exitCode).toBe(EXIT_CODES.auth);
  });

  it('usage errors exit 2: a bad weight, and missing arguments', async () => {
    await program({ admin: base, token: TOKEN }).parseAsync(['backends', 'weight', 'web', 'web-1', 'heavy'], { from: 'user' });
    expect(process.exitCode).toBe(EXIT_CODES.usage);
    expect(err.text).toBe(
      'error: weight must be a whole number from 1 to 10000 (to stop sending to a backend, drain it), got "heavy"\n' +
        '(see `balancer backends weight --help`)\n',
    );
    expect(control.calls).toEqual([]);

    const exit = vi.spyOn(process, 'exit').mockImplementation(((code?: number) => {
      throw new Error(`exit ${code}`);
    }) as never);
    try {
      await expect(program({ admin: base, token: TOKEN }).parseAsync(['backends', 'add', 'web'], { from: 'user' })).rejects.toThrow(
        'exit 2',
      );
      expect(err.text).toContain("missing required argument 'url'");
    } finally {
      exit.mockRestore();
    }
  });

  it('a config version that is not a whole number is a usage error', async () => {
    await program({ admin: base, token: TOKEN }).parseAsync(['config', 'rollback', 'latest'], { from: 'user' });
    expect(process.exitCode).toBe(EXIT_CODES.usage);
    expect(err.text).toContain('a config version is a whole number');
    await program({ admin: base, token: TOKEN }).parseAsync(['config', 'diff', 'v2', 'v3'], { from: 'user' });
    expect(process.exitCode).toBe(0);
    expect(control.calls.filter((c) => c.method === 'rollback')).toEqual([]);
  });
});
