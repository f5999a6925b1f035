// The bench report's idle-connections table: the reading once the connections have been held with no traffic, beside
// the one 2 s after they opened, and results from before that reading existed printed as they were.

import { describe, expect, it } from 'vitest';
import { renderMarkdown } from '../../bench/lib/format.js';

const MB = 2 ** 20;
const run = {
  date: '2026-12-02T14:00:00Z',
  mode: 'full',
  loadTool: 'wrk',
  versions: { node: 'v20.20.2' },
  machine: { cpuCount: 2, cpuModel: 'test', totalMemoryBytes: 16 * 1024 * MB, os: 'Linux', loadAverageBefore: [0, 0, 0], loadAverageAfter: [0, 0, 0] },
};

function reading(withMb: number, settledMb: number, heldSettled = 10_000) {
  return { instance: 1, held: 10_000, heldSettled, rssBeforeBytes: 100 * MB, rssWithBytes: withMb * MB, rssSettledBytes: settledMb * MB, bytesPerConnection: 6_000 };
}

function idleTable(results: object): string[] {
  return renderMarkdown(results)
    .split('\n')
    .filter((line: string) => line.startsWith('|'));
}

describe('bench report, idle connections', () => {
  it('gives the settled RSS of each process beside the reading 2 s after the connections opened', () => {
    const idle = {
      settings: { count: 10_000, settleSeconds: 60 },
      order: ['balancer'],
      summary: { balancer: { label: 'balancer', ...reading(171, 142), readings: [reading(170, 141), reading(172, 143)] } },
    };
    const [header, , row] = idleTable({ ...run, idleConnections: idle });
    expect(header).toBe('| target | connections held | RSS before MB | RSS with connections MB | RSS after 60 s MB | KB per connection |');
    expect(row).toBe('| balancer | 10,000 | 100 | 171 (170, 172) | 142 (141, 143) | 5.9 |');
  });

  it('says when connections were lost before the settled reading, which then is not one of all of them', () => {
    const idle = {
      settings: { count: 10_000, settleSeconds: 60 },
      order: ['naive'],
      summary: { naive: { label: 'naive', ...reading(150, 120, 4_000), readings: [reading(150, 120, 4_000)] } },
    };
    expect(idleTable({ ...run, idleConnections: idle })[2]).toBe('| naive | 10,000 | 100 | 150 | 120, 4,000 still held | 5.9 |');
  });

  it('prints results from before the settled reading with their four readings only', () => {
    const old = { ...reading(170, 0) } as Record<string, unknown>;
    delete old['heldSettled'];
    delete old['rssSettledBytes'];
    const idle = { settings: { count: 10_000 }, order: ['balancer'], summary: { balancer: { label: 'balancer', ...old, readings: [old] } } };
    const [header, , row] = idleTable({ ...run, idleConnections: idle });
    expect(header).toBe('| target | connections held | RSS before MB | RSS with connections MB | KB per connection |');
    expect(row).toBe('| balancer | 10,000 | 100 | 170 | 5.9 |');
  });
});
