// The route label of the request metrics: the route's name, else its index; absent without routes; pruned with the routes; summed by `top` and history.

import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import { parseRequestCounters } from '../../src/metrics/request-counters.js';
import { perTestResources } from '../helpers/gateway.js';
import { request } from '../helpers/backend.js';

describe('route label', () => {
  it('separates series by route, keeps the unrouted series label-free, and drops routes no longer configured', async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.retain([{ pool: 'web', backends: ['a'] }], ['api', '1']);
    const a = metrics.backend('web', 'a');
    a.requestStarted();
    a.requestFinished('2xx', 0.002, 'api');
    a.requestStarted();
    a.requestFinished('5xx', 0.02, '1');
    a.requestStarted();
    a.requestFinished('2xx', 0.002);
    metrics.pool('web').requestWithoutBackend('5xx', 'api');
    let text = await metrics.render();
    expect(text).toContain('balancer_requests_total{pool="web",backend="a",route="api",code="2xx"} 1');
    expect(text).toContain('balancer_requests_total{pool="web",backend="a",route="1",code="5xx"} 1');
    expect(text).toContain('balancer_requests_total{pool="web",backend="a",code="2xx"} 1');
    expect(text).toContain('balancer_requests_total{pool="web",backend="",route="api",code="5xx"} 1');
    expect(text).toContain('balancer_request_duration_seconds_count{pool="web",backend="a",route="api"} 1');
    expect(text).toContain('balancer_request_duration_seconds_bucket{pool="web",backend="a",route="api",le="0.0025"} 1');
    // top and the dashboard history sum the routes of a backend.
    const counters = parseRequestCounters(text).get('web\u0000a')!;
    expect(counters.requests).toBe(3);
    expect(counters.errors).toBe(1);
    expect(counters.buckets.find(([bound]) => bound === 0.0025)![1]).toBe(2);
    expect(counters.buckets.at(-1)).toEqual([Infinity, 3]);

    metrics.retain([{ pool: 'web', backends: ['a'] }], ['api']);
    text = await metrics.render();
    expect(text).not.toContain('route="1"');
    expect(text).toContain('route="api"');
  });
});

describe('route label through the proxy', () => {
  const { backend, gateway } = perTestResources();

  it('counts each request under the route that sent it: its name, else its index', async () => {
    const web = await backend('web');
    const gw = await gateway(`routes:
  - name: api
    match: { pathPrefix: /api }
    pool: web
  - match: { pathPrefix: / }
    pool: web
pools:
  web: { backends: [ { url: ${web.url}, id: web } ] }
`);
    await request(`${gw.url}/api/x`);
    await request(`${gw.url}/api/y`);
    await request(`${gw.url}/other`);
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(text).toContain('balancer_requests_total{pool="web",backend="web",route="api",code="2xx"} 2');
    expect(text).toContain('balancer_requests_total{pool="web",backend="web",route="1",code="2xx"} 1');
  });
});
