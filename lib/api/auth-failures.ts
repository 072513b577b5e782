// Failed authentications counted per client address, so that guessing keys or tokens is slow: past
// `maxFailures` in a window, the client is answered 429 before its credentials are even looked at.
// The counts live in the store (store/auth-failures-store.ts): every replica sees the same ones.
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
}

export const defaultAuthFailureLimits: AuthFailureLimits = { maxFailures: 30, windowMs: 60_000 };

/** The key a client is counted by: its IPv4 address, or the /64 of its IPv6 one (one host usually holds a whole /64). */
export function clientKey(address: string): string {
  const plain = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (!isIPv6(plain)) return plain;
  const [head = '', tail = ''] = plain.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = plain.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
