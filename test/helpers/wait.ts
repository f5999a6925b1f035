// Waiting in tests: `Watched.until` re-checks on every change a test double reports; `eventually` polls (bounded) where no event exists.

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` every `everyMs` until it gives something other than undefined or false, and resolves with that
 * (a predicate's `true`, or the value found). A probe that throws is tried again; after `timeoutMs` it rejects
 * naming `what` and the last error.
 */
export async function eventually<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === null ? '' : ` (last error: ${String(lastError)})`}`);
    await sleep(everyMs);
  }
}

/** Re-checks `until` conditions whenever the subclass calls changed(), and every `backstopMs` if it set one (for quiet periods). */
export class Watched {
  private readonly listeners = new Set<() => void>();

  constructor(private readonly backstopMs: number | null = null) {}

  protected changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  until(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const poll = this.backstopMs === null ? null : setInterval(() => listener(), this.backstopMs);
      const finish = (): void => {
        clearTimeout(timer);
        if (poll !== null) clearInterval(poll);
        this.listeners.delete(listener);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const listener = (): void => {
        if (!check()) return;
        finish();
        resolve();
      };
      this.listeners.add(listener);
    });
  }
}
