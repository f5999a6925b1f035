// ${NAME} and ${NAME:-default} in the local settings of a config file: expanded at load, FILE:LINE:COL for an unset one, never in routes and pools.

import { afterEach, describe, expect, test, vi } from 'vitest';
import { formatProblem, validateConfigText } from '../../src/config/validate.js';
import { expandReferences } from '../../src/config/env.js';
import { rewriteReplicatedSections } from '../../src/config/write.js';
import { request, startBackend } from '../helpers/backend.js';
import { startGateway } from '../helpers/gateway.js';

afterEach(() => {
  vi.unstubAllEnvs();
});

function problems(text: string): string[] {
  const result = validateConfigText(text, 'balancer.yaml');
  return result.ok ? [] : result.problems.map((problem) => formatProblem('balancer.yaml', problem));
}

describe('expandReferences', () => {
  test.each([
    ['${A}', { A: 'x' }, 'x'],
    ['pre-${A}-post', { A: 'x' }, 'pre-x-post'],
    ['${A:-fallback}', {}, 'fallback'],
    ['${A:-fallback}', { A: '' }, 'fallback'],
    ['${A:-}', {}, ''],
    ['${A}', { A: '' }, ''],
    ['${A:-a:b}c', {}, 'a:bc'],
    ['$${A} stays', { A: 'x' }, '${A} stays'],
    ['${A}${B:-2}', { A: '1' }, '12'],
    ['no reference $A', {}, 'no reference $A'],
  ])('%s with %j is %s', (text, env, expected) => {
    expect(expandReferences(text, env)).toEqual({ value: expected });
  });

  test.each([
    ['${MISSING}', 'environment variable MISSING is not set; set it, or give a default: ${MISSING:-value}'],
    ['${1BAD}', 'invalid reference ${1BAD}: write ${NAME} or ${NAME:-default}, NAME being letters, digits and _'],
    ['${OPEN', 'unterminated ${: write ${NAME} or ${NAME:-default} (or $${ for a literal ${)'],
  ])('%s is refused: %s', (text, message) => {
    expect(expandReferences(text, {})).toEqual({ problem: message });
  });
});

describe('a config file with references', () => {
  test('expands local settings: secrets and addresses', () => {
    vi.stubEnv('BALANCER_TEST_TOKEN', 's3cret');
    vi.stubEnv('BALANCER_TEST_HOST', '10.1.2.3');
    const result = validateConfigText(
      'listen: ${BALANCER_TEST_HOST}:8080\nadmin:\n  listen: "${BALANCER_TEST_ADMIN:-127.0.0.1:9191}"\n  token: ${BALANCER_TEST_TOKEN}\nlog: { level: "${BALANCER_TEST_LEVEL:-warn}" }\n',
      'balancer.yaml',
    );
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    expect(result.config.listeners[0]!.listen).toBe('10.1.2.3:8080');
    expect(result.config.admin).toMatchObject({ listen: '127.0.0.1:9191', token: 's3cret' });
    expect(result.config.log.level).toBe('warn');
  });

  test('an unset variable without a default is a FILE:LINE:COL problem, one per reference', () => {
    expect(problems('listen: 127.0.0.1:8080\nadmin:\n  token: ${BALANCER_TEST_UNSET}\ncluster:\n  nodeId: n1\n  listen: 127.0.0.1:7001\n  peers: { n1: 127.0.0.1:7001 }\n  secret: "x${BALANCER_TEST_UNSET_TOO}"\n')).toEqual([
      'balancer.yaml:3:10: admin.token: environment variable BALANCER_TEST_UNSET is not set; set it, or give a default: ${BALANCER_TEST_UNSET:-value}',
      'balancer.yaml:8:11: cluster.secret: environment variable BALANCER_TEST_UNSET_TOO is not set; set it, or give a default: ${BALANCER_TEST_UNSET_TOO:-value}',
    ]);
  });

  test('routes and pools are never expanded: they are replicated to every node as written', () => {
    vi.stubEnv('BALANCER_TEST_HOST', '10.1.2.3');
    expect(problems('pools:\n  web:\n    backends:\n      - { url: "http://${BALANCER_TEST_HOST}:9001" }\n')).toEqual([
      'balancer.yaml:4:16: pools.web.backends[0].url: ${...} is expanded only in local settings: pools is replicated to every node as written, so write the value itself',
    ]);
  });

  test('rewriting routes and pools keeps the references of the local sections', () => {
    vi.stubEnv('BALANCER_TEST_TOKEN', 's3cret');
    const text = 'admin:\n  token: ${BALANCER_TEST_TOKEN}\npools:\n  web:\n    backends:\n      - { url: "http://127.0.0.1:9001" }\n';
    const edited = validateConfigText(text.replace('9001', '9002'), 'balancer.yaml');
    if (!edited.ok) throw new Error(JSON.stringify(edited.problems));
    const rewritten = rewriteReplicatedSections(text, { routes: edited.config.routes, pools: edited.config.pools });
    expect(rewritten).toContain('token: ${BALANCER_TEST_TOKEN}');
    expect(rewritten).toContain('9002');
    expect(rewritten).not.toContain('s3cret');
  });

  test('a running node serves with the expanded token, and an API write leaves ${NAME} in its file', async () => {
    vi.stubEnv('BALANCER_TEST_TOKEN', 'from-the-environment');
    const backend = await startBackend('b');
    const gw = await startGateway(`pools:\n  web:\n    backends:\n      - { url: ${backend.url}, id: b }\n`, { token: '${BALANCER_TEST_TOKEN}' });
    try {
      const added = await request(`${gw.adminUrl}/api/v1/pools/web/backends`, {
        method: 'POST',
        headers: { authorization: 'Bearer from-the-environment', 'content-type': 'application/json' },
        body: JSON.stringify({ url: 'http://127.0.0.1:9', id: 'spare' }),
      });
      expect(added.status).toBe(201);
      const { readFile } = await import('node:fs/promises');
      const file = await readFile(gw.file, 'utf8');
      expect(file).toContain('token: ${BALANCER_TEST_TOKEN}');
      expect(file).toContain('spare');
      expect(file).not.toContain('from-the-environment');
    } finally {
      await gw.stop();
      await backend.close();
    }
  });
});
