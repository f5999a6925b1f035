// PoolRuntime on a fake clock: backup backends (only while no primary is up, before panic) and sticky-cookie picks.

import { describe, expect, it } from 'vitest';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { PoolRuntime } from '../../src/balancer/pool.js';
import { StickyTable, stickyValue } from '../../src/balancer/sticky.js';
import type { PoolConfig, StickyConfig } from '../../src/config/schema.js';
import { memoryLogger } from '../../src/log.js';
import { backend, poolConfig, recordingMetrics, scriptedProbe } from './pool-fixtures.js';

function setup(config: PoolConfig) {
  const clock = new FakeClock();
  const logger = memoryLogger('info');
  const pool = PoolRuntime.create(config, undefined, { clock, random: seededRandom(1), metrics: recordingMetrics(), logger, probe: scriptedProbe() });
  pool.start();
  return { clock, logger, pool };
}

/** Three gateway failures in a row eject a backend (the fixture's outlier settings) for 10 s. */
function takeDown(pool: PoolRuntime, id: string): void {
  const target = pool.get(id)!;
  for (let i = 0; i < 3; i++) {
    target.requestStarted();
    target.requestFinished('gateway-failure');
  }
}

function pickSet(pool: PoolRuntime, count = 12): Set<string> {
  return new Set(Array.from({ length: count }, () => pool.pick()?.id ?? '-'));
}

describe('backup backends', () => {
  const primariesAndBackups = [backend('a'), backend('b'), backend('x', { backup: true }), backend('y', { backup: true })];

  it('get nothing while any primary is up, all traffic once none is, and hand it back when one returns', () => {
    const { pool, clock, logger } = setup(poolConfig({ backends: primariesAndBackups, panicThresholdPercent: 50 }));
    expect(pickSet(pool)).toEqual(new Set(['a', 'b']));
    takeDown(pool, 'a');
    // One primary of two is still up: the primaries serve.
    expect(pool.backupsServing).toBe(false);
    expect(pickSet(pool)).toEqual(new Set(['b']));
    takeDown(pool, 'b');
    expect(pool.backupsServing).toBe(true);
    // Backups come before panic over the primaries that are down.
    expect(pool.panic).toBe(false);
    expect(pickSet(pool)).toEqual(new Set(['x', 'y']));
    expect(pool.status()).toMatchObject({ backupsServing: true, backends: [{ id: 'a', backup: false }, { id: 'b', backup: false }, { id: 'x', backup: true }, { id: 'y', backup: true }] });
    expect(logger.lines.some((line) => line['msg'] === 'no primary backend is up: the backup backends serve')).toBe(true);
    clock.advance(10_000);
    expect(pool.backupsServing).toBe(false);
    expect(pickSet(pool)).toEqual(new Set(['a', 'b']));
  });

  it('leave panic mode to the primaries when no backup is up either', () => {
    const { pool } = setup(poolConfig({ backends: [backend('a'), backend('b'), backend('x', { backup: true })], panicThresholdPercent: 50 }));
    takeDown(pool, 'x');
    takeDown(pool, 'a');
    takeDown(pool, 'b');
    expect(pool.backupsServing).toBe(false);
    expect(pool.panic).toBe(true);
    expect(pickSet(pool)).toEqual(new Set(['a', 'b']));
  });

  it('serve when every primary drains, and a pool of backups alone is served by them', () => {
    const drained = setup(poolConfig({ backends: [backend('a', { drain: true }), backend('x', { backup: true })] }));
    expect(pickSet(drained.pool)).toEqual(new Set(['x']));
    const onlyBackups = setup(poolConfig({ backends: [backend('x', { backup: true }), backend('y', { backup: true })] }));
    expect(pickSet(onlyBackups.pool)).toEqual(new Set(['x', 'y']));
  });

  it('work with hashing strategies: keys land on backups only while the primaries are down', () => {
    const { pool, clock } = setup(poolConfig({ strategy: 'maglev', hashOn: { header: 'x-user' }, backends: primariesAndBackups }));
    const hashKey = 12345;
    expect(['a', 'b']).toContain(pool.pick(undefined, { hashKey })!.id);
    takeDown(pool, 'a');
    takeDown(pool, 'b');
    const onBackup = pool.pick(undefined, { hashKey })!.id;
    expect(['x', 'y']).toContain(onBackup);
    expect(pool.pick(undefined, { hashKey })!.id).toBe(onBackup);
    clock.advance(10_000);
    expect(['a', 'b']).toContain(pool.pick(undefined, { hashKey })!.id);
  });
});

describe('sticky sessions', () => {
  const sticky: StickyConfig = { cookie: 'SRV', ttlMs: 3_600_000, secure: true, httpOnly: true, sameSite: 'Lax' };

  it('names each backend by an opaque value, the same in every process, and writes the cookie attributes', () => {
    const table = new StickyTable(sticky, 'web', ['a', 'b']);
    const value = table.valueFor('a')!;
    expect(value).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(value).toBe(stickyValue('web', 'a'));
    expect(value).not.toBe(stickyValue('api', 'a'));
    expect(table.backendFor(value)).toBe('a');
    expect(table.backendFor('not-a-value')).toBeUndefined();
    expect(table.setCookieFor('a', undefined)).toBe(`SRV=${value}; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax`);
    expect(table.setCookieFor('a', value)).toBeUndefined();
    expect(table.setCookieFor('b', value)).toMatch(/^SRV=[A-Za-z0-9_-]{16}; Path=\//);
    const session = new StickyTable({ cookie: 'S', ttlMs: null, secure: false, httpOnly: false, sameSite: null }, 'web', ['a']);
    expect(session.setCookieFor('a', undefined)).toBe(`S=${value}; Path=/`);
  });

  it('keeps a client on its backend, on any strategy, while it is available; then another one takes it', () => {
    const { pool, clock } = setup(poolConfig({ strategy: 'round-robin', sticky, backends: [backend('a'), backend('b'), backend('c')] }));
    const onB = stickyValue('web', 'b');
    for (let i = 0; i < 6; i++) expect(pool.pick(undefined, { sticky: onB })!.id).toBe('b');
    // A retry must leave the backend that failed, cookie or not.
    expect(pool.pick(new Set(['b']), { sticky: onB })!.id).not.toBe('b');
    takeDown(pool, 'b');
    expect(new Set(Array.from({ length: 6 }, () => pool.pick(undefined, { sticky: onB })!.id))).toEqual(new Set(['a', 'c']));
    clock.advance(10_000);
    expect(pool.pick(undefined, { sticky: onB })!.id).toBe('b');
    // An unknown or stale value (a backend since removed) is no worse than no cookie.
    expect(['a', 'b', 'c']).toContain(pool.pick(undefined, { sticky: 'garbage' })!.id);
  });
});
