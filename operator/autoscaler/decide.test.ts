import { describe, expect, it } from 'vitest';
import { DeploymentSpecSchema } from '../../crds/index.ts';
import {
  type Decision,
  decide,
  decodeState,
  encodeState,
  policyFor,
  pruneSamples,
  type Sample,
  type ScalingPolicy,
  type WindowState,
  windowAverage,
} from './decide.ts';

const SECOND = 1000;

function policy(overrides: Partial<ScalingPolicy> = {}): ScalingPolicy {
  return {
    minInstances: 0,
    maxInstances: 10,
    targetPerInstance: 4,
    stableWindowMs: 60 * SECOND,
    panicWindowMs: 6 * SECOND,
    panicThreshold: 2,
    scaleDownDelayMs: 60 * SECOND,
    scaleToZeroAfterMs: 300 * SECOND,
    ...overrides,
  };
}

/**
 * The autoscaler loop in miniature, on a fake clock: one sample per tick, the decision applied
 * to the instance count at once (as the API server would).
 */
class Sim {
  now = 1_700_000_000_000;
  samples: Sample[] = [];
  state: WindowState = {};
  current: number;
  readonly p: ScalingPolicy;
  readonly decisions: Decision[] = [];
  readonly counts: number[] = [];

  constructor(p: ScalingPolicy, current: number) {
    this.p = p;
    this.current = current;
  }

  /** One tick with `demand`; returns the decision. */
  tick(demand: number, tickMs = SECOND): Decision {
    this.now += tickMs;
    this.samples.push({ at: this.now, demand });
    this.samples = pruneSamples(this.samples, this.now, this.p.stableWindowMs);
    const d = decide({
      now: this.now,
      samples: this.samples,
      current: this.current,
      policy: this.p,
      state: this.state,
    });
    this.state = d.state;
    this.current = d.desired;
    this.decisions.push(d);
    this.counts.push(d.desired);
    return d;
  }

  /** `seconds` ticks of `demand(i)`. */
  run(seconds: number, demand: number | ((i: number) => number)): Decision {
    let last: Decision | undefined;
    for (let i = 0; i < seconds; i++) last = this.tick(typeof demand === 'number' ? demand : demand(i));
    return last as Decision;
  }

  /** Seconds (ticks) until the count first satisfies `pred`, running `demand` meanwhile. */
  until(pred: (n: number) => boolean, demand: number, limit = 10_000): number {
    for (let i = 1; i <= limit; i++) if (pred(this.tick(demand).desired)) return i;
    throw new Error(`not reached within ${limit} ticks`);
  }

  /** Number of changes of the instance count over the recorded decisions, from index `from`. */
  changes(from = 0): number {
    let n = 0;
    for (let i = Math.max(1, from); i < this.counts.length; i++)
      if (this.counts[i] !== this.counts[i - 1]) n++;
    return n;
  }
}

describe('policyFor', () => {
  it('applies the defaults, with the version maxConcurrency as the target', () => {
    const spec = DeploymentSpecSchema.parse({ model: 'm', version: 'v', hardware: 'cpu', maxInstances: 3 });
    expect(policyFor(spec, 8)).toEqual({
      minInstances: 0,
      maxInstances: 3,
      targetPerInstance: 8,
      stableWindowMs: 60_000,
      panicWindowMs: 6_000,
      panicThreshold: 2,
      scaleDownDelayMs: 60_000,
      scaleToZeroAfterMs: 300_000,
    });
    const own = DeploymentSpecSchema.parse({
      model: 'm',
      version: 'v',
      hardware: 'cpu',
      minInstances: 1,
      maxInstances: 3,
      scaling: { targetPerInstance: 2, stableWindowSeconds: 30, panicThresholdPercent: 150 },
    });
    expect(policyFor(own, 8)).toMatchObject({
      targetPerInstance: 2,
      stableWindowMs: 30_000,
      panicThreshold: 1.5,
    });
  });
});

describe('windowAverage', () => {
  it('averages the samples inside the window only', () => {
    const s = [
      { at: 1000, demand: 100 },
      { at: 5000, demand: 2 },
      { at: 6000, demand: 4 },
    ];
    expect(windowAverage(s, 6000, 2000)).toBe(3);
    expect(windowAverage(s, 6000, 10_000)).toBeCloseTo(106 / 3);
    expect(windowAverage([], 6000, 2000)).toBe(0);
  });
});

