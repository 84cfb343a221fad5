import { describe, expect, it } from 'vitest';
import { StateClock } from './state-clock.ts';

describe('StateClock', () => {
  it('adds up time per state, and the states add up to the elapsed time', () => {
    let t = 0;
    const c = new StateClock('setup', ['setup', 'idle', 'busy', 'down'] as const, () => t);
    t = 1500;
    c.enter('idle');
    t = 1700;
    c.enter('busy');
    c.enter('busy');
    t = 3700;
    c.enter('idle');
    t = 4000;
    const s = c.seconds();
    expect(s).toEqual({ setup: 1.5, idle: 0.5, busy: 2, down: 0 });
    expect(s.setup + s.idle + s.busy + s.down).toBe(c.elapsed());
    expect(c.state).toBe('idle');
  });
});
