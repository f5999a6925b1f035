// Keeps the DNS answers this node's pools need current, and expands pools with them: discovered backends, resolved addresses.
//
// Each question (a pool's discovery.dns, or the host name of a backend URL) is asked when a config first needs it and
// again at its TTL, at most every interval; identical questions of several pools are asked once. A failed or empty
// answer keeps the last good one (and is logged), so a DNS outage never takes backends away. Answers are local to
// this node: nothing here is replicated, and worker processes get the expanded config from the primary.

import { isIP } from 'node:net';
import type { Clock, TimerHandle } from '../clock.js';
import { inPlaceChanges } from '../config/in-place.js';
import { DEFAULTS, type BackendConfig, type PoolConfig, type ReplicatedConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { formatHostPort, parsedUrl } from '../net-address.js';
import { dnsLookup, type DnsAnswer, type DnsLookup, type DnsQuestion, type DnsTarget } from './dns-lookup.js';

/** What DNS discovery told this node about a pool, for status (the admin API, CLI and dashboard show it). */
export interface DiscoveryStatusView {
  readonly name: string;
  readonly type: string;
  /** DNS servers asked; null: the system's. */
  readonly servers: readonly string[] | null;
  /** Addresses in the last good answer. */
  readonly found: number;
  /** Failed lookups in a row (the last good answer is kept meanwhile); 0 when the last one answered. */
  readonly failures: number;
  readonly lastError: string | null;
}

export interface DnsDiscoveryDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told when an answer changed what a pool expands to (not on lookups that brought nothing new). */
  readonly onChange: () => void;
  /** Replaces the real lookup (tests). */
  readonly lookup?: DnsLookup;
}

interface Watch {
  readonly key: string;
  readonly question: DnsQuestion;
  /** The shortest interval of the pools asking. */
  intervalMs: number;
  /** The last good (non-empty) answer; null before one arrived. */
  answer: DnsAnswer | null;
  /** For a backend URL's name: its addresses, the one in use first (kept first while answers still name it). */
  chosen: readonly string[] | null;
  failures: number;
  lastError: string | null;
  timer: TimerHandle | undefined;
  stopped: boolean;
  /** Resolves once the first lookup ended, answered or not. */
  readonly first: Promise<void>;
  firstDone: () => void;
}

function questionKey(question: DnsQuestion): string {
  return `${question.type} ${question.name} @${question.servers?.join(',') ?? 'system'}`;
}

/** The host of a backend URL when it is a name (null for an IP literal). */
function hostName(url: string): string | null {
  const host = parsedUrl(url).hostname;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  return isIP(bare) === 0 ? bare : null;
}

function targetKey(target: DnsTarget): string {
  return `${target.address} ${target.port ?? ''} ${target.weight ?? ''}${target.backup === true ? ' backup' : ''}`;
}

function sameTargets(a: readonly DnsTarget[], b: readonly DnsTarget[]): boolean {
  if (a.length !== b.length) return false;
  const left = a.map(targetKey).sort();
  const right = b.map(targetKey).sort();
  return left.every((key, index) => key === right[index]);
}

/** The questions a pool needs answered: its discovery name, and the host names of its backend URLs. */
function poolQuestions(pool: PoolConfig): DnsQuestion[] {
  const discovery = pool.discovery ?? null;
  const servers = discovery?.servers ?? null;
  const questions: DnsQuestion[] = [];
  if (discovery !== null && discovery.name !== null) questions.push({ name: discovery.name, type: discovery.type, servers });
  for (const backend of pool.backends) {
    const name = hostName(backend.url);
    if (name !== null) questions.push({ name, type: 'host', servers });
  }
  return questions;
}

/** The DNS name an A/AAAA discovery found a backend by: what an https one is verified against (SRV names are not certificate names). */
export function discoveredServerName(pool: PoolConfig, backend: BackendConfig): string | null {
  const discovery = pool.discovery ?? null;
  if (backend.discovered !== true || discovery === null || discovery.type === 'SRV') return null;
  return discovery.name;
}

