// Config for consistent hashing, sticky sessions and backup backends: what is accepted, defaults, round trips, and every mistake with its position.

import { describe, expect, test } from 'vitest';
import { toPlainReplicated } from '../../src/config/plain.js';
import { validateReplicated } from '../../src/config/validate.js';
import { problemLines, valid } from './fixtures.js';

const backends = '    backends:\n      - { url: http://127.0.0.1:9001 }\n      - { url: http://127.0.0.1:9002, backup: true }\n';

describe('hashing strategies', () => {
  test('ring-hash and maglev with each form of hashOn; ringSize defaults to 1024', () => {
    const config = valid(
      [
        'pools:',
        '  h:',
        '    strategy: ring-hash',
        '    hashOn: { header: X-User }',
        '    ringSize: 4096',
        backends,
        '  c:',
        '    strategy: maglev',
        '    hashOn: { cookie: session }',
        '  q:',
        '    strategy: ring-hash',
        '    hashOn: { query: user }',
        '  s:',
        '    strategy: maglev',
        '    hashOn: sourceIp',
        'routes:',
        '  - { pool: h }',
        '',
      ].join('\n'),
    );
    expect(config.pools['h']).toMatchObject({ strategy: 'ring-hash', hashOn: { header: 'x-user' }, ringSize: 4096 });
    expect(config.pools['h']!.backends.map((b) => b.backup)).toEqual([false, true]);
    expect(config.pools['c']).toMatchObject({ strategy: 'maglev', hashOn: { cookie: 'session' } });
    expect(config.pools['q']).toMatchObject({ hashOn: { query: 'user' }, ringSize: 1024 });
    expect(config.pools['s']!.hashOn).toBe('sourceIp');
    expect(config.pools['s']!.sticky).toBeNull();
  });

  test('round-trips through the plain (API and Raft) form', () => {
    const input = {
      routes: [],
      pools: {
        web: {
          strategy: 'ring-hash',
          hashOn: { header: 'x-user' },
          ringSize: 200,
          sticky: { cookie: 'SRV', ttl: '1h', secure: true, sameSite: 'None' },
          backends: [{ url: 'http://127.0.0.1:9001' }, { url: 'http://127.0.0.1:9002', backup: true }],
        },
      },
    };
    const first = validateReplicated(input);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    const plain = toPlainReplicated(first.config);
    expect(plain.pools['web']).toMatchObject({
      strategy: 'ring-hash',
      hashOn: { header: 'x-user' },
      ringSize: 200,
      sticky: { cookie: 'SRV', ttl: '1h', secure: true, sameSite: 'None' },
      backends: [{ url: 'http://127.0.0.1:9001' }, { url: 'http://127.0.0.1:9002', backup: true }],
    });
    const again = validateReplicated(JSON.parse(JSON.stringify(plain)));
    expect(again.ok && again.config).toEqual(first.config);
  });

  test('each mistake is reported at its place, with what to do', () => {
    expect(problemLines('pools:\n  web:\n    strategy: ring-hash\n')).toEqual([
      'balancer.yaml:3:15: pools.web.strategy: strategy ring-hash picks by a hash of a request value: add hashOn: sourceIp, {header: NAME}, {cookie: NAME} or {query: NAME}',
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: weighted\n    hashOn: sourceIp\n')).toEqual([
      "balancer.yaml:4:5: pools.web.hashOn: hashOn is read only by strategies ring-hash and maglev; this pool's strategy is weighted",
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: maglev\n    hashOn: sourceip\n')).toEqual([
      'balancer.yaml:4:13: pools.web.hashOn: must be sourceIp, {header: NAME}, {cookie: NAME} or {query: NAME}, got string "sourceip" (did you mean "sourceIp"?)',
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: maglev\n    hashOn: { header: X-User, cookie: s }\n')).toEqual([
      'balancer.yaml:4:13: pools.web.hashOn: set exactly one of header, cookie and query (got more than one), or use sourceIp',
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: maglev\n    hashOn: { header: "bad header" }\n')).toEqual([
      'balancer.yaml:4:23: pools.web.hashOn.header: must be an HTTP header name, got string "bad header"',
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: maglev\n    hashOn: { hedaer: x }\n')).toEqual([
      'balancer.yaml:4:15: pools.web.hashOn.hedaer: unknown key (did you mean "header"?)',
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: maglev\n    hashOn: sourceIp\n    ringSize: 100\n')).toEqual([
      "balancer.yaml:5:5: pools.web.ringSize: ringSize is read only by strategy ring-hash; this pool's strategy is maglev",
    ]);
    expect(problemLines('pools:\n  web:\n    strategy: ring-hash\n    hashOn: sourceIp\n    ringSize: 0\n')).toEqual([
      'balancer.yaml:5:15: pools.web.ringSize: must be an integer from 1 to 65536, got 0',
    ]);
    const many = Array.from({ length: 200 }, (_, i) => `      - { url: "http://10.0.${Math.floor(i / 200)}.${i}:80" }`).join('\n');
    expect(problemLines(`pools:\n  web:\n    strategy: ring-hash\n    hashOn: sourceIp\n    ringSize: 65536\n    backends:\n${many}\n`)).toEqual([
      'balancer.yaml:5:15: pools.web.ringSize: 65536 points for each of 200 backends exceed the ring\'s 8388608 points; set ringSize to at most 41943',
    ]);
  });
});

