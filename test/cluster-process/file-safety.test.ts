// One bad file is not an edit of the fleet: a follower's emptied, truncated or backend-less balancer.yaml while traffic runs, three real processes.

import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { ADMIN_TOKEN, ProcessCluster } from '../helpers/process-cluster.js';
import { runCli } from '../helpers/process.js';
import { startTraffic, type RunningTraffic, type TrafficTally } from '../helpers/traffic.js';
import { eventually } from '../helpers/wait.js';

const ids = ['n1', 'n2', 'n3'];

function replicatedYaml(api: TestBackend, web: readonly TestBackend[]): string {
  return [
    'routes:',
    '  - match: { pathPrefix: /api }',
    '    pool: api',
    '  - match: { pathPrefix: / }',
    '    pool: web',
    'pools:',
    '  api:',
    '    backends:',
    `      - { url: ${api.url}, id: ${api.name} }`,
    '  web:',
    '    backends:',
    ...web.map((b) => `      - { url: ${b.url}, id: ${b.name} }`),
  ].join('\n');
}

function expectAllServed(tally: TrafficTally): void {
  expect(tally.total).toBeGreaterThan(0);
  expect(Object.keys(tally.byOutcome), `${JSON.stringify(tally.byOutcome)} ${tally.examples.join('\n')}`).toEqual(['200']);
}

