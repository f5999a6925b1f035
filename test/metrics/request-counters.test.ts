// Request counters read back from /metrics text, PromQL-style histogram quantiles, and rates between two reads.

import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import { histogramQuantile, parseRequestCounters, requestRates } from '../../src/metrics/request-counters.js';

describe('request counters from /metrics', () => {
  it('reads requests, 5xx and cumulative buckets per pool and backend, skipping other families', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const b = metrics.backend('web', 'web-1');
    for (let i = 0; i < 10; i++) b.requestFinished(i < 2 ? '5xx' : '2xx', i < 5 ? 0.002 : 0.02);
    metrics.pool('web').requestWithoutBackend('5xx');
    const counters = parseRequestCounters(await metrics.render());
    const web1 = counters.get('web\u0000web-1')!;
    expect(web1).toMatchObject({ pool: 'web', backend: 'web-1', requests: 10, errors: 2 });
    expect(web1.buckets.find(([le]) => le === 0.0025)?.[1]).toBe(5);
    expect(web1.buckets.at(-1)).toEqual([Infinity, 10]);
    expect(counters.get('web\u0000')).toMatchObject({ requests: 1, errors: 1 });
  });

  it('reads the same counters from the request families alone, which leave the default process metrics out', async () => {
    const metrics = createMetrics();
    const b = metrics.backend('web', 'web-1');
    for (let i = 0; i < 4; i++) b.requestFinished(i === 0 ? '5xx' : '2xx', 0.002);
    const families = await metrics.renderRequestFamilies();
    expect(parseRequestCounters(families)).toEqual(parseRequestCounters(await metrics.render()));
    expect(parseRequestCounters(families).get('web\u0000web-1')).toMatchObject({ requests: 4, errors: 1 });
    expect(families).not.toContain('process_cpu');
    expect(families).not.toContain('balancer_backend_up');
  });

  it('reads the counters directly as they are in the text: backends summed over routes, requests without a backend, none before one', async () => {
    const metrics = createMetrics({ collectDefault: false });
    const web1 = metrics.backend('web', 'web-1');
    metrics.backend('web', 'web-2');
    metrics.backend('api', 'api-1').requestFinished('1xx', 12);
    const statuses = ['2xx', '5xx', '4xx', '3xx', '2xx'] as const;
    const durations = [0.0004, 0.003, 0.07, 2.5, 30, Number.NaN];
    for (let i = 0; i < 40; i++) web1.requestFinished(statuses[i % statuses.length]!, durations[i % durations.length]!, i % 3 === 0 ? 'api' : i % 3 === 1 ? '' : 'static');
    metrics.pool('api');
    metrics.pool('web').requestWithoutBackend('5xx', 'api');
    metrics.pool('web').requestWithoutBackend('4xx');
    const direct = metrics.requestCounters();
    expect(direct).toEqual(parseRequestCounters(await metrics.renderRequestFamilies()));
    expect(direct.get('web\u0000web-1')).toMatchObject({ requests: 40, errors: 8 });
    expect(direct.get('web\u0000web-2')).toMatchObject({ requests: 0, errors: 0 });
    expect(direct.get('web\u0000')).toEqual({ pool: 'web', backend: '', requests: 2, errors: 1, buckets: [] });
    expect(direct.has('api\u0000')).toBe(false);
    // A later read is a new map: the history compares it with the one before.
    web1.requestFinished('2xx', 0.002);
    expect(metrics.requestCounters().get('web\u0000web-1')!.requests).toBe(41);
    expect(direct.get('web\u0000web-1')!.requests).toBe(40);
  });

  it('interpolates quantiles inside a bucket as histogram_quantile does', () => {
    const buckets: Array<[number, number]> = [[0.005, 50], [0.01, 100], [Infinity, 100]];
    expect(histogramQuantile(0.5, buckets)).toBeCloseTo(0.005, 10);
    expect(histogramQuantile(0.99, buckets)).toBeCloseTo(0.0099, 10);
    expect(histogramQuantile(0.5, [[0.01, 0], [Infinity, 4]])).toBe(0.01);
    expect(histogramQuantile(0.5, [])).toBeNull();
  });

  it('gives rates over an interval, and none across a counter reset', () => {
    const before = { pool: 'p', backend: 'b', requests: 10, errors: 1, buckets: [[0.01, 10], [Infinity, 10]] as Array<[number, number]> };
    const after = { pool: 'p', backend: 'b', requests: 30, errors: 3, buckets: [[0.01, 20], [Infinity, 30]] as Array<[number, number]> };
    const rates = requestRates(before, after, 2)!;
    expect(rates.requestsPerSecond).toBe(10);
    expect(rates.errorRatio).toBeCloseTo(0.1, 10);
    expect(rates.p99).toBe(0.01);
    expect(requestRates(after, before, 2)).toBeNull();
    expect(requestRates(before, before, 1)).toMatchObject({ requestsPerSecond: 0, errorRatio: null, p50: null });
  });
});
