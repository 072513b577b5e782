// A brake on password guessing: an account name, or a client address, with too many failed sign-ins
// in a window is refused until the window ends. The counters stand behind the interface the API's
// authentication failures use (lib/api/auth-failures.ts): in this process's memory by default (each
// replica then counts alone, bounded in size); a fleet may pass counters kept in its database.
import { MemoryAuthFailures, type AuthFailures } from '../api/auth-failures.ts';

export interface SignInFailures {
  /** Keyed by account name: an account is guessed at from anywhere. */
  readonly byName: AuthFailures;
  /** Keyed by client address (an IPv6 /64): one address may be many customers behind a NAT, hence a higher limit. */
  readonly byAddress: AuthFailures;
}

const WINDOW_MS = 10 * 60_000;

export function memorySignInFailures(): SignInFailures {
  return {
    byName: new MemoryAuthFailures({ maxFailures: 10, windowMs: WINDOW_MS, maxClients: 10_000 }),
    byAddress: new MemoryAuthFailures({ maxFailures: 100, windowMs: WINDOW_MS, maxClients: 10_000 }),
  };
}

/** The name's key: never read as an address (MemoryAuthFailures folds IPv6 addresses into their /64). */
export const accountKey = (name: string) => `account ${name}`;
