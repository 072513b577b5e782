// Failed authentications counted per client address, so that guessing keys or tokens is slow: past
// `maxFailures` in a window, the client is answered 429 before its credentials are even looked at.
//
// Design note: `MemoryAuthFailures` keeps the counters in this process, in a table of bounded size
// (the oldest client is forgotten first), so an attacker spraying from many addresses costs a fixed
// amount of memory; with several replicas each counts alone (the limit is per replica). A store-backed
// implementation (one row per client and window) can stand behind the same interface.
import { isIPv6 } from 'node:net';

export interface AuthFailures {
  /** Whether `client` has failed too often lately; its next attempt is refused unread. */
  limited(client: string): Promise<boolean>;
  /** Counts one failed authentication of `client`. */
  failed(client: string): Promise<void>;
}

export interface AuthFailureLimits {
  readonly maxFailures: number;
  readonly windowMs: number;
  /** How many clients are remembered at most. */
  readonly maxClients: number;
}

export const defaultAuthFailureLimits: AuthFailureLimits = { maxFailures: 30, windowMs: 60_000, maxClients: 10_000 };

/** IPv6 clients are counted by their /64: one host usually holds a whole /64. */
export function clientKey(address: string): string {
  const plain = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (!isIPv6(plain)) return plain;
  const [head = '', tail = ''] = plain.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = plain.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class MemoryAuthFailures implements AuthFailures {
  private readonly limits: AuthFailureLimits;
  private readonly now: () => number;
  /** client -> failures in the window that started at `since`; insertion order is age order. */
  private readonly table = new Map<string, { since: number; count: number }>();

  constructor(limits: AuthFailureLimits = defaultAuthFailureLimits, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  private current(client: string): { since: number; count: number } | undefined {
    const entry = this.table.get(clientKey(client));
    return entry && this.now() - entry.since < this.limits.windowMs ? entry : undefined;
  }

  async limited(client: string): Promise<boolean> {
    return (this.current(client)?.count ?? 0) >= this.limits.maxFailures;
  }

  async failed(client: string): Promise<void> {
    const key = clientKey(client);
    const entry = this.current(client);
    this.table.delete(key); // re-inserted last: the newest
    this.table.set(key, entry ? { since: entry.since, count: entry.count + 1 } : { since: this.now(), count: 1 });
    while (this.table.size > this.limits.maxClients) this.table.delete(this.table.keys().next().value!);
  }
}
