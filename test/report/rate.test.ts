import { describe, expect, it } from 'vitest';
import { RateMeter } from '../../lib/report/rate.ts';
import { duration } from '../../lib/report/log.ts';

describe('RateMeter', () => {
  it('gives the rate of the last seconds, not the average since the start', () => {
    const meter = new RateMeter();
    meter.sample(0, 0);
    // 10 s at 1 MB/s, then 10 s at 4 MB/s.
    let done = 0;
    for (let t = 200; t <= 10_000; t += 200) meter.sample((done += 200_000), t);
    expect(meter.sample(done, 10_000)).toBe(1_000_000);
    let rate = 0;
    for (let t = 10_200; t <= 20_000; t += 200) rate = meter.sample((done += 800_000), t);
    expect(rate).toBeGreaterThanOrEqual(3_900_000);
    expect(rate).toBeLessThanOrEqual(4_000_000);
  });

  it('falls to zero while nothing moves, and starts afresh when the bytes start over', () => {
    const meter = new RateMeter();
    meter.sample(0, 0);
    meter.sample(5_000_000, 5000);
    expect(meter.sample(5_000_000, 16_000)).toBe(0);
    expect(meter.sample(0, 16_100)).toBe(0);
    expect(meter.sample(1_000_000, 17_100)).toBe(1_000_000);
  });
});

describe('duration', () => {
  it('reads as seconds, minutes or hours', () => {
    expect([0, 59, 75, 3599, 3725].map(duration)).toEqual(['0s', '59s', '1m15s', '59m59s', '1h02m']);
  });
});
