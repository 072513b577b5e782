// Failed authentications counted in the database (auth-failures.ts's contract), so that every replica
// behind a load balancer sees the same count: with counters in each process's memory, a client spread
// over N replicas would get N times the attempts. One row per client and window (migration 41); a
// failure is one atomic upsert, so replicas counting at once lose no failure; rows whose window is
// over are deleted as failures come, so a client spraying from many addresses fills nothing for long.
import { clientKey, defaultAuthFailureLimits, type AuthFailureLimits, type AuthFailures } from '../auth-failures.ts';
import type { Sql } from './sql.ts';

export class StoreAuthFailures implements AuthFailures {
  private readonly sql: Sql;
  private readonly limits: AuthFailureLimits;
  private readonly now: () => number;

  constructor(sql: Sql, limits: AuthFailureLimits = defaultAuthFailureLimits, now: () => number = Date.now) {
    this.sql = sql;
    this.limits = limits;
    this.now = now;
  }

  async limited(client: string): Promise<boolean> {
    const row = await this.sql.get<{ failures: number }>('SELECT failures FROM auth_failures WHERE client = ? AND since_ms > ?', [
      clientKey(client),
      this.now() - this.limits.windowMs,
    ]);
    return (row?.failures ?? 0) >= this.limits.maxFailures;
  }

  async failed(client: string): Promise<void> {
    const now = this.now();
    const windowStart = now - this.limits.windowMs;
    // A window still open counts one more; one that is over starts again at 1.
    await this.sql.run(
      `INSERT INTO auth_failures (client, since_ms, failures) VALUES (?, ?, 1)
       ON CONFLICT (client) DO UPDATE SET
         failures = CASE WHEN auth_failures.since_ms > ? THEN auth_failures.failures + 1 ELSE 1 END,
         since_ms = CASE WHEN auth_failures.since_ms > ? THEN auth_failures.since_ms ELSE excluded.since_ms END`,
      [clientKey(client), now, windowStart, windowStart],
    );
    await this.sql.run('DELETE FROM auth_failures WHERE since_ms <= ?', [windowStart]);
  }
}
