import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { FakeClock, type TimerHandle } from '../../src/clock.js';
import { watchConfigFile, type ConfigWatcher } from '../../src/config/watch.js';

// Every sha256 set up while a test runs, counted (the real hash still runs).
const hashes = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return {
    ...original,
    createHash: (...args: Parameters<typeof original.createHash>) => {
      hashes.count++;
      return original.createHash(...args);
    },
  };
});

/** Collects onChange calls; next() resolves with the next one or rejects after a bound. */
function changeRecorder() {
  const seen: string[] = [];
  const waiters: ((text: string) => void)[] = [];
  let delivered = 0;
  return {
    seen,
    onChange(text: string): void {
      seen.push(text);
      const waiter = waiters.shift();
      if (waiter !== undefined) {
        delivered++;
        waiter(text);
      }
    },
    next(timeoutMs = 5_000): Promise<string> {
      if (delivered < seen.length) return Promise.resolve(seen[delivered++]!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no change within ${timeoutMs}ms; seen ${JSON.stringify(seen)}`)), timeoutMs);
        waiters.push((text) => {
          clearTimeout(timer);
          resolve(text);
        });
      });
    },
  };
}

/** A FakeClock that says when a timer is armed, so a test waits for the watcher's event instead of sleeping. */
class ArmingClock extends FakeClock {
  private armedWaiters: (() => void)[] = [];
  private nextArmWaiters: (() => void)[] = [];

  private readonly dues = new Map<number, number>();

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = super.setTimeout(() => {
      this.dues.delete(handle.id);
      fn();
    }, ms);
    this.dues.set(handle.id, this.now() + ms);
    for (const waiter of this.armedWaiters.splice(0)) waiter();
    for (const waiter of this.nextArmWaiters.splice(0)) waiter();
    return handle;
  }

  override clearTimeout(handle: TimerHandle): void {
    this.dues.delete(handle.id);
    super.clearTimeout(handle);
  }

  /** Moves the clock to the earliest pending timer and fires it. */
  advanceToNextTimer(): void {
    const next = Math.min(...this.dues.values());
    if (Number.isFinite(next)) this.advance(Math.max(0, next - this.now()));
  }

  /** Resolves at the next timer the watcher arms (an event's debounce, or a read's settle wait). */
  nextArm(timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no timer armed')), timeoutMs);
      this.nextArmWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  armed(timeoutMs = 5_000): Promise<void> {
    if (this.pendingTimers() > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no timer armed')), timeoutMs);
      this.armedWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

describe('watchConfigFile', () => {
  let dir: string;
  let file: string;
  let watcher: ConfigWatcher | null = null;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'balancer-watch-'));
    file = join(dir, 'balancer.yaml');
    await writeFile(file, 'listen: 127.0.0.1:1\n');
  });

  afterEach(async () => {
    watcher?.close();
    watcher = null;
    await rm(dir, { recursive: true, force: true });
  });

  test('reports an in-place write', async () => {
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, debounceMs: 20 });
    await writeFile(file, 'listen: 127.0.0.1:2\n');
    expect(await changes.next()).toBe('listen: 127.0.0.1:2\n');
  });

  test('reports a save by rename, as editors do, and keeps watching afterwards', async () => {
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, debounceMs: 20 });
    const temporary = join(dir, '.balancer.yaml.swp');
    await writeFile(temporary, 'listen: 127.0.0.1:3\n');
    await rename(temporary, file);
    expect(await changes.next()).toBe('listen: 127.0.0.1:3\n');
    await writeFile(file, 'listen: 127.0.0.1:4\n');
    expect(await changes.next()).toBe('listen: 127.0.0.1:4\n');
  });

  test('ignores its own write and content that did not change', async () => {
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, debounceMs: 20 });
    watcher.noteOwnWrite('listen: 127.0.0.1:5\n');
    await writeFile(file, 'listen: 127.0.0.1:5\n');
    await writeFile(file, 'listen: 127.0.0.1:5\n');
    // An edit by someone else afterwards is the only thing reported.
    await writeFile(file, 'listen: 127.0.0.1:6\n');
    expect(await changes.next()).toBe('listen: 127.0.0.1:6\n');
    expect(changes.seen).toEqual(['listen: 127.0.0.1:6\n']);
  });

  test('tells its own write from an edit by their texts, hashing nothing (a sha256 costs its set-up per call)', async () => {
    const changes = changeRecorder();
    hashes.count = 0;
    watcher = watchConfigFile(file, { onChange: changes.onChange, debounceMs: 20 });
    watcher.noteOwnWrite('listen: 127.0.0.1:8\n');
    await writeFile(file, 'listen: 127.0.0.1:8\n');
    await writeFile(file, 'listen: 127.0.0.1:9\n');
    expect(await changes.next()).toBe('listen: 127.0.0.1:9\n');
    expect(changes.seen).toEqual(['listen: 127.0.0.1:9\n']);
    expect(hashes.count).toBe(0);
  });

  test('ignores other files in the directory', async () => {
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, debounceMs: 20 });
    await writeFile(join(dir, 'other.yaml'), 'x: 1\n');
    await writeFile(file, 'listen: 127.0.0.1:7\n');
    expect(await changes.next()).toBe('listen: 127.0.0.1:7\n');
    expect(changes.seen).toEqual(['listen: 127.0.0.1:7\n']);
  });

  test('a burst of writes is read once, after the debounce, with the final content', async () => {
    const clock = new ArmingClock();
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, clock, debounceMs: 500, settleMs: 0 });
    await writeFile(file, 'listen: 127.0.0.1:8\n');
    await writeFile(file, 'listen: 127.0.0.1:9\n');
    await writeFile(file, 'listen: 127.0.0.1:10\n');
    // The watcher has seen an event once its debounce timer is armed.
    await clock.armed();
    expect(clock.pendingTimers()).toBe(1);
    expect(changes.seen).toEqual([]);
    clock.advance(499);
    expect(clock.pendingTimers()).toBe(1);
    clock.advance(1);
    expect(await changes.next()).toBe('listen: 127.0.0.1:10\n');
    expect(changes.seen).toEqual(['listen: 127.0.0.1:10\n']);
  });

  test('reports content only once it stayed unchanged for the settle time: a half-written file is never reported', async () => {
    const clock = new ArmingClock();
    const changes = changeRecorder();
    const reportedAt: number[] = [];
    watcher = watchConfigFile(file, {
      onChange: (text) => {
        reportedAt.push(clock.now());
        changes.onChange(text);
      },
      clock,
      debounceMs: 10,
      settleMs: 1_000,
    });
    // A first chunk, then `>` truncating the file, then the whole content: all within the settle time.
    await writeFile(file, 'listen: 127.0.0.1:20\n# half of');
    await clock.armed();
    clock.advance(10);
    await clock.nextArm();
    clock.advance(300);
    const truncated = clock.nextArm();
    await writeFile(file, '');
    await truncated;
    clock.advance(10);
    await clock.nextArm();
    clock.advance(300);
    const full = clock.nextArm();
    await writeFile(file, 'listen: 127.0.0.1:21\n');
    await full;
    const lastWriteSeenAt = clock.now();
    expect(changes.seen).toEqual([]);
    // Step the clock through whatever the watcher arms next until it reports (each step waits for the watcher itself).
    const reported = changes.next();
    for (let step = 0; step < 10 && changes.seen.length === 0; step++) {
      const armed = clock.nextArm().catch(() => undefined);
      clock.advanceToNextTimer();
      await Promise.race([armed, reported]);
    }
    await reported;
    expect(changes.seen).toEqual(['listen: 127.0.0.1:21\n']);
    expect(reportedAt[0]! - lastWriteSeenAt).toBeGreaterThanOrEqual(1_000);
  });

  test('close stops reporting', async () => {
    const clock = new ArmingClock();
    const changes = changeRecorder();
    watcher = watchConfigFile(file, { onChange: changes.onChange, clock, debounceMs: 10 });
    await writeFile(file, 'listen: 127.0.0.1:11\n');
    await clock.armed();
    watcher.close();
    expect(clock.pendingTimers()).toBe(0);
    clock.advance(1_000);
    expect(changes.seen).toEqual([]);
  });
});
