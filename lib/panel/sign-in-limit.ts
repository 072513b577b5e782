// A brake on password guessing: an account from one address, an account from anywhere, or a client
// address, with too many failed sign-ins in a window is refused until the window ends. The counters stand behind the interface the API's
// authentication failures use (lib/api/auth-failures.ts), kept in the store's database by default so
// that every replica sees the same counts.
import { clientKey, type AuthFailures } from '../api/auth-failures.ts';
import { SqlAuthFailures } from '../api/store/auth-failures-store.ts';
import type { Sql } from '../api/store/sql.ts';

export interface SignInFailures {
  /**
   * Keyed by account name and client address: the brake on one address guessing one account. It is
   * the first to stop a guesser, and it stops only them: the customer, signing in from elsewhere, is
   * not locked out by someone else's wrong guesses.
   */
  readonly byAccountFromAddress: AuthFailures;
  /**
   * Keyed by account name alone: the brake on guessing one account from many addresses. Its limit is
   * above the address's, so a single address cannot lock an account for everyone.
   */
  readonly byName: AuthFailures;
  /** Keyed by client address (an IPv6 /64): one address may be many customers behind a NAT, hence a higher limit. */
  readonly byAddress: AuthFailures;
}

const WINDOW_MS = 10 * 60_000;

export function storeSignInFailures(sql: Sql): SignInFailures {
  return {
    byAccountFromAddress: new SqlAuthFailures(sql, { maxFailures: 10, windowMs: WINDOW_MS }, Date.now, 'panel-pair'),
    byName: new SqlAuthFailures(sql, { maxFailures: 200, windowMs: WINDOW_MS }, Date.now, 'panel-account'),
    byAddress: new SqlAuthFailures(sql, { maxFailures: 100, windowMs: WINDOW_MS }, Date.now, 'panel-address'),
  };
}

/** The name's key: never read as an address (an IPv6 address is counted by its /64). */
const accountKey = (name: string) => `account ${name}`;
const pairKey = (name: string, address: string) => `account ${name} from ${clientKey(address)}`;

/** Whether a sign-in to `account` from `address` is refused unread (too many failures lately). */
export async function signInLimited(limits: SignInFailures, account: string, address: string): Promise<boolean> {
  return (
    (await limits.byAccountFromAddress.limited(pairKey(account, address))) ||
    (await limits.byName.limited(accountKey(account))) ||
    (await limits.byAddress.limited(address))
  );
}

/** Counts a failed sign-in to `account` from `address` under every key. */
export async function signInFailed(limits: SignInFailures, account: string, address: string): Promise<void> {
  await limits.byAccountFromAddress.failed(pairKey(account, address));
  await limits.byName.failed(accountKey(account));
  await limits.byAddress.failed(address);
}
