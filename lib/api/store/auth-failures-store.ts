// Failed authentications counted in the database, so that every replica of the API sees the same
// counts and a restart forgets nothing. One row per client that failed in the current window; rows
// whose window is over are deleted as failures come in, so the table stays as small as the attack.
// Counters of different limits share the table, each under its own `scope` (a key prefix).
import { clientKey, defaultAuthFailureLimits, type AuthFailureLimits, type AuthFailures } from '../auth-failures.ts';
import type { Sql } from './sql.ts';

export class SqlAuthFailures implements AuthFailures {
  private readonly sql: Sql;
  private readonly limits: AuthFailureLimits;
  private readonly now: () => number;
  private readonly scope: string;
  private lastPrune = 0;

  constructor(
    sql: Sql,
    limits: AuthFailureLimits = defaultAuthFailureLimits,
    now: () => number = Date.now,
    scope = 'api',
  ) {
    this.sql = sql;
    this.limits = limits;
    this.now = now;
    this.scope = scope;
  }

  private key(client: string): string {
    return `${this.scope} ${clientKey(client)}`;
  }

  /** The start of the window still open now (ISO 8601). */
  private windowStart(): string {
    return new Date(this.now() - this.limits.windowMs).toISOString();
  }

  async limited(client: string): Promise<boolean> {
    const row = await this.sql.get<{ failures: number | string }>(
      'SELECT failures FROM auth_failures WHERE client = ? AND since > ?',
      [this.key(client), this.windowStart()],
    );
    return row !== undefined && Number(row.failures) >= this.limits.maxFailures;
  }

  async failed(client: string): Promise<void> {
    const [now, start] = [new Date(this.now()).toISOString(), this.windowStart()];
    // A window that is over starts again at 1.
    await this.sql.run(
      `INSERT INTO auth_failures (client, since, failures) VALUES (?, ?, 1)
       ON CONFLICT (client) DO UPDATE SET
         failures = CASE WHEN auth_failures.since > ? THEN auth_failures.failures + 1 ELSE 1 END,
         since = CASE WHEN auth_failures.since > ? THEN auth_failures.since ELSE excluded.since END`,
      [this.key(client), now, start, start],
    );
    if (this.now() - this.lastPrune >= this.limits.windowMs) {
      this.lastPrune = this.now();
      await this.sql.run('DELETE FROM auth_failures WHERE since <= ? AND client LIKE ?', [start, `${this.scope} %`]);
    }
  }
}
