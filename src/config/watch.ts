// Notices edits of the config file (in place or by rename, as editors save), once per distinct content that has settled, never for our own writes.

import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';

export const DEFAULT_WATCH_DEBOUNCE_MS = 100;
/**
 * New content is reported only once it has stayed the same this long: a file caught half-written (truncated by
 * `>` before the rest arrives, or written in several chunks) is never taken for an edit of the whole fleet.
 */
export const DEFAULT_WATCH_SETTLE_MS = 500;

export interface WatchOptions {
  /** Called with the new text after the file settles and its content differs from the last seen or written. */
  readonly onChange: (text: string) => void;
  /** Watcher failures (the directory vanished, say); the watcher keeps going where it can. */
  readonly onError?: (error: unknown) => void;
  readonly clock?: Clock;
  /** Editors write in several steps; wait this long after the last event before reading. */
  readonly debounceMs?: number;
  /** Report content only after it has been read unchanged this long after it was first read. */
  readonly settleMs?: number;
}

export interface ConfigWatcher {
  /** Call with the exact text before writing it, so the write is not reported as an edit. */
  noteOwnWrite(text: string): void;
  close(): void;
}

/**
 * Watches the parent directory rather than the file: an editor that saves by writing a new file and renaming it
 * over the old one would leave a file watch attached to the deleted inode.
 */
export function watchConfigFile(path: string, options: WatchOptions): ConfigWatcher {
  const file = resolve(path);
  const name = basename(file);
  const clock = options.clock ?? systemClock;
  const debounceMs = options.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS;
  const settleMs = options.settleMs ?? DEFAULT_WATCH_SETTLE_MS;
  /**
   * The content last seen or written, compared as text: a config file is small, and a sha256 per comparison cost its
   * set-up (tens of µs) twice per write-back of ours.
   */
  let lastText: string | null = null;
  /** Content read but not reported yet, and since when it has been there unchanged. */
  let pending: { text: string; since: number } | null = null;
  try {
    lastText = readFileSync(file, 'utf8');
  } catch {
    // Not there yet: its first appearance counts as a change.
  }
  let timer: TimerHandle | null = null;
  let closed = false;
  // Reads are sequenced so a slow read of older content cannot overtake a newer one.
  let reading: Promise<void> = Promise.resolve();

  const check = async (): Promise<void> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      // Between an editor's unlink and rename the file is briefly missing; the rename brings another event.
      if ((error as { code?: unknown }).code !== 'ENOENT') options.onError?.(error);
      pending = null;
      return;
    }
    if (closed) return;
    if (text === lastText) {
      pending = null;
      return;
    }
    const now = clock.now();
    if (pending === null || pending.text !== text) {
      pending = { text, since: now };
      if (settleMs > 0) {
        arm(settleMs);
        return;
      }
    } else if (now - pending.since < settleMs) {
      // Read again early (another event): the content must still stay put for the rest of the settle time.
      arm(settleMs - (now - pending.since));
      return;
    }
    pending = null;
    lastText = text;
    options.onChange(text);
  };

  const arm = (ms: number): void => {
    if (closed) return;
    if (timer !== null) clock.clearTimeout(timer);
    timer = clock.setTimeout(() => {
      timer = null;
      reading = reading.then(check, check);
    }, ms);
  };

  const schedule = (): void => arm(debounceMs);

  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      // Some platforms do not say which file changed; then it may have been ours.
      if (changed === null || changed.toString() === name) schedule();
    });
    watcher.on('error', (error) => options.onError?.(error));
  } catch (error) {
    options.onError?.(error);
  }

  return {
    noteOwnWrite(text: string): void {
      lastText = text;
      pending = null;
    },
    close(): void {
      closed = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
      watcher?.close();
    },
  };
}
