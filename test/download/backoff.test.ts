import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../lib/download/backoff.ts';

describe('backoffDelay', () => {
  const backoff = { initialDelay: 1000, maxDelay: 60_000 };

  it('draws between half and all of a ceiling that doubles after each failure', () => {
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, backoff, () => 0))).toEqual([500, 1000, 2000, 4000]);
    expect([1, 2, 3, 4].map((n) => backoffDelay(n, backoff, () => 0.999999))).toEqual([1000, 2000, 4000, 8000]);
    expect(backoffDelay(2, backoff, () => 0.5)).toBe(1500);
  });

  it('never exceeds the maximum delay, however many failures', () => {
    expect(backoffDelay(40, backoff, () => 0.999999)).toBe(60_000);
    expect(backoffDelay(40, backoff, () => 0)).toBe(30_000);
  });
});