function poolInterval(pool: PoolConfig): number {
  return pool.discovery?.intervalMs ?? DEFAULTS.dnsIntervalMs;
}

/**
 * What one pool of the last config asked and expanded to. A pool that differs from it only in backends' weight, drain or
 * backup flags (inPlaceChanges) asks the same questions and expands alike, so an edit of one backend of a large pool
 * does not look at every backend URL again.
 */
interface PoolMemo {
  readonly pool: PoolConfig;
  readonly questions: readonly DnsQuestion[];
  /** The last expansion: from which pool, to what, at which generation of answers. */
  expanded: { readonly from: PoolConfig; readonly to: PoolConfig; readonly answers: number } | null;
}

export class DnsDiscovery {
  private readonly watches = new Map<string, Watch>();
  private readonly lookup: DnsLookup;
  private stopped = false;
  private memos = new Map<string, PoolMemo>();
  /** Bumped whenever what any pool expands to may have changed: an answer changed, a question was added or dropped. */
  private answers = 0;

  constructor(private readonly deps: DnsDiscoveryDeps) {
    this.lookup = deps.lookup ?? dnsLookup;
  }

  /** Asks every question `config` needs (the new ones now), and stops asking those it no longer needs. */
  update(config: ReplicatedConfig): void {
    if (this.stopped) return;
    const memos = new Map<string, PoolMemo>();
    let sameQuestions = true;
    for (const [name, pool] of Object.entries(config.pools)) {
      const memo = this.memos.get(name);
      if (memo !== undefined && (memo.pool === pool || inPlaceChanges(memo.pool, pool) !== null)) {
        memos.set(name, memo);
        continue;
      }
      sameQuestions = false;
      memos.set(name, { pool, questions: poolQuestions(pool), expanded: null });
    }
    if (memos.size !== this.memos.size) sameQuestions = false;
    this.memos = memos;
    // The same pools asking the same questions at the same intervals: every watch stays as it runs.
    if (sameQuestions) return;
    const wanted = new Map<string, { question: DnsQuestion; intervalMs: number }>();
    for (const { pool, questions } of memos.values()) {
      for (const question of questions) {
        const key = questionKey(question);
        const intervalMs = Math.min(poolInterval(pool), wanted.get(key)?.intervalMs ?? Infinity);
        wanted.set(key, { question, intervalMs });
      }
    }
    for (const [key, watch] of this.watches) {
      if (wanted.has(key)) continue;
      this.stopWatch(watch);
      this.watches.delete(key);
      this.answers++;
    }
    for (const [key, { question, intervalMs }] of wanted) {
      const existing = this.watches.get(key);
      if (existing !== undefined) {
        existing.intervalMs = intervalMs;
        continue;
      }
      let firstDone!: () => void;
      const first = new Promise<void>((resolve) => (firstDone = resolve));
      const watch: Watch = { key, question, intervalMs, answer: null, chosen: null, failures: 0, lastError: null, timer: undefined, stopped: false, first, firstDone };
      this.watches.set(key, watch);
      this.answers++;
      this.run(watch);
    }
  }

  /** Resolves when every question asked so far has had its first answer (or failure), or after `timeoutMs`. */
  async settled(timeoutMs: number): Promise<void> {
    const firsts = [...this.watches.values()].map((watch) => watch.first);
    if (firsts.length === 0) return;
    let timer: TimerHandle | undefined;
    const timeout = new Promise<void>((resolve) => (timer = this.deps.clock.setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(firsts), timeout]);
    if (timer !== undefined) this.deps.clock.clearTimeout(timer);
  }

  /**
   * `config` as this node serves it: each pool with discovery gets a backend per address DNS gave (id address:port,
   * weight from SRV, drained when discovery.dns.drain names it), and backends whose URL names a host get the address
   * their connections go to. A pool with nothing from DNS is returned as it is.
   */
  expand(config: ReplicatedConfig): ReplicatedConfig {
    const pools: Record<string, PoolConfig> = {};
    let changed = false;
    for (const [name, pool] of Object.entries(config.pools)) {
      const expanded = this.expandMemoized(name, pool);
      if (expanded !== pool) changed = true;
      Object.defineProperty(pools, name, { value: expanded, enumerable: true, writable: true, configurable: true });
    }
    return changed ? { routes: config.routes, pools } : config;
  }

