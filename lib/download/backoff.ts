// Exponential backoff with jitter: the delay before retry number `failures` is drawn between half
// and all of min(initial * 2^(failures-1), max), so that agents of many servers that lost the same
// image server at the same moment do not all come back in step.

export interface Backoff {
  /** Ceiling of the first delay, doubled after each failure up to `maxDelay`, in ms. */
  readonly initialDelay: number;
  readonly maxDelay: number;
}

/** The delay before the next attempt after `failures` failures in a row (>= 1), in ms. */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.initialDelay * 2 ** (failures - 1), backoff.maxDelay);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
