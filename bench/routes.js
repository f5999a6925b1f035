#!/usr/bin/env node
// Route matching cost with 1,000 routes: nanoseconds per lookup for the first route, the last, a miss, and a table
// of regex routes, on the compiled matcher the data plane uses (dist/, so run `npm run build` first).
// Usage: node bench/routes.js [--routes N] [--lookups N]

// The compiled modules; a computed path keeps the bench's type check (checkJs) out of dist/, which src/ checks already.
const DIST = new URL('../dist/', import.meta.url).href;
const { validateReplicated } = await import(`${DIST}config/validate.js`);
const { compileRoutes, matchRoute } = await import(`${DIST}proxy/router.js`);

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const ROUTES = option('--routes', 1000);
const LOOKUPS = option('--lookups', 200_000);

function table(kind) {
  const routes = [];
  for (let i = 0; i < ROUTES; i++) {
    const match =
      kind === 'regex'
        ? { pathRegex: `/svc${i}/v[0-9]+/items/[^/]+` }
        : kind === 'mixed'
          ? { host: `svc${i % 50}.example.com`, pathPrefix: `/svc${i}`, pathPrefixSegments: true, methods: ['GET', 'POST'], headers: { 'x-tenant': `t${i % 7}` } }
          : { pathPrefix: `/svc${i}`, pathPrefixSegments: true };
    routes.push({ name: `r${i}`, match, pool: 'web' });
  }
  const result = validateReplicated({ routes, pools: { web: { backends: [{ url: 'http://127.0.0.1:1' }] } } });
  if (!result.ok) throw new Error(JSON.stringify(result.problems.slice(0, 3)));
  return compileRoutes(result.config.routes);
}

function request(path, extra = {}) {
  return { host: 'svc0.example.com', path, query: '', method: 'GET', headers: { 'x-tenant': 't0' }, listener: 'default', ...extra };
}

function measure(routes, req, expected) {
  const got = matchRoute(routes, req)?.label;
  if (got !== expected) throw new Error(`expected ${expected}, matched ${got}`);
  for (let i = 0; i < 2_000; i++) matchRoute(routes, req);
  const start = process.hrtime.bigint();
  for (let i = 0; i < LOOKUPS; i++) matchRoute(routes, req);
  return Number(process.hrtime.bigint() - start) / LOOKUPS;
}

const last = ROUTES - 1;
/** @type {Array<[string, string, number]>} */
const rows = [];
const prefix = table('prefix');
rows.push(['prefix, segments', 'first route', measure(prefix, request('/svc0/x'), 'r0')]);
rows.push(['prefix, segments', 'last route', measure(prefix, request(`/svc${last}/x`), `r${last}`)]);
rows.push(['prefix, segments', 'no match', measure(prefix, request('/none'), undefined)]);
const mixed = table('mixed');
rows.push(['host+prefix+methods+header', 'last route', measure(mixed, request(`/svc${last}/x`, { host: `svc${last % 50}.example.com`, headers: { 'x-tenant': `t${last % 7}` } }), `r${last}`)]);
const regex = table('regex');
rows.push(['pathRegex', 'last route', measure(regex, request(`/svc${last}/v2/items/abc`), `r${last}`)]);
rows.push(['pathRegex', 'no match', measure(regex, request('/none/v2/items/abc'), undefined)]);

process.stdout.write(`${ROUTES} routes, ${LOOKUPS} lookups each, node ${process.version}\n`);
for (const [kind, which, ns] of rows) process.stdout.write(`${kind.padEnd(28)} ${which.padEnd(12)} ${(ns / 1000).toFixed(2).padStart(8)} µs/lookup\n`);