describe('decide', () => {
  it('activation: demand at zero instances wants one at once', () => {
    const sim = new Sim(policy(), 0);
    sim.run(30, 0);
    expect(sim.current).toBe(0);
    const d = sim.tick(1);
    expect(d.desired).toBe(1);
    expect(d.reason).toBe('ScaledFromZero');
    expect(d.message).toBe('0 → 1 instance: 1 prediction waiting with no instance');
  });

  it('a burst scales up within one tick, in panic mode', () => {
    const sim = new Sim(policy({ minInstances: 1 }), 1);
    sim.run(60, 2); // steady: 2 predictions, one instance of 4
    expect(sim.current).toBe(1);
    const d = sim.tick(40);
    // panic window: (5 × 2 + 40) / 6 = 8.3 ≥ 2 × 4 → panic, ceil(8.3 / 4) = 3
    expect(d.panicking).toBe(true);
    expect(d.reason).toBe('ScaledUp');
    expect(d.desired).toBe(3);
    expect(d.message).toBe('1 → 3 instances: demand 8.3 over the 6 s panic window, target 4 per instance');
    // Within the panic window the count reaches what the burst needs.
    sim.run(5, 40);
    expect(sim.current).toBe(10);
  });

  it('steady load holds its count', () => {
    const sim = new Sim(policy(), 0);
    sim.run(120, 12);
    const from = sim.counts.length;
    sim.run(600, 12);
    expect(sim.current).toBe(3);
    expect(sim.changes(from)).toBe(0);
    expect(sim.decisions.at(-1)?.reason).toBe('Steady');
  });

  it('a drop waits out the scale-down delay, then goes to the most wanted meanwhile', () => {
    const sim = new Sim(policy({ minInstances: 1 }), 1);
    sim.run(120, 20);
    expect(sim.current).toBe(5);
    // Demand falls to 4 (1 instance). The stable average takes the window to come down,
    // then the lower count must stay wanted for the 60 s delay.
    const t0 = sim.now;
    const ticks = sim.until((n) => n < 5, 4);
    const downAt = sim.now - t0;
    expect(downAt).toBeGreaterThanOrEqual(60 * SECOND);
    const d = sim.decisions.at(-1) as Decision;
    expect(d.reason).toBe('ScaledDown');
    expect(d.message).toMatch(/wanted for the 60 s scale-down delay/);
    // Never below what was wanted during the delay: the stable average was still falling.
    expect(d.desired).toBeGreaterThan(1);
    expect(ticks).toBeLessThan(200);
    // And in the end it settles at one.
    sim.run(300, 4);
    expect(sim.current).toBe(1);
  });

  it('a scale-down already counting restarts when the higher count is wanted again', () => {
    const sim = new Sim(
      policy({ minInstances: 1, stableWindowMs: 6 * SECOND, panicWindowMs: 6 * SECOND }),
      1,
    );
    sim.run(10, 12);
    expect(sim.current).toBe(3);
    sim.run(40, 4); // lower wanted for ~34 s
    expect(sim.current).toBe(3);
    expect(sim.state.lowerSinceMs).toBeDefined();
    sim.run(10, 12); // back up
    expect(sim.state.lowerSinceMs).toBeUndefined();
    const back = sim.now;
    sim.until((n) => n < 3, 4);
    // A full delay again, counted from when the lower count was wanted anew (after the
    // 6 s window has forgotten the 12s).
    expect(sim.now - back).toBeGreaterThanOrEqual(60 * SECOND);
    expect(sim.now - back).toBeLessThanOrEqual(67 * SECOND);
  });

  it('idle reaches zero only after the idle period', () => {
    const sim = new Sim(policy(), 0);
    sim.run(60, 8);
    expect(sim.current).toBe(2);
    const stopped = sim.now;
    const ticks = sim.until((n) => n === 0, 0);
    // The last demand was in the tick at `stopped`: zero comes 300 s after it, not before.
    expect(sim.now - stopped).toBe(300 * SECOND);
    expect(ticks).toBe(300);
    const d = sim.decisions.at(-1) as Decision;
    expect(d.reason).toBe('ScaledToZero');
    expect(d.message).toBe('1 → 0 instances: no predictions for 300 s (scaleToZeroAfterSeconds 300)');
    // One instance held until then.
    expect(sim.counts.at(-2)).toBe(1);
  });

  it('from more than one instance, going to zero also waits out the scale-down delay', () => {
    const p = policy({ scaleToZeroAfterMs: 0, scaleDownDelayMs: 30 * SECOND, stableWindowMs: 6 * SECOND });
    const sim = new Sim(p, 0);
    sim.run(10, 8);
    expect(sim.current).toBe(2);
    const from = sim.counts.length;
    const stopped = sim.now;
    sim.until((n) => n === 0, 0);
    // Idle long enough from the start (scaleToZeroAfter 0), but the two instances stay for
    // the 30 s delay, counted from when fewer were first wanted.
    expect(sim.now - stopped).toBeGreaterThan(30 * SECOND);
    const held = sim.counts.slice(from, from + 30);
    expect(held.every((n) => n === 2)).toBe(true);
    expect(sim.decisions.at(-1)?.reason).toBe('ScaledToZero');
  });

  it("the gateway's last activity also keeps the last instance", () => {
    const p = policy({ scaleToZeroAfterMs: 10 * SECOND });
    const now = 1_000_000;
    const base = {
      now,
      samples: [{ at: now, demand: 0 }],
      current: 1,
      policy: p,
      state: { activityMs: now - 60 * SECOND },
    };
    expect(decide(base).desired).toBe(0);
    expect(decide({ ...base, lastActivityMs: now - 5 * SECOND }).desired).toBe(1);
  });

  it('bounds hold: never above maxInstances, never below minInstances > 0', () => {
    const sim = new Sim(policy({ minInstances: 2, maxInstances: 4 }), 2);
    const d = sim.tick(1000);
    expect(d.desired).toBe(4);
    expect(d.message).toMatch(/capped at maxInstances 4/);
    sim.run(120, 1000);
    expect(Math.max(...sim.counts)).toBe(4);
    sim.run(2000, 0);
    expect(sim.current).toBe(2);
    expect(Math.min(...sim.counts)).toBe(2);
  });

  it('bounds apply at once when the spec changes', () => {
    const now = 1_000_000;
    const up = decide({ now, samples: [], current: 1, policy: policy({ minInstances: 3 }), state: {} });
    expect(up).toMatchObject({
      desired: 3,
      reason: 'ScaledUp',
      message: '1 → 3 instances: minInstances is 3',
    });
    const down = decide({
      now,
      samples: [{ at: now, demand: 100 }],
      current: 8,
      policy: policy({ maxInstances: 5 }),
      state: {},
    });
    expect(down).toMatchObject({
      desired: 5,
      reason: 'ScaledDown',
      message: '8 → 5 instances: maxInstances is 5',
    });
  });

  it('noisy demand does not flap', () => {
    // Demand jumps between 7 and 13 (2 to 4 instances' worth) every second.
    let seed = 42;
    const noise = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return 7 + (seed % 7);
    };
    const sim = new Sim(policy({ minInstances: 1 }), 1);
    sim.run(120, noise);
    const from = sim.counts.length;
    sim.run(1200, noise);
    expect(sim.changes(from)).toBe(0);
    expect(sim.current).toBe(3);
  });

  it('panic: scales on the panic window, never down while panicking, ends a stable window after', () => {
    const sim = new Sim(policy({ minInstances: 1 }), 1);
    sim.run(60, 0);
    sim.run(6, 40);
    expect(sim.current).toBe(10);
    expect(sim.decisions.at(-1)?.panicking).toBe(true);
    const panicLast = sim.state.panicLastMs as number;
    expect(panicLast).toBeDefined();
    // The burst is over: the panic holds the count until a stable window has passed since
    // the panic window last reached the threshold.
    while (sim.now + SECOND - panicLast < 60 * SECOND) {
      const d = sim.tick(0);
      expect(d.panicking).toBe(true);
      expect(d.desired).toBe(10);
    }
    const d = sim.tick(0);
    expect(sim.now - panicLast).toBe(60 * SECOND);
    expect(d.panicking).toBe(false);
    expect(sim.state.panicSinceMs).toBeUndefined();
    // Out of panic the ordinary rules apply: the delay, then down.
    sim.run(400, 0);
    expect(sim.current).toBe(1);
  });

  it('panic needs the threshold: demand just under it scales on the stable window', () => {
    const sim = new Sim(policy({ minInstances: 2 }), 2);
    sim.run(60, 4);
    // 15 < 2 × (2 × 4): no panic; the stable window rises slowly.
    const d = sim.tick(15);
    expect(d.panicking).toBe(false);
    expect(d.desired).toBe(2);
  });

  it('a panic that keeps being triggered keeps panicking', () => {
    const sim = new Sim(policy({ maxInstances: 3 }), 0);
    // Capped at 3 instances (capacity 12), 30 in the panic window stays over 2 × 12.
    sim.run(200, 30);
    expect(sim.decisions.at(-1)?.panicking).toBe(true);
    expect(sim.current).toBe(3);
  });
});

