// A brake on password guessing: an account name, or a client address, with too many failed sign-ins
// in a window is refused until the window ends. The counters stand behind the interface the API's
// authentication failures use (lib/api/auth-failures.ts), kept in the store's database by default so
// that every replica sees the same counts.
import type { AuthFailures } from '../api/auth-failures.ts';
import { SqlAuthFailures } from '../api/store/auth-failures-store.ts';
import type { Sql } from '../api/store/sql.ts';

export interface SignInFailures {
  /** Keyed by account name: an account is guessed at from anywhere. */
  readonly byName: AuthFailures;
  /** Keyed by client address (an IPv6 /64): one address may be many customers behind a NAT, hence a higher limit. */
  readonly byAddress: AuthFailures;
}

const WINDOW_MS = 10 * 60_000;

export function storeSignInFailures(sql: Sql): SignInFailures {
  return {
    byName: new SqlAuthFailures(sql, { maxFailures: 10, windowMs: WINDOW_MS }, Date.now, 'panel-account'),
    byAddress: new SqlAuthFailures(sql, { maxFailures: 100, windowMs: WINDOW_MS }, Date.now, 'panel-address'),
  };
}

/** The name's key: never read as an address (an IPv6 address is counted by its /64). */
export const accountKey = (name: string) => `account ${name}`;
