import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadConfigFile, resolveReplicatedPaths } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/validate.js';

describe('loadConfigFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'balancer-load-'));
    await mkdir(join(dir, 'conf'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const CONFIG = `listen: 127.0.0.1:0
tls: { cert: cert.pem, key: ./key.pem }
admin:
  tokenFile: ./token
pools:
  web:
    backends: [{ url: "https://127.0.0.1:9443" }]
    tls: { ca: ca.pem }
cluster:
  nodeId: n1
  listen: 127.0.0.1:7001
  peers: { n1: 127.0.0.1:7001 }
  secretFile: ../secret
`;

  test('resolves paths against the file directory and reads token and secret files', async () => {
    const conf = join(dir, 'conf');
    await Promise.all([
      writeFile(join(conf, 'balancer.yaml'), CONFIG),
      writeFile(join(conf, 'cert.pem'), 'cert'),
      writeFile(join(conf, 'key.pem'), 'key'),
      writeFile(join(conf, 'ca.pem'), 'ca'),
      writeFile(join(conf, 'token'), 'the-token\n'),
      writeFile(join(dir, 'secret'), '  s3cret-value-long-enough \n'),
    ]);
    const loaded = await loadConfigFile(join(conf, 'balancer.yaml'));
    if (!loaded.ok) throw new Error(loaded.problems.map((p) => formatProblem(loaded.file, p)).join('\n'));
    expect(loaded.baseDir).toBe(conf);
    expect(loaded.config.listeners[0]!.tls?.certificates).toEqual([{ cert: join(conf, 'cert.pem'), key: join(conf, 'key.pem') }]);
    expect(loaded.config.admin).toEqual({ listen: '127.0.0.1:9090', token: 'the-token', tokenFile: join(conf, 'token') });
    expect(loaded.config.cluster).toMatchObject({ secret: 's3cret-value-long-enough', secretFile: join(dir, 'secret'), dataDir: join(conf, 'data', 'n1') });
    expect(loaded.config.pools['web']!.tls.ca).toBe(join(conf, 'ca.pem'));
    // The replicated part keeps the file's own relative path: each node resolves it against its own directory.
    expect(loaded.replicated.pools['web']!.tls.ca).toBe('ca.pem');
    expect(resolveReplicatedPaths(loaded.replicated, '/elsewhere').pools['web']!.tls.ca).toBe('/elsewhere/ca.pem');
    expect(Object.isFrozen(loaded.config.admin)).toBe(true);
    expect(Object.isFrozen(loaded.config.pools['web']!.tls)).toBe(true);
    expect(loaded.text).toBe(CONFIG);
  });

  test('missing files named by the config are problems with positions, all at once', async () => {
    const conf = join(dir, 'conf');
    await writeFile(join(conf, 'balancer.yaml'), CONFIG);
    await writeFile(join(conf, 'token'), '\n');
    const loaded = await loadConfigFile(join(conf, 'balancer.yaml'));
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.problems.map((p) => formatProblem('balancer.yaml', p))).toEqual([
      `balancer.yaml:2:14: tls.cert: cannot read ${join(conf, 'cert.pem')}: no such file`,
      `balancer.yaml:2:29: tls.key: cannot read ${join(conf, 'key.pem')}: no such file`,
      `balancer.yaml:4:14: admin.tokenFile: ${join(conf, 'token')} is empty`,
      `balancer.yaml:8:16: pools.web.tls.ca: cannot read ${join(conf, 'ca.pem')}: no such file`,
      `balancer.yaml:13:15: cluster.secretFile: cannot read ${join(dir, 'secret')}: no such file`,
    ]);
  });

  test('log.accessFile is resolved against the file directory and must be writable or creatable', async () => {
    const conf = join(dir, 'conf');
    await writeFile(join(conf, 'ok.yaml'), 'log: { access: true, accessFile: logs/../access.log }\n');
    const loaded = await loadConfigFile(join(conf, 'ok.yaml'));
    if (!loaded.ok) throw new Error(loaded.problems.map((p) => formatProblem(loaded.file, p)).join('\n'));
    expect(loaded.config.log.accessFile).toBe(join(conf, 'access.log'));
    await writeFile(join(conf, 'bad.yaml'), 'log: { access: true, accessFile: no/such/dir/access.log }\n');
    const bad = await loadConfigFile(join(conf, 'bad.yaml'));
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.problems.map((p) => formatProblem('bad.yaml', p))).toEqual([
      `bad.yaml:1:34: log.accessFile: cannot create ${join(conf, 'no/such/dir/access.log')}: its directory ${join(conf, 'no/such/dir')}: no such file`,
    ]);
  });

  test('a missing config file is one problem without a position', async () => {
    const loaded = await loadConfigFile(join(dir, 'nope.yaml'));
    expect(loaded).toEqual({ ok: false, file: join(dir, 'nope.yaml'), problems: [{ path: '', message: 'cannot read the config file: no such file' }] });
  });

  test('validation problems come through unchanged', async () => {
    await writeFile(join(dir, 'b.yaml'), 'listen: nowhere\n');
    const loaded = await loadConfigFile(join(dir, 'b.yaml'));
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.problems.map((p) => formatProblem('b.yaml', p))).toEqual(['b.yaml:1:9: listen: must be host:port, [ipv6]:port or :port, got string "nowhere"']);
  });
});

describe('the shipped balancer.yaml', () => {
  test('is valid and points editors at the generated schema', async () => {
    const path = new URL('../../balancer.yaml', import.meta.url).pathname;
    const loaded = await loadConfigFile(path);
    if (!loaded.ok) throw new Error(loaded.problems.map((p) => formatProblem(path, p)).join('\n'));
    expect(loaded.text.split('\n', 1)[0]).toBe('# yaml-language-server: $schema=./balancer.schema.json');
    expect(Object.keys(loaded.config.pools).length).toBeGreaterThan(0);
  });
});
