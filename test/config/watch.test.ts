import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FakeClock, type TimerHandle } from '../../src/clock.js';
import { watchConfigFile, type ConfigWatcher } from '../../src/config/watch.js';

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

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = super.setTimeout(fn, ms);
    for (const waiter of this.armedWaiters.splice(0)) waiter();
    return handle;
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
    watcher = watchConfigFile(file, { onChange: changes.onChange, clock, debounceMs: 500 });
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
