// The self-contained live status page served on GET / of the admin listener (inline CSS and JS, no external assets).

import { createHash } from 'node:crypto';

/** How often the page polls /api/v1/status and /metrics. */
const DASHBOARD_POLL_MS = 1500;

// The page script is written without template literals so it can live inside this TypeScript string.
const STYLE = `
:root {
  --bg: #f4f6f9; --panel: #ffffff; --text: #1c2430; --muted: #5b6778; --line: #dde3ea; --head: #18202b;
  --up: #15803d; --up-bg: #dcfce7; --down: #b91c1c; --down-bg: #fee2e2; --ejected: #b45309; --ejected-bg: #fef3c7;
  --draining: #1d4ed8; --draining-bg: #dbeafe; --accent: #2563eb;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f141b; --panel: #171e28; --text: #e3e8ef; --muted: #97a3b4; --line: #2a3442; --head: #0a0e13;
    --up: #4ade80; --up-bg: #12321f; --down: #f87171; --down-bg: #3b1515; --ejected: #fbbf24; --ejected-bg: #3a2a0b;
    --draining: #93c5fd; --draining-bg: #172a4a; --accent: #60a5fa;
  }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; background: var(--bg); color: var(--text); }
header { background: var(--head); color: #f1f5f9; padding: 12px 24px; display: flex; align-items: center; gap: 24px; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; letter-spacing: .02em; }
header h1 span { color: #93c5fd; font-weight: 400; }
header dl { display: flex; gap: 20px; margin: 0; flex-wrap: wrap; }
header dt { font-size: 11px; text-transform: uppercase; color: #94a3b8; letter-spacing: .06em; }
header dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
#conn { margin-left: auto; display: flex; align-items: center; gap: 8px; font-size: 13px; }
#conn::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: #64748b; }
#conn.live::before { background: #22c55e; box-shadow: 0 0 0 3px rgba(34,197,94,.25); }
#conn.lost::before { background: #ef4444; }
main { padding: 20px 24px 40px; max-width: 1400px; margin: 0 auto; }
.banner { border: 1px solid var(--down); background: var(--down-bg); color: var(--down); padding: 10px 14px; border-radius: 6px; margin-bottom: 16px; font-weight: 500; }
.summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin-bottom: 20px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; margin-top: 2px; }
section.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; margin-bottom: 20px; overflow: hidden; }
section.panel > h2 { font-size: 15px; margin: 0; padding: 12px 16px; border-bottom: 1px solid var(--line); display: flex; gap: 12px; align-items: baseline; }
section.panel > h2 small { color: var(--muted); font-weight: 400; font-size: 13px; }
.role { font-size: 11px; font-weight: 400; padding: 0 6px; border-radius: 8px; border: 1px solid currentColor; opacity: 0.75; }
.tag { font-size: 11px; font-weight: 600; padding: 1px 8px; border-radius: 10px; background: var(--down-bg); color: var(--down); }
.tag.dns { background: var(--line); color: var(--muted); font-weight: 500; }
p.dns { margin: 0; padding: 6px 16px; border-bottom: 1px solid var(--line); color: var(--muted); font-size: 13px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; padding: 0; }
th, td { padding: 8px 16px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:last-child > * { border-bottom: 0; }
th[scope="row"] { text-transform: none; letter-spacing: 0; font-size: 14px; color: var(--text); }
tbody tr:hover { background: rgba(127,127,127,.06); }
td.url { color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
td.reason { color: var(--muted); max-width: 320px; overflow: hidden; text-overflow: ellipsis; }
.state { display: inline-flex; align-items: center; gap: 6px; font-weight: 600; font-size: 12px; padding: 2px 10px; border-radius: 12px; text-transform: uppercase; letter-spacing: .04em; }
.state::before { content: ""; width: 7px; height: 7px; border-radius: 50%; background: currentColor; }
.state-up { color: var(--up); background: var(--up-bg); }
.state-down { color: var(--down); background: var(--down-bg); }
.state-ejected { color: var(--ejected); background: var(--ejected-bg); }
.state-draining { color: var(--draining); background: var(--draining-bg); }
.bad { color: var(--down); font-weight: 600; }
.muted { color: var(--muted); }
.stale { opacity: .55; }
#token-dialog { position: fixed; inset: 0; background: rgba(8,12,18,.6); display: flex; align-items: center; justify-content: center; }
#token-dialog[hidden] { display: none; }
#token-dialog form { background: var(--panel); color: var(--text); padding: 24px; border-radius: 10px; width: min(420px, 92vw); box-shadow: 0 20px 50px rgba(0,0,0,.35); }
#token-dialog h2 { margin: 0 0 6px; font-size: 18px; }
#token-dialog p { margin: 0 0 14px; color: var(--muted); }
#token-dialog p.error { color: var(--down); }
#token-dialog input { width: 100%; padding: 9px 10px; font: inherit; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--text); }
#token-dialog button { margin-top: 14px; padding: 9px 16px; font: inherit; font-weight: 600; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 8px 16px; padding: 12px 16px 4px; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font-size: 10px; fill: var(--muted); font-variant-numeric: tabular-nums; }
.chart .title { font-size: 11px; font-weight: 600; fill: var(--text); }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .line { fill: none; stroke-width: 1.5; }
.chart .s0 { stroke: var(--accent); }
.chart .s1 { stroke: var(--ejected); }
.chart .err { stroke: var(--down); }
.chart .marker { stroke: var(--draining); stroke-width: 1; stroke-dasharray: 3 2; }
.chart .marker-label { font-size: 9px; fill: var(--draining); paint-order: stroke; stroke: var(--panel); stroke-width: 3px; stroke-linejoin: round; }
.strips { padding: 0 16px 10px; }
.strip { width: 100%; height: auto; display: block; }
.strip text { font-size: 10px; fill: var(--muted); }
.strip .st-u { fill: var(--up); } .strip .st-d { fill: var(--down); } .strip .st-e { fill: var(--ejected); } .strip .st-r { fill: var(--draining); }
.legend { font-size: 11px; color: var(--muted); padding: 0 16px 8px; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 0 0 24px; }
`;