  /** What DNS last said for a pool's discovery name; null for a pool without discovery. */
  status(pool: PoolConfig): DiscoveryStatusView | null {
    const discovery = pool.discovery ?? null;
    if (discovery === null || discovery.name === null) return null;
    const watch = this.watches.get(questionKey({ name: discovery.name, type: discovery.type, servers: discovery.servers }));
    return {
      name: discovery.name,
      type: discovery.type,
      servers: discovery.servers,
      found: watch?.answer?.targets.length ?? 0,
      failures: watch?.failures ?? 0,
      lastError: watch?.lastError ?? null,
    };
  }

  stop(): void {
    this.stopped = true;
    for (const watch of this.watches.values()) this.stopWatch(watch);
    this.watches.clear();
  }

  /**
   * expandPool, or what the pool expanded to last when neither the answers nor anything but backends' weight, drain or
   * backup flags changed since: the edited backends are put in (with the addresses their URL's name resolved to).
   */
  private expandMemoized(name: string, pool: PoolConfig): PoolConfig {
    const memo = this.memos.get(name);
    const last = memo?.expanded ?? null;
    if (memo === undefined || last === null || last.answers !== this.answers) {
      const to = this.expandPool(pool);
      if (memo !== undefined) memo.expanded = { from: pool, to, answers: this.answers };
      return to;
    }
    if (last.from === pool) return last.to;
    const changed = inPlaceChanges(last.from, pool);
    if (changed === null) {
      const to = this.expandPool(pool);
      memo.expanded = { from: pool, to, answers: this.answers };
      return to;
    }
    let to = pool;
    if (last.to !== last.from) {
      const backends = [...last.to.backends];
      for (const index of changed) {
        const addresses = backends[index]!.addresses;
        backends[index] = addresses === undefined ? pool.backends[index]! : { ...pool.backends[index]!, addresses };
      }
      to = { ...pool, backends };
    }
    memo.expanded = { from: pool, to, answers: this.answers };
    return to;
  }

  private expandPool(pool: PoolConfig): PoolConfig {
    const discovery = pool.discovery ?? null;
    const servers = discovery?.servers ?? null;
    let touched = false;
    const backends: BackendConfig[] = pool.backends.map((backend) => {
      const name = hostName(backend.url);
      if (name === null) return backend;
      const addresses = this.watches.get(questionKey({ name, type: 'host', servers }))?.chosen ?? null;
      if (addresses === null) return backend;
      touched = true;
      return { ...backend, addresses };
    });
    if (discovery !== null && discovery.name !== null) {
      const answer = this.watches.get(questionKey({ name: discovery.name, type: discovery.type, servers }))?.answer ?? null;
      const taken = new Set(backends.map((backend) => backend.id));
      const found: BackendConfig[] = [];
      for (const target of answer?.targets ?? []) {
        const port = target.port ?? discovery.port;
        const id = formatHostPort(target.address, port);
        // A backend listed in the config with the same id is the operator's: it wins.
        if (taken.has(id)) continue;
        taken.add(id);
        const url = parsedUrl(`${discovery.scheme}://${formatHostPort(target.address, port)}`).origin;
        found.push({ id, url, weight: target.weight ?? 1, drain: discovery.drain.includes(id), backup: target.backup === true, discovered: true });
      }
      found.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      if (found.length > 0) {
        touched = true;
        backends.push(...found);
      }
    }
    return touched ? { ...pool, backends } : pool;
  }

  private stopWatch(watch: Watch): void {
    watch.stopped = true;
    if (watch.timer !== undefined) this.deps.clock.clearTimeout(watch.timer);
    watch.timer = undefined;
    watch.firstDone();
  }

