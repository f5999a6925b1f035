// Open-loop load at a fixed offered rate, with latency measured from each request's scheduled send time
// (so a stalled server is charged for the requests it kept waiting: no coordinated omission).
// Usage: node bench/load/constant-rate.js --url http://127.0.0.1:PORT/ --rate 2000 --seconds 10 [--warmup 2] [--max-connections 256]
// Prints one JSON line: { offered, sent, completed, errors, latencyUs: {p50,p90,p99,p999,max,mean}, serviceUs: {...} }.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'max-connections': { type: 'string', default: '256' },
    'initial-connections': { type: 'string', default: '16' },
  },
});
const target = new URL(values.url);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);
const maxConnections = Number(values['max-connections']);
const initialConnections = Number(values['initial-connections']);
const REQUEST = Buffer.from(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nUser-Agent: balancer-bench\r\n\r\n`);
/** Requests still unanswered this long after the schedule ends are charged this latency and counted as incomplete. */
const DRAIN_MS = 5000;

const intervalMs = 1000 / rate;
const totalRequests = Math.round(rate * (warmupSeconds + seconds));
const measuredFrom = Math.round(rate * warmupSeconds);
const latencies = new Float64Array(totalRequests - measuredFrom);
const services = new Float64Array(totalRequests - measuredFrom);
let recorded = 0;
let completed = 0;
let errors = 0;
let nextIndex = 0;
let startMs = 0;
const waiting = []; // scheduled indices not yet sent, oldest first
let waitingHead = 0;
const idle = [];
const everyConnection = new Set();
let open = 0;
let opening = 0;

function record(index, scheduledMs, sentMs, nowMs) {
  if (index < measuredFrom) return;
  latencies[recorded] = nowMs - scheduledMs;
  services[recorded] = nowMs - sentMs;
  recorded++;
}

/** One keep-alive connection carrying one request at a time; parses just enough HTTP/1.1 to find each response's end. */
function openConnection() {
  opening++;
  const socket = net.connect({ host: target.hostname, port: Number(target.port) });
  socket.setNoDelay(true);
  const state = { socket, index: -1, scheduledMs: 0, sentMs: 0, buffer: Buffer.alloc(0), connected: false };
  everyConnection.add(state);
  socket.on('connect', () => {
    state.connected = true;
    opening--;
    open++;
    idle.push(state);
    dispatch();
  });
  socket.on('data', (chunk) => {
    state.buffer = state.buffer.length === 0 ? chunk : Buffer.concat([state.buffer, chunk]);
    const headerEnd = state.buffer.indexOf('\r\n\r\n');
    if (headerEnd < 0 || state.index < 0) return;
    const head = state.buffer.subarray(0, headerEnd).toString('latin1');
    const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let complete;
    if (lengthMatch) complete = state.buffer.length >= headerEnd + 4 + Number(lengthMatch[1]);
    else complete = /\r\ntransfer-encoding:\s*chunked/i.test(head) ? state.buffer.subarray(headerEnd).includes('\r\n0\r\n\r\n') : true;
    if (!complete) return;
    const now = performance.now();
    if (!head.startsWith('HTTP/1.1 200')) errors++;
    completed++;
    record(state.index, state.scheduledMs, state.sentMs, now);
    state.index = -1;
    state.buffer = Buffer.alloc(0);
    idle.push(state);
    dispatch();
  });
  const lost = () => {
    if (state.index >= 0) {
      errors++;
      record(state.index, state.scheduledMs, state.sentMs, performance.now());
      state.index = -1;
    }
    const at = idle.indexOf(state);
    if (at >= 0) idle.splice(at, 1);
    if (state.connected) open--;
    else opening--;
    state.connected = false;
  };
  socket.on('error', () => socket.destroy());
  socket.on('close', lost);
}

function dispatch() {
  // Bounded by the queue length: each pass sends one request or stops.
  while (waitingHead < waiting.length && idle.length > 0) {
    const state = idle.pop();
    const index = waiting[waitingHead++];
    state.index = index;
    state.scheduledMs = startMs + index * intervalMs;
    state.sentMs = performance.now();
    state.socket.write(REQUEST);
  }
  if (waitingHead > 4096) {
    waiting.splice(0, waitingHead);
    waitingHead = 0;
  }
  const backlog = waiting.length - waitingHead;
  if (backlog > 0 && open + opening < maxConnections && opening < backlog) openConnection();
}

function tick() {
  const now = performance.now();
  while (nextIndex < totalRequests && startMs + nextIndex * intervalMs <= now) waiting.push(nextIndex++);
  dispatch();
  if (nextIndex < totalRequests) setTimeout(tick, 1);
  else finish();
}

function percentiles(samples) {
  const sorted = Float64Array.from(samples).sort();
  const at = (q) => (sorted.length === 0 ? null : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 1000));
  let sum = 0;
  for (const value of sorted) sum += value;
  const mean = sorted.length === 0 ? null : Math.round((sum / sorted.length) * 1000);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1), mean };
}

function finish() {
  const scheduleEnd = performance.now();
  const poll = () => {
    const outstanding = totalRequests - measuredFrom - recorded;
    const now = performance.now();
    if (outstanding > 0 && now - scheduleEnd < DRAIN_MS) {
      setTimeout(poll, 10);
      return;
    }
    // Whatever never completed is charged the time it has waited so far: a lower bound on its latency.
    const incomplete = outstanding;
    const inFlight = [...everyConnection].filter((state) => state.index >= 0).map((state) => state.index);
    const neverAnswered = [...waiting.slice(waitingHead), ...inFlight];
    for (const index of neverAnswered) if (index >= measuredFrom && recorded < latencies.length) {
      latencies[recorded] = now - (startMs + index * intervalMs);
      services[recorded] = 0;
      recorded++;
    }
    const result = {
      offeredRate: rate,
      seconds,
      warmupSeconds,
      measured: totalRequests - measuredFrom,
      completed,
      incomplete,
      errors,
      connections: open,
      achievedRate: (totalRequests - measuredFrom - incomplete) / seconds,
      latencyUs: percentiles(latencies.subarray(0, recorded)),
      serviceUs: percentiles(services.subarray(0, recorded).filter((v) => v > 0)),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  };
  poll();
}

for (let i = 0; i < Math.min(initialConnections, maxConnections); i++) openConnection();
const ready = setInterval(() => {
  if (open >= Math.min(initialConnections, maxConnections) || opening === 0) {
    clearInterval(ready);
    startMs = performance.now();
    tick();
  }
}, 5);
