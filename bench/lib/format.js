// Renders a results object as markdown: the stdout table of `npm run bench` and the docs/benchmarks.md section of `bench/report.js`.

import { renderClusterMarkdown } from '../cluster.js';
import { renderFleetMarkdown } from '../fleet.js';
import { renderStrategiesMarkdown } from '../strategies.js';
import { renderHttp2Markdown } from '../http2.js';

function num(value, digits = 0) {
  if (value === null || value === undefined) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
function ms(us) {
  return us === null || us === undefined ? '—' : num(us / 1000, 2);
}
function times(value) {
  return value === null || value === undefined ? '—' : `${num(value, 2)}x`;
}
function mb(bytes) {
  return bytes === null || bytes === undefined ? '—' : num(bytes / (1024 * 1024), 0);
}

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

function skippedLines(section) {
  return Object.entries(section?.skipped ?? {}).map(([id, reason]) => `- ${id}: skipped (${reason})`);
}

export function renderMarkdown(results) {
  const out = [];
  const m = results.machine;
  out.push(
    `Measured ${results.date} (${results.mode} mode) on ${m.cpuCount} x ${m.cpuModel}, ${mb(m.totalMemoryBytes)} MB RAM, ` +
      `${m.os}; node ${results.versions.node}, ${results.versions.haproxy ?? 'no HAProxy'}, ${results.versions.nginx ?? 'no nginx'}, ` +
      `load from ${results.loadTool}. Load average before/after: ${m.loadAverageBefore.join(' ')} / ${(m.loadAverageAfter ?? []).join(' ')}` +
      ' (a shared machine: req/s swings from run to run; CPU per request is steadier).',
  );
  // Results from before several processes per target were run hold no processesPerTarget: they ran one.
  if ((results.processesPerTarget ?? 1) > 1) {
    out.push(
      '',
      `Every target ran as ${results.processesPerTarget} processes started in interleaved order (identical processes differ by up to 13% in CPU per ` +
        'request on this kind of machine); the rounds take them in turn, so each median below covers all of them.',
    );
  }
  out.push('');
  const http = results.http;
  if (http) {
    out.push(
      `**GET, small body**: ${http.settings.connections} connections, ${http.settings.threads} wrk thread(s), ${http.settings.seconds} s per run, ` +
        `median of ${http.settings.runs} alternating runs after a ${http.settings.warmupSeconds} s warm-up. CPU is utime+stime of the proxy's process tree per request served.`,
    );
    out.push('');
    const rows = http.order
      .filter((id) => http.summary[id])
      .map((id) => {
        const s = http.summary[id];
        return [
          s.label,
          num(s.rps),
          ms(s.p50Us),
          ms(s.p99Us),
          num(s.cpuUsPerRequest, 1),
          mb(s.rssBytes),
          String(s.processes ?? '—'),
          times(s.rpsVsHaproxy),
          times(s.rpsVsNaive),
          times(s.cpuVsHaproxy),
          s.errors > 0 ? num(s.errors) : '0',
        ];
      });
    out.push(
      table(['target', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'RSS MB', 'procs', 'req/s vs HAProxy', 'req/s vs naive', 'CPU vs HAProxy', 'errors'], rows),
    );
    for (const id of http.order) if (http.summary[id]?.note) out.push(`- ${http.summary[id].label}: ${http.summary[id].note}`);
    out.push(...skippedLines(http));
    out.push('');
  }
  const post = results.post;
  if (post) {
    out.push(`**1 MB POST** (streaming through, backend counts the bytes): ${post.settings.connections} connections, ${post.settings.seconds} s per run, median of ${post.settings.runs}.`);
    out.push('');
    out.push(
      table(
        ['target', 'MB/s', 'req/s', 'p99 ms', 'CPU µs/MB', 'errors'],
        post.order.filter((id) => post.summary[id]).map((id) => {
          const s = post.summary[id];
          return [s.label, num(s.mbPerSecond, 0), num(s.rps, 0), ms(s.p99Us), num(s.cpuUsPerRequest, 0), num(s.errors)];
        }),
      ),
    );
    out.push(...skippedLines(post));
    out.push('');
  }
  const ws = results.websocket;
  if (ws) {
    out.push(`**WebSocket echo**: ${ws.settings.connections} connections, ${ws.settings.window} messages of ${ws.settings.size} bytes in flight each, ${ws.settings.seconds} s per run, median of ${ws.settings.runs}.`);
    out.push('');
    out.push(
      table(
        ['target', 'messages/s', 'CPU µs/message', 'errors'],
        ws.order.filter((id) => ws.summary[id]).map((id) => {
          const s = ws.summary[id];
          return [s.label, num(s.messagesPerSecond), num(s.cpuUsPerMessage, 1), num(s.errors)];
        }),
      ),
    );
    out.push(...skippedLines(ws));
    out.push('');
  }
  const fixed = results.fixedRate;
  if (fixed) {
    out.push(
      `**Fixed offered rate ${num(fixed.settings.rate)} req/s** (open loop, latency from each request's scheduled send time, so stalls are not hidden): ` +
        `${fixed.settings.seconds} s per run after ${fixed.settings.warmupSeconds} s, median of ${fixed.settings.runs}` +
        (fixed.settings.targetWarmupSeconds ? `; each target served the same rate for ${fixed.settings.targetWarmupSeconds} s, unmeasured, before the first run.` : '.'),
    );
    out.push('');
    out.push(
      table(
        ['target', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'achieved req/s', 'errors'],
        fixed.order.filter((id) => fixed.summary[id]).map((id) => {
          const s = fixed.summary[id];
          return [s.label, ms(s.p50Us), ms(s.p99Us), ms(s.p999Us), ms(s.maxUs), num(s.achievedRate), num(s.errors)];
        }),
      ),
    );
    out.push(...skippedLines(fixed));
    out.push('');
  }
  const idle = results.idleConnections;
  if (idle) {
    // Results from before the settled reading have no settleSeconds: their table keeps its four columns.
    const settle = idle.settings.settleSeconds;
    out.push(
      `**${num(idle.settings.count)} idle keep-alive client connections** (each made one GET, then stays open; RSS read 2 s after the last is up` +
        (settle === undefined ? '):' : `, and again after ${settle} s held with no traffic):`),
    );
    out.push('');
    out.push(
      table(
        ['target', 'connections held', 'RSS before MB', 'RSS with connections MB', ...(settle === undefined ? [] : [`RSS after ${settle} s MB`]), 'KB per connection'],
        idle.order.filter((id) => idle.summary[id]).map((id) => {
          const s = idle.summary[id];
          // With several processes the cell gives their median, then each one's reading.
          const each = (s.readings ?? []).filter((r) => r.error === undefined);
          const cell = (pick) => (each.length > 1 ? `${mb(pick(s))} (${each.map((r) => mb(pick(r))).join(', ')})` : mb(pick(s)));
          const settled = s.heldSettled < s.held ? `${cell((r) => r.rssSettledBytes)}, ${num(s.heldSettled)} still held` : cell((r) => r.rssSettledBytes);
          return [
            s.label,
            num(s.held),
            mb(s.rssBeforeBytes),
            cell((r) => r.rssWithBytes),
            ...(settle === undefined ? [] : [settled]),
            s.error ? s.error : num(s.bytesPerConnection / 1024, 1),
          ];
        }),
      ),
    );
    out.push(...skippedLines(idle));
    out.push('');
  }
  const instructions = results.instructions;
  if (instructions) {
    if (instructions.date && instructions.date !== results.date) out.push(`_Instruction counts measured ${instructions.date} (${instructions.resultsFile ?? 'a partial run'})._`, '');
    out.push(
      `**Instructions per GET** (valgrind callgrind, user space, every thread; ${num(instructions.settings.requests)} keep-alive GETs over 8 connections ` +
        `after ${num(instructions.settings.warmup)} of warm-up). The main thread's count repeats to about 0.3% whatever the machine is doing, ` +
        "unlike the CPU times above; V8's helper threads (background compiler, GC) move by up to 10%. Kernel work (the same socket syscalls for every proxy) is not in it. " +
        "Periodic work (health checks, balancer's once-a-second dashboard sampler) is taken off the main thread's count: a second window on the same instance, 20 s with one request a second, " +
        'gives its rate. Valgrind stretches the requests over a minute or two, so counted raw that work would land on each request a hundred times over its real share, and more on a busier machine.',
    );
    out.push('');
    out.push(
      table(
        ['target', 'instructions/request', 'of which main thread', 'vs naive', 'vs HAProxy', 'raw (periodic work included)', 'periodic instructions/s (main thread)', 'window s'],
        (instructions.order ?? []).filter((id) => instructions.summary[id]).map((id) => {
          const s = instructions.summary[id];
          return [
            instructions.labels?.[id] ?? id,
            num(s.instructionsPerRequest),
            num(s.mainThreadPerRequest),
            times(s.vsNaive),
            times(s.vsHaproxy),
            // Results from before periodic work was measured hold only the raw counts.
            s.rawInstructionsPerRequest === undefined ? '—' : num(s.rawInstructionsPerRequest),
            s.periodicInstructionsPerSecond === undefined ? '—' : num(s.periodicInstructionsPerSecond),
            s.windowSeconds === undefined ? '—' : String(s.windowSeconds),
          ];
        }),
      ),
    );
    out.push(...skippedLines(instructions));
    out.push('');
  }
  if (results.cluster) {
    out.push(...renderClusterMarkdown(results.cluster));
    out.push('');
  }
  if (results.fleet?.rows) {
    const machine = results.fleet.machine ?? results.machine;
    if (machine?.loadAverageBefore) out.push(`_Fleet load average before/after ${machine.loadAverageBefore.join(' ')} / ${(machine.loadAverageAfter ?? []).join(' ')}._`, '');
    out.push(...renderFleetMarkdown(results.fleet));
    out.push('');
  }
  if (results.strategies?.summary) {
    const s = results.strategies;
    if (s.date && s.date !== results.date) {
      out.push(`_Strategies measured ${s.date}; load average before/after ${s.machine.loadAverageBefore.join(' ')} / ${(s.machine.loadAverageAfter ?? []).join(' ')}._`, '');
    }
    out.push(...renderStrategiesMarkdown(s));
    out.push('');
  }
  if (results.http2?.summary) {
    out.push(...renderHttp2Markdown(results.http2));
    out.push('');
  } else if (results.http2?.status) {
    out.push(`**HTTP/2 and gRPC**: ${results.http2.status}`, '');
  }
  if (results.targets) {
    out.push('**Targets** (one proxy process each, no workers; ratios of the medians above):');
    out.push('');
    out.push(
      table(
        ['target', 'measured', 'status'],
        results.targets.map((t) => [t.name, t.measured, t.met === null ? 'not measured' : t.met ? 'met' : '**not met**']),
      ),
    );
    out.push('');
  }
  return out.join('\n');
}