const SCRIPT = `
(function () {
  'use strict';
  // ?refresh=MS overrides the poll interval, within sane bounds.
  var requested = Number(new URLSearchParams(location.search).get('refresh'));
  var POLL_MS = requested >= 250 && requested <= 60000 ? requested : ${DASHBOARD_POLL_MS};
  var TOKEN_KEY = 'balancer.adminToken';
  var token = sessionStorage.getItem(TOKEN_KEY);
  var previousSample = null;
  var previousStates = null;
  var historyShownFor = null;
  var lastOk = null;
  var waitingForToken = false;
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'className') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  // Prometheus text format: only the families the page needs, keyed by pool and backend.
  function parseMetrics(text) {
    var out = { requests: {}, errors: {}, buckets: {} };
    var lines = text.split('\\n');
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      if (line === '' || line.charAt(0) === '#') continue;
      var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)\\})?\\s+(\\S+)/.exec(line);
      if (!m) continue;
      var name = m[1];
      if (name !== 'balancer_requests_total' && name !== 'balancer_request_duration_seconds_bucket') continue;
      var labels = {};
      var re = /(\\w+)="((?:[^"\\\\]|\\\\.)*)"/g, lm;
      while ((lm = re.exec(m[2] || '')) !== null) labels[lm[1]] = lm[2].replace(/\\\\(.)/g, function (_, c) { return c === 'n' ? '\\n' : c; });
      var key = labels.pool + '\\u0000' + labels.backend;
      var value = Number(m[3]);
      if (name === 'balancer_requests_total') {
        out.requests[key] = (out.requests[key] || 0) + value;
        if (labels.code === '5xx') out.errors[key] = (out.errors[key] || 0) + value;
      } else {
        // One series per route: the same bound of another route's series adds to it.
        var b = out.buckets[key] || (out.buckets[key] = []);
        var bound = labels.le === '+Inf' ? Infinity : Number(labels.le), found = false;
        for (var j = 0; j < b.length; j++) if (b[j][0] === bound) { b[j][1] += value; found = true; }
        if (!found) b.push([bound, value]);
      }
    }
    return out;
  }

  // The same linear interpolation inside a bucket that PromQL's histogram_quantile does.
  function quantile(q, buckets) {
    if (buckets.length === 0) return null;
    buckets.sort(function (a, b) { return a[0] - b[0]; });
    var total = buckets[buckets.length - 1][1];
    if (!(total > 0)) return null;
    var rank = q * total, prevBound = 0, prevCount = 0;
    for (var i = 0; i < buckets.length; i++) {
      var bound = buckets[i][0], count = buckets[i][1];
      if (count >= rank) {
        if (bound === Infinity) return prevBound;
        return prevBound + (bound - prevBound) * ((rank - prevCount) / Math.max(count - prevCount, 1e-12));
      }
      prevBound = bound; prevCount = count;
    }
    return prevBound;
  }

  function rates(current, previous) {
    var result = {};
    if (!previous) return result;
    var seconds = (current.at - previous.at) / 1000;
    if (seconds <= 0) return result;
    Object.keys(current.parsed.requests).forEach(function (key) {
      var before = previous.parsed.requests[key];
      var now = current.parsed.requests[key];
      // A counter that went down was reset (restart or backend re-added): there is no rate for this interval.
      if (before === undefined || now < before) return;
      var delta = now - before;
      var errDelta = (current.parsed.errors[key] || 0) - (previous.parsed.errors[key] || 0);
      var prevBuckets = {};
      (previous.parsed.buckets[key] || []).forEach(function (b) { prevBuckets[b[0]] = b[1]; });
      var deltas = (current.parsed.buckets[key] || []).map(function (b) { return [b[0], b[1] - (prevBuckets[b[0]] || 0)]; });
      result[key] = {
        rps: delta / seconds,
        errorRate: delta > 0 ? Math.max(errDelta, 0) / delta : null,
        p50: quantile(0.5, deltas.slice()),
        p99: quantile(0.99, deltas.slice())
      };
    });
    return result;
  }

  function fmtRate(v) { return v === undefined || v === null ? '\\u2013' : v >= 100 ? v.toFixed(0) : v.toFixed(1); }
  function fmtPct(v) { return v === undefined || v === null ? '\\u2013' : (v * 100).toFixed(v >= 0.1 ? 0 : 1) + '%'; }
  function fmtMs(v) {
    if (v === undefined || v === null) return '\\u2013';
    var ms = v * 1000;
    return ms >= 1000 ? (ms / 1000).toFixed(2) + ' s' : ms >= 10 ? ms.toFixed(0) + ' ms' : ms.toFixed(1) + ' ms';
  }

  var STATE_TEXT = { up: 'up', down: 'down', ejected: 'ejected', draining: 'draining' };
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var WINDOW_MS = 900000;
  var history = null;

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }

  // One line chart over the last 15 minutes: series of [values], config changes as dashed markers.
  function lineChart(kind, title, at, series, fmt, markers) {
    var W = 360, H = 130, L = 46, R = 8, T = 20, B = 16;
    var now = at.length ? at[at.length - 1] : Date.now(), from = now - WINDOW_MS;
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    if (!(max > 0)) max = kind === 'errors' ? 0.01 : 1;
    var x = function (t) { return L + ((t - from) / WINDOW_MS) * (W - L - R); };
    var y = function (v) { return T + (1 - v / max) * (H - T - B); };
    var nodes = [
      svg('text', { x: 0, y: 12, 'class': 'title' }, [title]),
      svg('line', { x1: L, x2: W - R, y1: T, y2: T, 'class': 'grid' }),
      svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, 'class': 'grid' }),
      svg('text', { x: L - 4, y: T + 4, 'text-anchor': 'end' }, [fmt(max)]),
      svg('text', { x: L - 4, y: H - B + 3, 'text-anchor': 'end' }, [fmt(0)]),
      svg('text', { x: L, y: H - 2 }, ['-15 min']),
      svg('text', { x: W - R, y: H - 2, 'text-anchor': 'end' }, ['now'])
    ];
    // Each marker labelled with the version and where it came from, newest first; labels too close to the next
    // newer one go a row lower (up to four rows), and past that only the line and its hover text say it.
    var rowsLabelledAt = [Infinity, Infinity, Infinity, Infinity];
    var labels = [];
    (markers || []).slice().reverse().forEach(function (m) {
      if (m.at < from) return;
      var source = m.source ? sourceText(m.source) : 'source no longer in the config history';
      var what = 'config v' + m.version + ' at ' + new Date(m.at).toLocaleTimeString() + ': ' + source + (m.change ? ' (' + m.change + ')' : '');
      nodes.push(svg('line', { x1: x(m.at), x2: x(m.at), y1: T, y2: H - B, 'class': 'marker', 'data-version': m.version, 'data-source': m.source ? m.source.kind : '' },
        [svg('title', {}, [what])]));
      for (var row = 0; row < rowsLabelledAt.length; row++) {
        if (rowsLabelledAt[row] - x(m.at) < 44) continue;
        rowsLabelledAt[row] = x(m.at);
        var left = x(m.at) - L < 48;
        labels.push(svg('text', { x: x(m.at) + (left ? 2 : -2), y: T + 9 + row * 10, 'text-anchor': left ? 'start' : 'end', 'class': 'marker-label', 'data-version': m.version },
          ['v' + m.version + (m.source ? ' ' + (SOURCE_SHORT[m.source.kind] || m.source.kind) : '')]));
        break;
      }
    });
    series.forEach(function (s, i) {
      var d = '', pen = 'M';
      for (var k = 0; k < at.length; k++) {
        var v = s.values[k];
        if (v === null || at[k] < from) { pen = 'M'; continue; }
        d += pen + x(at[k]).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
        pen = 'L';
      }
      nodes.push(svg('path', { d: d.trim(), 'class': 'line ' + (s.cls || 's' + i), 'data-series': s.name }, [svg('title', {}, [s.name])]));
    });
    // Over the lines, so they stay readable.
    nodes.push.apply(nodes, labels);
    return svg('svg', { viewBox: '0 0 ' + W + ' ' + H, 'class': 'chart', 'data-chart': kind, role: 'img', 'aria-label': title + ' over the last 15 minutes' }, nodes);
  }

  // Each backend's state over the same 15 minutes, one row each, runs of a state as one rectangle.
  function stateStrips(at, backends) {
    var W = 1000, ROW = 14, L = 120;
    var now = at.length ? at[at.length - 1] : Date.now(), from = now - WINDOW_MS;
    var x = function (t) { return L + ((t - from) / WINDOW_MS) * (W - L); };
    var nodes = [];
    backends.forEach(function (b, row) {
      var top = row * ROW;
      nodes.push(svg('text', { x: 0, y: top + 10 }, [b.id]));
      var start = 0;
      for (var k = 1; k <= b.states.length; k++) {
        if (k < b.states.length && b.states.charAt(k) === b.states.charAt(start)) continue;
        var code = b.states.charAt(start);
        if (code !== '-' && at[start] !== undefined) {
          var end = k < at.length ? at[k] : now + 1000;
          nodes.push(svg('rect', { x: x(Math.max(at[start], from)).toFixed(1), y: top + 2, width: Math.max(1, x(end) - x(Math.max(at[start], from))).toFixed(1), height: ROW - 4,
            'class': 'st-' + code, 'data-backend': b.id, 'data-state': STATE_NAMES[code] }, [svg('title', {}, [b.id + ': ' + STATE_NAMES[code] + ' from ' + new Date(at[start]).toLocaleTimeString()])]));
        }
        start = k;
      }
    });
    return svg('svg', { viewBox: '0 0 ' + W + ' ' + Math.max(ROW, backends.length * ROW), 'class': 'strip', 'data-strips': 'states', role: 'img', 'aria-label': 'backend states over the last 15 minutes' }, nodes);
  }
  var STATE_NAMES = { u: 'up', d: 'down', e: 'ejected', r: 'draining' };

  // Where a config change came from, as the history table and the chart markers say it.
  function sourceText(s) {
    var from = s.kind === 'rollback' ? 'rollback to v' + s.rollbackOf : s.kind === 'file' || s.kind === 'seed' ? s.kind + ' ' + (s.file || '') : s.kind;
    return from + (s.node ? ' on ' + s.node : '');
  }
  var SOURCE_SHORT = { file: 'file', seed: 'seed', api: 'API', cli: 'CLI', rollback: 'rollback', unknown: '?' };

  function poolCharts(name) {
    if (!history) return null;
    var h = null;
    history.pools.forEach(function (p) { if (p.name === name) h = p; });
    if (!h) return null;
    var markers = history.configChanges;
    return el('div', { 'data-charts': name }, [
      el('div', { className: 'charts' }, [
        lineChart('rps', 'Requests/s', history.at, [{ name: 'requests/s', values: h.requestsPerSecond }], fmtRate, markers),
        lineChart('errors', '5xx ratio', history.at, [{ name: '5xx ratio', values: h.errorRatio, cls: 'err' }], fmtPct, markers),
        lineChart('latency', 'Latency p50 / p99', history.at, [{ name: 'p50', values: h.p50 }, { name: 'p99', values: h.p99 }], fmtMs, markers)
      ]),
      el('div', { className: 'strips' }, [stateStrips(history.at, h.backends)]),
      el('div', { className: 'legend', text: 'Last 15 minutes, one point per second. Strips: green up, red down, amber ejected, blue draining. Dashed lines: config changes, labelled with the version and where each came from (hover for what it changed).' })
    ]);
  }

  // The strategy with what it hashes on and its sticky cookie (the CLI's strategyText, for the browser).
  function strategyText(pool) {
    var text = pool.strategy;
    var on = pool.hashOn;
    if (on) text += ' on ' + (on === 'sourceIp' ? 'sourceIp' : on.header ? 'header ' + on.header : on.cookie ? 'cookie ' + on.cookie : 'query ' + on.query);
    if (pool.stickyCookie) text += ', sticky cookie ' + pool.stickyCookie;
    return text;
  }

  function renderPools(status, perBackend) {
    var container = $('pools');
    var fragment = document.createDocumentFragment();
    var totals = { rps: 0, req: 0, err: 0, up: 0, all: 0, failing: 0 };
    status.pools.forEach(function (pool) {
      var title = el('h2', { id: 'pool-' + pool.name }, [pool.name, ' ', el('small', { 'data-strategy': pool.strategy, text: strategyText(pool) })]);
      if (pool.backupsServing) title.appendChild(el('span', { className: 'tag', 'data-backups-serving': 'true', text: 'backups serving' }));
      if (pool.panic) title.appendChild(el('span', { className: 'tag', text: 'panic mode' }));
      var dns = pool.discovery;
      var dnsLine = dns ? el('p', { className: 'dns', 'data-dns': dns.name, text: 'DNS ' + dns.type + ' ' + dns.name + (dns.servers ? ' (' + dns.servers.join(', ') + ')' : '') + ': ' + dns.found + ' found' +
        (dns.failures > 0 ? ' \u2013 ' + dns.failures + ' failed lookup(s), keeping the last answer: ' + (dns.lastError || '') : '') }) : null;
      var head = el('tr', null, ['Backend', 'URL', 'State', 'Weight', 'Effective', 'In-flight', 'Req/s', '5xx', 'p50', 'p99', 'EWMA', 'Detail'].map(function (h, i) {
        var th = el('th', { scope: 'col', className: i >= 3 && i <= 10 ? 'num' : '', text: h });
        if (h === 'EWMA') th.title = 'Peak-EWMA latency: what peak-ewma picks by (kept for every pool)';
        return th;
      }));
      var body = el('tbody');
      pool.backends.forEach(function (b) {
        var r = perBackend[pool.name + '\\u0000' + b.id] || {};
        totals.all++;
        if (b.state === 'up') totals.up++;
        if (b.state === 'down' || b.state === 'ejected') totals.failing++;
        if (r.rps !== undefined) { totals.rps += r.rps; }
        if (r.errorRate !== undefined && r.errorRate !== null) { totals.req += r.rps; totals.err += r.rps * r.errorRate; }
        var detail = b.reason || (b.lastCheck ? (b.lastCheck.ok ? 'check ok' : 'check failed: ' + b.lastCheck.detail) : '');
        var errCell = el('td', { className: 'num' + (r.errorRate > 0.05 ? ' bad' : ''), text: fmtPct(r.errorRate) });
        body.appendChild(el('tr', { 'data-pool': pool.name, 'data-backend': b.id }, [
          el('th', { scope: 'row' }, [b.id].concat(b.backup ? [' ', el('span', { className: 'role', 'data-backup': 'true', text: 'backup' })] : [])
            .concat(b.discovered ? [' ', el('span', { className: 'tag dns', title: 'found in DNS by this node; only drain applies', text: 'dns' })] : [])),
          el('td', { className: 'url', title: b.address ? 'connections go to ' + b.address : '', text: b.url + (b.address ? ' \u2192 ' + b.address : '') }),
          el('td', { 'data-state': b.state }, [el('span', { className: 'state state-' + b.state, text: STATE_TEXT[b.state] || b.state })]),
          el('td', { className: 'num', text: String(b.weight) }),
          el('td', { className: 'num', text: String(b.effectiveWeight) }),
          el('td', { className: 'num', text: String(b.inflight) }),
          el('td', { className: 'num', text: fmtRate(r.rps) }),
          errCell,
          el('td', { className: 'num', text: fmtMs(r.p50) }),
          el('td', { className: 'num', text: fmtMs(r.p99) }),
          // Until a backend is measured the strategy assumes ewma.initial: shown muted, so nobody mistakes it for a measurement.
          el('td', { className: 'num' + (b.latencyMeasured ? '' : ' muted'), 'data-ewma': b.latencyMeasured ? 'measured' : 'initial',
            title: b.latencyMeasured ? 'peak-EWMA latency' : 'not measured yet: the pool\u2019s ewma.initial', text: fmtMs(b.latencyEwmaMs / 1000) }),
          el('td', { className: 'reason', title: detail, text: detail })
        ]));
      });
      var table = el('table', { 'aria-labelledby': 'pool-' + pool.name }, [el('thead', null, [head]), body]);
      var parts = [title];
      if (dnsLine) parts.push(dnsLine);
      var charts = poolCharts(pool.name);
      if (charts) parts.push(charts);
      parts.push(el('div', { className: 'scroll' }, [table]));
      fragment.appendChild(el('section', { className: 'panel', 'aria-label': 'pool ' + pool.name }, parts));
    });
    container.replaceChildren(fragment);
    $('sum-rps').textContent = previousSample ? fmtRate(totals.rps) : '\\u2013';
    $('sum-err').textContent = totals.req > 0 ? fmtPct(totals.err / totals.req) : '\\u2013';
    $('sum-up').textContent = totals.up + ' / ' + totals.all;
    // Draining is an operator's choice, not a failure: only down or ejected backends turn this red.
    $('sum-up').className = 'value' + (totals.failing > 0 ? ' bad' : '');
  }

  function renderCluster(c) {
    var standalone = c.role === 'standalone';
    $('h-role').textContent = c.role;
    $('cluster-panel').hidden = standalone;
    if (standalone) {
      $('h-term').textContent = '\u2013';
      $('h-leader').textContent = '\u2013';
      $('sum-leader').textContent = 'single node';
      $('sum-leader').className = 'value muted';
      return;
    }
    $('h-term').textContent = String(c.term);
    $('h-leader').textContent = c.leader || 'none';
    $('sum-leader').textContent = c.leader || 'no leader';
    $('sum-leader').className = 'value' + (c.leader ? '' : ' bad');
    $('cluster-meta').textContent = 'term ' + c.term + ' \\u00b7 commit ' + c.commitIndex + ' \\u00b7 applied ' + c.appliedIndex;
    var rows = document.createDocumentFragment();
    c.members.forEach(function (m) {
      var role = m.id === c.leader ? 'leader' : m.voter ? 'voter' : 'learner';
      var reach = m.reachable === null ? '\\u2013' : m.reachable ? 'yes' : 'no';
      rows.appendChild(el('tr', { 'data-member': m.id }, [
        el('th', { scope: 'row', text: m.id + (m.id === c.nodeId ? ' (this node)' : '') }),
        el('td', { className: 'url', text: m.address }),
        el('td', { text: role }),
        el('td', { className: 'num', text: m.matchIndex === null ? '\\u2013' : String(m.matchIndex) }),
        el('td', { className: m.reachable === false ? 'bad' : '', text: reach })
      ]));
    });
    $('members').replaceChildren(rows);
  }

  // The last config changes: fetched again only when the config version moves.
  function renderHistory(version, headers) {
    if (historyShownFor === version) return;
    historyShownFor = version;
    fetch('/api/v1/config/history', { headers: headers, cache: 'no-store' }).then(function (res) {
      return res.ok ? res.json() : null;
    }).then(function (body) {
      if (!body) { historyShownFor = null; return; }
      var rows = document.createDocumentFragment();
      body.versions.slice(0, 10).forEach(function (v) {
        rows.appendChild(el('tr', { 'data-version': String(v.version) }, [
          el('th', { scope: 'row', text: 'v' + v.version + (v.version === body.current ? ' (current)' : '') }),
          el('td', { text: v.at ? new Date(v.at).toLocaleString() : '\u2013' }),
          el('td', { text: sourceText(v.source || {}) }),
          el('td', { text: v.change }),
          el('td', { className: 'url', text: v.requestId })
        ]));
      });
      $('history').replaceChildren(rows);
    }, function () { historyShownFor = null; });
  }

  function announceChanges(status) {
    var states = {};
    var messages = [];
    status.pools.forEach(function (p) {
      p.backends.forEach(function (b) {
        var key = p.name + '/' + b.id;
        states[key] = b.state;
        if (previousStates && previousStates[key] !== undefined && previousStates[key] !== b.state) {
          messages.push('Backend ' + b.id + ' in pool ' + p.name + ' is now ' + b.state + '.');
        }
      });
    });
    previousStates = states;
    if (messages.length > 0) $('announcer').textContent = messages.join(' ');
  }

  function setConnection(ok, message) {
    var conn = $('conn');
    conn.className = ok ? 'live' : 'lost';
    conn.textContent = ok ? 'live \\u00b7 updated ' + new Date().toLocaleTimeString() : 'disconnected';
    var banner = $('banner');
    banner.hidden = ok;
    if (!ok) banner.textContent = message;
    $('content').classList.toggle('stale', !ok);
  }

  function askForToken(message, isError) {
    waitingForToken = true;
    var text = $('token-message');
    text.textContent = message;
    text.className = isError ? 'error' : '';
    $('token-dialog').hidden = false;
    $('token-input').value = '';
    $('token-input').focus();
  }

  function poll() {
    timer = null;
    if (waitingForToken) return;
    var headers = token ? { Authorization: 'Bearer ' + token } : {};
    var statusReq = fetch('/api/v1/status', { headers: headers, cache: 'no-store' });
    var metricsReq = fetch('/metrics', { cache: 'no-store' }).then(function (r) { return r.ok ? r.text() : ''; }, function () { return ''; });
    // The charts' history; without it (an older node) the page shows the tables alone.
    var historyReq = fetch('/api/v1/history', { headers: headers, cache: 'no-store' }).then(function (r) { return r.ok ? r.json() : null; }, function () { return null; });
    Promise.all([statusReq, metricsReq, historyReq]).then(function (results) {
      if (results[2]) history = results[2];
      var res = results[0];
      if (res.status === 401 || res.status === 403) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          var code = body && body.error ? body.error.code : '';
          if (code === 'ADMIN_TOKEN_NOT_SET') {
            setConnection(false, body.error.message);
            schedule(POLL_MS * 4);
            return;
          }
          sessionStorage.removeItem(TOKEN_KEY);
          token = null;
          askForToken(res.status === 401 ? 'This page needs the admin token to read the status.'
            : 'That token was rejected (403). Enter the admin token configured for this node.', res.status === 403);
        });
      }
      if (!res.ok) {
        setConnection(false, 'The admin API answered ' + res.status + '; retrying every ' + (POLL_MS / 1000) + ' s.');
        schedule(POLL_MS);
        return;
      }
      return res.json().then(function (status) {
        var sample = { at: performance.now(), parsed: parseMetrics(results[1]) };
        var perBackend = rates(sample, previousSample);
        previousSample = sample;
        lastOk = new Date();
        $('h-node').textContent = status.node;
        $('h-version').textContent = 'v' + status.version;
        $('h-ready').textContent = status.ready ? 'ready' : 'not ready: ' + (status.notReady || []).map(function (n) { return n.reason; }).join('; ');
        renderPools(status, perBackend);
        renderCluster(status.cluster);
        renderHistory(status.version, headers);
        announceChanges(status);
        setConnection(true);
        schedule(POLL_MS);
      });
    }).catch(function () {
      setConnection(false, 'Cannot reach the admin API at ' + location.host + (lastOk ? ' since ' + lastOk.toLocaleTimeString() : '') +
        '. Is balancer running? Retrying every ' + (POLL_MS / 1000) + ' s\\u2026');
      schedule(POLL_MS);
    });
  }

  function schedule(ms) { if (timer === null) timer = setTimeout(poll, ms); }

  $('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('token-input').value.trim();
    if (value === '') return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-dialog').hidden = true;
    waitingForToken = false;
    poll();
  });

  if (token) poll();
  else askForToken('Enter the admin token (admin.token, admin.tokenFile or BALANCER_ADMIN_TOKEN). It is kept only for this browser tab.', false);
})();
`;