  /** One lookup and the next one scheduled; whatever goes wrong is logged, never left as an unhandled rejection. */
  private run(watch: Watch): void {
    this.ask(watch).catch((error: unknown) => {
      this.deps.logger.error('DNS discovery could not handle an answer', { name: watch.question.name, err: errorMessage(error) });
      watch.firstDone();
      if (watch.timer === undefined) this.schedule(watch, null);
    });
  }

  private async ask(watch: Watch): Promise<void> {
    watch.timer = undefined;
    let answer: DnsAnswer | null = null;
    let problem: string | null = null;
    try {
      answer = await this.lookup(watch.question);
      if (answer.targets.length === 0) problem = 'the answer named no address';
    } catch (error) {
      problem = errorMessage(error);
    }
    if (watch.stopped) return;
    if (problem !== null || answer === null) this.failed(watch, problem ?? 'no answer');
    else this.answered(watch, answer);
    watch.firstDone();
    this.schedule(watch, problem === null ? answer?.ttlMs ?? null : null);
  }

  private answered(watch: Watch, answer: DnsAnswer): void {
    const { question } = watch;
    if (watch.failures > 0) this.deps.logger.info('DNS lookup answered again', { name: question.name, type: question.type, after: watch.failures });
    watch.failures = 0;
    watch.lastError = null;
    const before = watch.answer;
    watch.answer = answer;
    const addresses = [...new Set(answer.targets.map((target) => target.address))];
    const inUse = watch.chosen?.[0];
    // The address connections use stays first while the answer still names it: a reordered answer moves nothing.
    const first = inUse !== undefined && addresses.includes(inUse) ? inUse : addresses[0]!;
    const chosen = [first, ...addresses.filter((address) => address !== first).sort()];
    const chosenChanged = watch.chosen === null || chosen.join(' ') !== watch.chosen.join(' ');
    watch.chosen = chosen;
    const targetsChanged = before === null || !sameTargets(before.targets, answer.targets);
    if (!targetsChanged && !chosenChanged) return;
    this.answers++;
    const was = new Set(before?.targets.map(targetKey) ?? []);
    const now = new Set(answer.targets.map(targetKey));
    this.deps.logger.info('DNS answer changed', {
      name: question.name,
      type: question.type,
      added: answer.targets.filter((target) => !was.has(targetKey(target))).map(describeTarget),
      removed: (before?.targets ?? []).filter((target) => !now.has(targetKey(target))).map(describeTarget),
    });
    this.deps.onChange();
  }

  private failed(watch: Watch, problem: string): void {
    const { question } = watch;
    watch.failures++;
    const fields = {
      name: question.name,
      type: question.type,
      servers: question.servers ?? 'system',
      err: problem,
      kept: watch.answer?.targets.map(describeTarget) ?? [],
      failures: watch.failures,
    };
    // Once per streak and whenever the reason changes; the rest at debug, so an outage does not flood the log.
    if (watch.failures === 1 || problem !== watch.lastError) this.deps.logger.warn('DNS lookup failed; keeping the last answer', fields);
    else if (this.deps.logger.enabled('debug')) this.deps.logger.debug('DNS lookup failed again', fields);
    watch.lastError = problem;
  }

  /** Next lookup: at the TTL, within [minimum, interval]; after failures, sooner (1 s, 2 s, 4 s, ... up to interval). */
  private schedule(watch: Watch, ttlMs: number | null): void {
    if (watch.stopped || this.stopped) return;
    const interval = watch.intervalMs;
    let delay = watch.failures > 0 ? Math.min(interval, DEFAULTS.dnsMinIntervalMs * 2 ** Math.min(watch.failures - 1, 20)) : Math.min(interval, ttlMs ?? interval);
    delay = Math.max(DEFAULTS.dnsMinIntervalMs, delay);
    watch.timer = this.deps.clock.setTimeout(() => this.run(watch), delay);
  }
}

function describeTarget(target: DnsTarget): string {
  return target.port === undefined ? target.address : formatHostPort(target.address, target.port);
}
