// Concurrent compare-and-set writes (PUT /api/v1/config with If-Match) and reads through different processes while leaders are killed: the history must be linearizable.

/*
 * The register is the id of the single backend of pool `web`: every write puts a fresh, unique id, so
 * a config version names exactly one register value and `If-Match: "N"` is a compare-and-set whose
 * expected value is the id that version N carried (the client read it).
 *
 * Outcomes, as the checker (src/raft/sim/linearizability.ts) wants them:
 *   200          -> 'ok' at the response time
 *   412          -> 'fail': the state machine compared at apply time, so this is a definite answer
 *   503, client timeout, connection reset after the request was sent
 *                -> unknown (ret = Infinity): the proposal may have reached a leader and may commit
 *                   later, so the checker may place it anywhere after its call, or nowhere
 *   connection refused -> the request never reached a process: dropped from the history, as if never made
 * Reads: 200 -> a read with the value seen; anything else is dropped (a read cannot change state).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLinearizable, type HistoryOp } from '../../src/raft/sim/linearizability.js';
import { seededRandom } from '../../src/clock.js';
import type { TestBackend } from '../helpers/backend.js';
import { startSeededCluster, ProcessCluster, type ConfigView } from '../helpers/process-cluster.js';

const ids = ['n1', 'n2', 'n3'];
const CLIENTS = 4;
const OPS_PER_CLIENT = 60;
const LEADER_KILLS = 2;

function body(tag: string, url: string): unknown {
  return { routes: [], pools: { web: { backends: [{ url, id: tag }] } } };
}

function tagOf(view: ConfigView): string {
  return view.pools['web']!.backends[0]!.id;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

describe('linearizable compare-and-set through every node while leaders die', () => {
  let cluster: ProcessCluster;
  let backend: TestBackend;

  beforeAll(async () => {
    ({ cluster, backend } = await startSeededCluster(ids, 'web', 't0'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await backend?.close();
  });

  it('gives a history the Wing & Gong checker accepts', async () => {
    const random = seededRandom(0x5eed);
    const epoch = Date.now();
    const now = (): number => Date.now() - epoch;
    const initial = tagOf(await cluster.config(await cluster.waitForLeader(ids)));
    const history: HistoryOp[] = [];
    const counts = { ok: 0, fail: 0, unknown: 0, refused: 0, reads: 0, readErrors: 0 };
    let killerDone = false;

    const pickNode = (): string => {
      const alive = cluster.serving().map((node) => node.id);
      return alive[Math.floor(random.next() * alive.length)] ?? 'n1';
    };

    const client = async (clientId: number): Promise<void> => {
      for (let seq = 0; seq < OPS_PER_CLIENT && !killerDone; seq++) {
        let view: ConfigView;
        const readCall = now();
        try {
          view = await cluster.config(pickNode(), 6_000);
        } catch {
          counts.readErrors++;
          continue;
        }
        counts.reads++;
        const expected = tagOf(view);
        history.push({ client: clientId, op: { kind: 'read' }, call: readCall, ret: now(), output: expected });

        const value = `c${clientId}s${seq}`;
        const via = pickNode();
        const call = now();
        try {
          const res = await cluster.api(via, 'PUT', '/api/v1/config', {
            body: body(value, backend.url),
            headers: { 'if-match': `"${view.version}"` },
            timeoutMs: 8_000,
          });
          const ret = now();
          if (res.status === 200 || res.status === 412) {
            const output = res.status === 200 ? 'ok' : 'fail';
            counts[output]++;
            history.push({ client: clientId, op: { kind: 'cas', expect: expected, value }, call, ret, output });
          } else if (res.status === 503) {
            counts.unknown++;
            history.push({ client: clientId, op: { kind: 'cas', expect: expected, value }, call, ret: Infinity });
          } else {
            throw new Error(`PUT through ${via} answered ${res.status}: ${res.body}`);
          }
        } catch (error) {
          if (errorCode(error) === 'ECONNREFUSED') {
            counts.refused++;
            continue;
          }
          if (error instanceof Error && error.message.startsWith('PUT through')) throw error;
          counts.unknown++;
          history.push({ client: clientId, op: { kind: 'cas', expect: expected, value }, call, ret: Infinity });
        }
      }
    };

    const killer = async (): Promise<string[]> => {
      const killed: string[] = [];
      try {
        for (let round = 0; round < LEADER_KILLS; round++) {
          const leader = await cluster.waitForLeader(ids);
          await cluster.kill(leader);
          killed.push(leader);
          await cluster.waitForLeader(ids.filter((id) => id !== leader));
          // Let the clients work against the two survivors for a while before the old leader returns.
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          await cluster.start(leader);
          await cluster.waitForLeader(ids);
        }
      } finally {
        killerDone = true;
      }
      return killed;
    };

    const [killed] = await Promise.all([killer(), ...Array.from({ length: CLIENTS }, (_, i) => client(i))]);
    const result = checkLinearizable(history, initial);
    console.log(
      `[linearizability] ${history.length} ops (${counts.ok} cas ok, ${counts.fail} cas 412, ${counts.unknown} cas unknown, ${counts.refused} refused, ` +
        `${counts.reads} reads, ${counts.readErrors} failed reads), leaders killed: ${(killed as string[]).join(', ')}; ` +
        `checker explored ${result.explored} states: ${result.ok ? 'linearizable' : 'NOT linearizable'}`,
    );
    expect(result.exhausted ?? false).toBe(false);
    expect(result.ok).toBe(true);
    expect(counts.ok).toBeGreaterThan(5);
    expect((killed as string[]).length).toBe(LEADER_KILLS);

    // The last acknowledged state is what every node serves afterwards.
    const final = await cluster.waitForVersion(ids, 1);
    expect(new Set(final.map(tagOf)).size).toBe(1);
  });

  it('the checker used above rejects a history with a lost acknowledged write', () => {
    // Sanity: the same encoding catches a stale read after an acknowledged CAS.
    const history: HistoryOp[] = [
      { client: 0, op: { kind: 'cas', expect: 't0', value: 'a' }, call: 0, ret: 10, output: 'ok' },
      { client: 1, op: { kind: 'read' }, call: 20, ret: 30, output: 't0' },
    ];
    expect(checkLinearizable(history, 't0').ok).toBe(false);
  });
});