describe('sticky sessions', () => {
  test('on any strategy, with defaults: session cookie, HttpOnly, not Secure, no SameSite', () => {
    const config = valid('pools:\n  web:\n    strategy: least-request\n    sticky: { cookie: SRV }\n');
    expect(config.pools['web']!.sticky).toEqual({ cookie: 'SRV', ttlMs: null, secure: false, httpOnly: true, sameSite: null });
    const full = valid('pools:\n  web:\n    sticky: { cookie: SRV, ttl: 2h, secure: true, httpOnly: false, sameSite: Strict }\n');
    expect(full.pools['web']!.sticky).toEqual({ cookie: 'SRV', ttlMs: 7_200_000, secure: true, httpOnly: false, sameSite: 'Strict' });
  });

  test('each mistake is reported at its place', () => {
    expect(problemLines('pools:\n  web:\n    sticky: { cookie: SRV, sameSite: None }\n')).toEqual([
      'balancer.yaml:3:38: pools.web.sticky.sameSite: SameSite=None needs secure: true (browsers drop such a cookie without Secure)',
    ]);
    expect(problemLines('pools:\n  web:\n    sticky: { cookie: SRV, ttl: 1500ms }\n')).toEqual([
      'balancer.yaml:3:33: pools.web.sticky.ttl: must be whole seconds (cookies count Max-Age in seconds), got 1500ms',
    ]);
    expect(problemLines('pools:\n  web:\n    sticky: { cookie: "a b" }\n')).toEqual([
      'balancer.yaml:3:23: pools.web.sticky.cookie: must be a cookie name (letters, digits and !#$%&\'*+.^_`|~-), got string "a b"',
    ]);
    expect(problemLines('pools:\n  web:\n    sticky: { ttl: 1h }\n')).toEqual(['balancer.yaml:3:5: pools.web.sticky.cookie: is required']);
    expect(problemLines('pools:\n  web:\n    sticky: { cookie: SRV, sameSite: lax }\n')).toEqual([
      'balancer.yaml:3:38: pools.web.sticky.sameSite: must be one of Strict, Lax, None, got string "lax" (did you mean "Lax"?)',
    ]);
  });
});

describe('backup backends', () => {
  test('backup must be true or false', () => {
    expect(problemLines('pools:\n  web:\n    backends:\n      - { url: http://127.0.0.1:9001, backup: yes please }\n')).toEqual([
      'balancer.yaml:4:47: pools.web.backends[0].backup: expected true or false, got string "yes please"',
    ]);
  });
});