describe("a follower's balancer.yaml emptied, truncated or stripped of backends", () => {
  let cluster: ProcessCluster;
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;
  let version = 0;

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startBackend('a'), startBackend('b'), startBackend('c')]);
    cluster = await ProcessCluster.create({ replicated: replicatedYaml(a, [b, c]) });
    await cluster.startAll();
    await cluster.waitForLeader(ids);
    version = (await cluster.waitForVersion(ids, 1))[0]!.version;
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await Promise.all([a, b, c].map((backend) => backend?.close()));
  });

  async function follower(): Promise<string> {
    const leader = await cluster.waitForLeader(ids);
    return ids.find((id) => id !== leader)!;
  }

  function traffic(): RunningTraffic {
    return startTraffic(ids.flatMap((id) => [`${cluster.node(id).proxy}/`, `${cluster.node(id).proxy}/api/x`]), { maxMs: 60_000 });
  }

  async function files(): Promise<Record<string, string>> {
    return Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await readFile(cluster.node(id).file, 'utf8')] as const)));
  }

  /** Every node still at `version`, and its proxy still routing /api to pool api. */
  async function expectUnchanged(expected: number): Promise<void> {
    for (const id of ids) {
      const view = await cluster.config(id);
      expect(view.version).toBe(expected);
      expect(Object.keys(view.pools).sort()).toEqual(['api', 'web']);
      // Pool api holds a (and c once a test adds it there).
      expect(['a', 'c']).toContain(await cluster.servedBy(id, '/api/x'));
    }
  }

  function ignoredLines(id: string): number {
    return cluster.node(id).current.lines.filter((line) => String(line['msg']).startsWith('config file ignored')).length;
  }

  it('`: > balancer.yaml` on a follower proposes nothing: every node keeps serving, no other file changes', async () => {
    const target = await follower();
    const before = await files();
    const seen = ignoredLines(target);
    const load = traffic();
    await eventually(async () => (load.total > 50 ? true : undefined), 'traffic to flow');
    await truncate(cluster.node(target).file, 0);
    await eventually(async () => (ignoredLines(target) > seen ? true : undefined), `${target} to log that it ignored the empty file`);
    const tally = await load.stop();
    expectAllServed(tally);
    await expectUnchanged(version);
    const after = await files();
    for (const id of ids) if (id !== target) expect(after[id]).toBe(before[id]);
    expect(after[target]).toBe('');
    expect(ids.some((id) => cluster.node(id).current.lines.some((line) => line['msg'] === 'config edit proposed from the file'))).toBe(false);

    // Putting the file back as it was is no edit either.
    await writeFile(cluster.node(target).file, before[target]!);
    await expectUnchanged(version);
  });

  it('a follower file truncated before its routes and pools proposes nothing, and a change from elsewhere still reaches that node', async () => {
    const target = await follower();
    const file = cluster.node(target).file;
    const original = await readFile(file, 'utf8');
    const seen = ignoredLines(target);
    const load = traffic();
    await eventually(async () => (load.total > 50 ? true : undefined), 'traffic to flow');
    await truncate(file, Buffer.byteLength(original.slice(0, original.indexOf('routes:'))));
    await eventually(async () => (ignoredLines(target) > seen ? true : undefined), `${target} to log that it ignored the truncated file`);
    expectAllServed(await load.stop());
    await expectUnchanged(version);

    // A change through another node reaches the truncated node's data plane; its file is not made up from nothing.
    const other = ids.find((id) => id !== target)!;
    const put = await cluster.api(other, 'POST', '/api/v1/pools/api/backends', { body: { url: c.url, id: 'c-api' } });
    expect(put.status, put.body).toBe(201);
    version = put.json<{ version: number }>().version;
    const views = await cluster.waitForVersion(ids, version);
    for (const view of views) expect(view.pools['api']!.backends.map((backend) => backend.id)).toEqual(['a', 'c-api']);
    expect(await readFile(file, 'utf8')).toBe(original.slice(0, original.indexOf('routes:')));
    await eventually(async () => (cluster.node(target).current.lines.some((line) => String(line['msg']).startsWith('not rewriting the config file')) ? true : undefined), 'the skipped rewrite to be logged');

    // The operator puts back the old text: it shows an older version, so it is no edit; the file is brought up to date.
    await writeFile(file, original);
    await eventually(async () => ((await cluster.fileConfig(target)).pools['api']?.backends.length === 2 ? true : undefined), `${target}'s file to show the current config`);
    const views2 = await cluster.waitForVersion(ids, version);
    for (const view of views2) expect(view.version).toBe(version);
  });

  it("an edit of a follower's file that leaves a routed pool without backends is refused, saved as .rejected- and the file restored", async () => {
    const target = await follower();
    const file = cluster.node(target).file;
    const original = await readFile(file, 'utf8');
    const stripped = original.replace(/( {2}web:\n {4}backends:\n)( {6}- .*\n)+/, '$1').replace(/( {2}web:\n {4}backends:)\n/, '$1 []\n');
    expect(stripped).toContain('backends: []');
    const load = traffic();
    await eventually(async () => (load.total > 50 ? true : undefined), 'traffic to flow');
    await writeFile(file, stripped);
    const refused = await cluster.node(target).current.waitFor((line) => String(line['msg']).startsWith('config edit refused'), 'the refusal', 20_000);
    expect(String(refused['msg'])).toContain('pool "web" would have no backends');
    expect(String(refused['msg'])).toContain('a file edit cannot be forced');
    expectAllServed(await load.stop());
    await expectUnchanged(version);
    const saved = String(refused['saved']);
    expect(await readFile(saved, 'utf8')).toBe(stripped);
    expect((await readdir(cluster.node(target).dir)).filter((name) => name.startsWith('balancer.yaml.rejected-'))).toHaveLength(1);
    await eventually(async () => ((await cluster.fileConfig(target)).pools['web']?.backends.length === 2 ? true : undefined), `${target}'s file to be restored`);
  });

  it("an invalid edit left in a follower's file is saved as .rejected- before a change from another node rewrites the file", async () => {
    const target = await follower();
    const file = cluster.node(target).file;
    const invalid = (await readFile(file, 'utf8')).replace('pool: web', 'pool: wbe');
    const rejectedBefore = (await readdir(cluster.node(target).dir)).filter((name) => name.startsWith('balancer.yaml.rejected-'));
    await writeFile(file, invalid);
    await cluster.node(target).current.waitFor((line) => line['msg'] === 'config edit rejected: the file is invalid; nothing was proposed', 'the invalid edit to be logged', 20_000);
    const other = ids.find((id) => id !== target)!;
    const added = await cluster.api(other, 'POST', '/api/v1/pools/web/backends', { body: { url: a.url, id: 'a-web' } });
    expect(added.status, added.body).toBe(201);
    version = added.json<{ version: number }>().version;
    await cluster.waitForVersion(ids, version);
    const saved = await cluster.node(target).current.waitFor((line) => String(line['msg']).startsWith("this node's config file held an edit"), 'the saved edit to be logged', 20_000);
    expect(await readFile(String(saved['saved']), 'utf8')).toBe(invalid);
    const rejectedAfter = (await readdir(cluster.node(target).dir)).filter((name) => name.startsWith('balancer.yaml.rejected-'));
    expect(rejectedAfter.length).toBe(rejectedBefore.length + 1);
    await eventually(async () => ((await cluster.fileConfig(target)).pools['web']?.backends.some((b) => b.id === 'a-web') ? true : undefined), `${target}'s file to show the change`);
  });

  it('the admin API and the CLI refuse the same changes unless forced', async () => {
    const leader = await cluster.waitForLeader(ids);
    const via = ids.find((id) => id !== leader)!;
    const current = await cluster.config(via);
    const empty = await cluster.api(via, 'PUT', '/api/v1/config', { body: { routes: [], pools: {} } });
    expect(empty.status, empty.body).toBe(409);
    const error = empty.json<{ error: { code: string; message: string; details: { message: string }[] } }>().error;
    expect(error.code).toBe('UNSAFE_CHANGE');
    expect(error.message).toContain('?force=true');
    expect(error.details.map((detail) => detail.message).join('\n')).toContain('every pool would be removed');
    await expectUnchanged(current.version);

    const admin = cluster.node(via).admin;
    const env = { BALANCER_ADMIN_TOKEN: ADMIN_TOKEN };
    expect((await runCli(['backends', 'remove', 'api', 'c-api', '--admin', admin], { env })).code).toBe(0);
    const refused = await runCli(['backends', 'remove', 'api', 'a', '--admin', admin], { env });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('UNSAFE_CHANGE');
    expect(refused.stderr).toContain('pool "api" would have no backends');
    const forced = await runCli(['backends', 'remove', 'api', 'a', '--force', '--admin', admin], { env });
    expect(forced.code, forced.stderr).toBe(0);
    const views = await cluster.waitForVersion(ids, current.version + 1);
    for (const view of views) expect(view.pools['api']!.backends).toEqual([]);
    expect(await cluster.servedBy(via, '/api/x')).toBeNull();

    // Forced through the API: the whole config replaced by one pool with no routes.
    const whole = await cluster.api(via, 'PUT', '/api/v1/config?force=true', { body: { routes: [], pools: { web: { backends: [{ url: b.url, id: 'b' }] } } } });
    expect(whole.status, whole.body).toBe(200);
    await cluster.waitForVersion(ids, whole.json<{ version: number }>().version);
    for (const id of ids) expect(await cluster.servedBy(id, '/api/x')).toBe('b');
  });

  it('a follower killed right after a burst of changes (its file written once for the burst, later) shows the newest config in its file after a restart, and takes no edit from the older file', async () => {
    const leader = await cluster.waitForLeader(ids);
    const target = ids.find((id) => id !== leader)!;
    const dir = dirname(cluster.node(target).file);
    const setAside = async (): Promise<string[]> => (await readdir(dir)).filter((name) => name.includes('.rejected-') || name.includes('.local-')).sort();
    const before = await setAside();
    let last = 0;
    for (let weight = 2; weight <= 9; weight++) {
      const answer = await cluster.api(leader, 'PATCH', '/api/v1/pools/web/backends/b', { body: { weight } });
      expect(answer.status, answer.body).toBe(200);
      last = answer.json<{ version: number }>().version;
    }
    await cluster.waitForVersion([target], last);
    // Mostly within the half second the burst's later changes wait for their write; the restart must not depend on it.
    await cluster.kill(target);
    await cluster.start(target);
    await cluster.waitForVersion(ids, last);
    await eventually(
      async () => ((await cluster.fileConfig(target)).pools['web']?.backends.find((backend) => backend.id === 'b')?.weight === 9 ? true : undefined),
      `${target}'s file at the newest weight`,
    );
    const lines = cluster.node(target).current.lines;
    expect(lines.some((line) => line['msg'] === 'config edit proposed from the file' || String(line['msg']).startsWith('the config file was edited'))).toBe(false);
    expect(await setAside()).toEqual(before);
    version = last;
  });
});