const BODY = `
<header>
  <h1>balancer <span>status</span></h1>
  <dl>
    <div><dt>Node</dt><dd id="h-node">&ndash;</dd></div>
    <div><dt>Config</dt><dd id="h-version">&ndash;</dd></div>
    <div><dt>State</dt><dd id="h-ready">&ndash;</dd></div>
    <div><dt>Role</dt><dd id="h-role">&ndash;</dd></div>
    <div><dt>Term</dt><dd id="h-term">&ndash;</dd></div>
    <div><dt>Leader</dt><dd id="h-leader">&ndash;</dd></div>
  </dl>
  <div id="conn" role="status">connecting&hellip;</div>
</header>
<main>
  <div id="banner" class="banner" role="alert" hidden></div>
  <div id="announcer" class="sr-only" aria-live="polite"></div>
  <div id="content">
    <div class="summary">
      <div class="card"><div class="label">Requests/s</div><div class="value" id="sum-rps">&ndash;</div></div>
      <div class="card"><div class="label">5xx ratio</div><div class="value" id="sum-err">&ndash;</div></div>
      <div class="card"><div class="label">Backends up</div><div class="value" id="sum-up">&ndash;</div></div>
      <div class="card"><div class="label">Raft leader</div><div class="value" id="sum-leader">&ndash;</div></div>
    </div>
    <div id="pools"></div>
    <section id="cluster-panel" class="panel" aria-labelledby="cluster-title">
      <h2 id="cluster-title">Cluster <small id="cluster-meta"></small></h2>
      <div class="scroll">
        <table aria-labelledby="cluster-title">
          <thead><tr><th scope="col">Member</th><th scope="col">Address</th><th scope="col">Role</th><th scope="col" class="num">Match index</th><th scope="col">Reachable</th></tr></thead>
          <tbody id="members"></tbody>
        </table>
      </div>
    </section>
    <section id="history-panel" class="panel" aria-labelledby="history-title">
      <h2 id="history-title">Recent config changes</h2>
      <div class="scroll">
        <table aria-labelledby="history-title">
          <thead><tr><th scope="col">Version</th><th scope="col">When</th><th scope="col">From</th><th scope="col">Change</th><th scope="col">Request id</th></tr></thead>
          <tbody id="history"></tbody>
        </table>
      </div>
    </section>
  </div>
</main>
<footer>Table rates, error ratio and latency percentiles are computed in this page from /metrics deltas between polls; the charts come from the node's own per-second history (GET /api/v1/history).</footer>
<div id="token-dialog" hidden>
  <form id="token-form" role="dialog" aria-modal="true" aria-labelledby="token-title">
    <h2 id="token-title">Admin token</h2>
    <p id="token-message"></p>
    <label for="token-input" class="sr-only">Token</label>
    <input id="token-input" type="password" autocomplete="current-password" spellcheck="false" required>
    <button type="submit">Connect</button>
  </form>
</div>
`;

function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>balancer status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * Only this page's own inline style and script may run (by hash), it may only talk to its own
 * origin, and it may not be framed, so a stolen-click or injected-markup attack has nothing to work with.
 */
export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': [
    "default-src 'none'",
    `script-src ${cspHash(SCRIPT)}`,
    `style-src ${cspHash(STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
};
