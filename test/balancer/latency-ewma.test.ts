// The peak-EWMA estimate on a fake clock: initial value, peaks, time-weighted decay, staleness and failure penalties.

import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { LatencyEwma } from '../../src/balancer/latency-ewma.js';

const OPTIONS = { decayMs: 10_000, initialMs: 10, penaltyMs: 60_000 };

function setup(options = OPTIONS) {
  const clock = new FakeClock(1_000);
  return { clock, ewma: new LatencyEwma(clock, options) };
}

describe('LatencyEwma', () => {
  it('starts at initial, is never due for a probe before a sample, and the first sample replaces initial', () => {
    const { clock, ewma } = setup();
    expect(ewma.estimateMs()).toBe(10);
    clock.advance(60_000);
    expect(ewma.dueForProbe()).toBe(false);
    ewma.observe(2);
    expect(ewma.estimateMs()).toBe(2);
    expect(ewma.samples).toBe(1);
  });

  it('jumps to a slower answer at once (the peak)', () => {
    const { clock, ewma } = setup();
    ewma.observe(2);
    clock.advance(1);
    ewma.observe(80);
    expect(ewma.estimateMs()).toBe(80);
  });

  it('decays towards zero with time constant decay between samples', () => {
    const { clock, ewma } = setup();
    ewma.observe(50);
    clock.advance(5_000);
    expect(ewma.estimateMs()).toBeCloseTo(50 * Math.exp(-0.5), 10);
    clock.advance(5_000);
    expect(ewma.estimateMs()).toBeCloseTo(50 * Math.exp(-1), 10);
  });

  it('is not lowered by a faster answer: the decay brings it down, at the same pace however many answers come', () => {
    const sparse = setup();
    const dense = setup();
    sparse.ewma.observe(50);
    dense.ewma.observe(50);
    for (let i = 0; i < 100; i++) {
      sparse.clock.advance(100);
      sparse.ewma.observe(1);
    }
    for (let i = 0; i < 10_000; i++) {
      dense.clock.advance(1);
      dense.ewma.observe(1);
    }
    // 10 s later both are the 50 ms peak, discounted by e: what a backend that turned fast is charged.
    expect(sparse.ewma.estimateMs()).toBeCloseTo(50 * Math.exp(-1), 6);
    expect(dense.ewma.estimateMs()).toBeCloseTo(50 * Math.exp(-1), 6);
    // Once the decayed peak is below the answers, the answers are the estimate.
    for (let i = 0; i < 100; i++) {
      dense.clock.advance(1_000);
      dense.ewma.observe(1);
    }
    expect(dense.ewma.estimateMs()).toBe(1);
  });

  it('is due for a probe once its newest sample is decay old, and a sample then replaces the estimate', () => {
    const { clock, ewma } = setup();
    ewma.observe(50);
    clock.advance(9_999);
    expect(ewma.dueForProbe()).toBe(false);
    clock.advance(1);
    expect(ewma.dueForProbe()).toBe(true);
    expect(ewma.estimateMs()).toBeCloseTo(50 * Math.exp(-1), 10);
    ewma.observe(1);
    expect(ewma.estimateMs()).toBe(1);
    expect(ewma.dueForProbe()).toBe(false);
  });

  it('counts a failure as the penalty latency, weighted by the time since the previous sample, never lowering the estimate', () => {
    const { clock, ewma } = setup();
    ewma.observe(1);
    clock.advance(10);
    ewma.penalize();
    // 10 ms after the previous sample: 0.001 of the way to 60 s from the (barely decayed) 1 ms.
    const decayed = Math.exp(-10 / 10_000);
    expect(ewma.estimateMs()).toBeCloseTo(decayed + (60_000 - decayed) * 0.001, 10);
    const first = setup();
    first.ewma.penalize();
    expect(first.ewma.estimateMs()).toBe(60_000);
    first.clock.advance(1);
    first.ewma.observe(200_000);
    first.clock.advance(1);
    const peak = first.ewma.estimateMs();
    first.ewma.penalize();
    expect(first.ewma.estimateMs()).toBe(peak);
  });

  it('records outcomes: failures penalise, timed successes are samples, aborts and untimed successes say nothing', () => {
    const { clock, ewma } = setup();
    ewma.record('success', undefined);
    ewma.record('aborted', 5);
    expect(ewma.samples).toBe(0);
    ewma.record('success', 3);
    expect(ewma.estimateMs()).toBe(3);
    clock.advance(10_000);
    ewma.record('http-5xx', undefined);
    expect(ewma.estimateMs()).toBe(60_000);
    clock.advance(10_000);
    ewma.record('success', 2);
    clock.advance(10_000);
    ewma.record('gateway-failure', 7);
    expect(ewma.estimateMs()).toBe(60_000);
    expect(ewma.samples).toBe(4);
  });

  it('keeps what it measured across a reconfiguration, and takes a new initial while unmeasured', () => {
    const { clock, ewma } = setup();
    ewma.reconfigure({ ...OPTIONS, initialMs: 25 });
    expect(ewma.estimateMs()).toBe(25);
    ewma.observe(4);
    ewma.reconfigure({ ...OPTIONS, initialMs: 30, decayMs: 1_000 });
    expect(ewma.estimateMs()).toBe(4);
    clock.advance(1_000);
    expect(ewma.dueForProbe()).toBe(true);
  });

  it('treats a nonsensical duration as zero rather than poisoning the estimate', () => {
    const { clock, ewma } = setup();
    ewma.observe(Number.NaN);
    expect(ewma.estimateMs()).toBe(0);
    clock.advance(1);
    ewma.observe(-5);
    expect(ewma.estimateMs()).toBe(0);
  });
});