describe('the state annotation', () => {
  it('round-trips and ignores what it cannot read', () => {
    const s: WindowState = { lastScaleMs: 1, lowerSinceMs: 2, lowerMax: 3, activityMs: 4, panicMax: 5 };
    expect(decodeState(encodeState(s))).toEqual(s);
    expect(encodeState({ lowerMax: 3, lastScaleMs: 1 })).toBe('{"lastScaleMs":1,"lowerMax":3}');
    expect(decodeState('not json')).toEqual({});
    expect(decodeState('{"lowerSinceMs":"x","lowerMax":-1,"activityMs":7,"other":1}')).toEqual({
      activityMs: 7,
    });
  });

  it('a decision restored from the state keeps the scale-down delay it started', () => {
    const p = policy({ minInstances: 1, stableWindowMs: 6 * SECOND, panicWindowMs: 6 * SECOND });
    const sim = new Sim(p, 1);
    sim.run(10, 12);
    sim.run(40, 4);
    expect(sim.current).toBe(3);
    const saved = encodeState(sim.state);
    const lowerSince = sim.state.lowerSinceMs as number;
    expect(lowerSince).toBeDefined();
    // A new process: no samples, the state from the annotation.
    const restarted = new Sim(p, 3);
    restarted.now = sim.now;
    restarted.state = decodeState(saved);
    while (restarted.now + SECOND - lowerSince < 60 * SECOND) expect(restarted.tick(4).desired).toBe(3);
    const d = restarted.tick(4);
    expect(restarted.now - lowerSince).toBe(60 * SECOND);
    expect(d.reason).toBe('ScaledDown');
  });
});
