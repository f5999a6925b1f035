// Steady client traffic against proxies while a test does something else: bounded in count and time, every answer tallied.

import http from 'node:http';

export interface TrafficTally {
  readonly total: number;
  /** `status` (or the error code for a request that got no answer) -> count. */
  readonly byOutcome: Readonly<Record<string, number>>;
  /** Up to ten examples of answers that were not 2xx, for the failure message. */
  readonly examples: readonly string[];
}

export interface RunningTraffic {
  /** Stops sending, waits for requests in flight, and returns the tally. */
  stop(): Promise<TrafficTally>;
  /** Requests answered so far. */
  readonly total: number;
}

/**
 * Sends GETs round-robin over `urls` (full URLs, path included), `concurrency` at a time, until stop() is called,
 * `maxRequests` were sent or `maxMs` passed, whichever comes first.
 */
export function startTraffic(urls: readonly string[], options: { concurrency?: number; maxRequests?: number; maxMs?: number } = {}): RunningTraffic {
  const maxRequests = options.maxRequests ?? 20_000;
  const deadline = Date.now() + (options.maxMs ?? 60_000);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency ?? 4 });
  const byOutcome: Record<string, number> = {};
  const examples: string[] = [];
  let sent = 0;
  let total = 0;
  let stopped = false;

  const one = (url: string): Promise<void> =>
    new Promise((resolve) => {
      const record = (outcome: string, detail: string): void => {
        total++;
        byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
        if (!/^2\d\d$/.test(outcome) && examples.length < 10) examples.push(`${url}: ${detail}`);
        resolve();
      };
      const req = http.get(url, { agent, timeout: 5_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => record(String(res.statusCode), `${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 200)}`));
        res.on('error', (error) => record('response-error', error.message));
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (error: NodeJS.ErrnoException) => record(error.code ?? 'error', error.message));
    });

  const worker = async (offset: number): Promise<void> => {
    for (let i = offset; !stopped && sent < maxRequests && Date.now() < deadline; i++) {
      sent++;
      await one(urls[i % urls.length]!);
    }
  };
  const workers = Array.from({ length: options.concurrency ?? 4 }, (_, index) => worker(index));

  return {
    get total() {
      return total;
    },
    async stop() {
      stopped = true;
      await Promise.all(workers);
      agent.destroy();
      return { total, byOutcome: { ...byOutcome }, examples: [...examples] };
    },
  };
}
