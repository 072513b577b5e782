// PostgreSQL behind the store's SQL interface (sql.ts): what lets several `byoi serve` replicas share
// one database. A pool of connections (node-postgres); a transaction holds one pooled connection from
// BEGIN to COMMIT.
//
// Transactions run at READ COMMITTED, PostgreSQL's default, each statement seeing what was committed
// before it. The store's rules hold across replicas by what the schema and a few locks guarantee
// (sql-store.ts): one doing deployment per server by a unique index create's insert yields to; create
// and erase on one server in turn by the server row's lock; one deployment's events in turn by its
// row's lock; the watchdog's and netboot's updates guarded in their WHERE. A deadlock's victim (a
// DELETE meeting its agent's last event) or a serialization failure is run again.
//
// Not SERIALIZABLE: its predicate locks are index pages, so agents of neighbouring servers abort one
// another (measured: 72 of 3,000 events failed after 10 attempts, 300 agents over 3 replicas).
//
// The password is never in our hands as text to log: it comes from the connection string (config file),
// PGPASSWORD, or a password file (PGPASSFILE, else ~/.pgpass, libpq's format), looked up only when the
// server asks for one.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import pgPass from 'pgpass';
import { numberPlaceholders } from './placeholders.ts';
import type { Database, Sql, SqlValue } from './sql.ts';

/** SQLSTATEs after which the whole transaction may simply be run again. */
const RETRYABLE = new Set(['40001' /* serialization_failure */, '40P01' /* deadlock_detected */]);
const MAX_ATTEMPTS = 10;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** int8 (ids, count(*)) as a number when it is one exactly, else the text. */
function parseInt8(text: string): number | string {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : text;
}

/** numeric as a number when a double holds it exactly enough to print it back (15 significant digits), else the text. */
function parseNumeric(text: string): number | string {
  const digits = text
    .replace(/[^0-9]/g, '')
    .replace(/^0+/, '')
    .replace(/0+$/, '');
  const value = Number(text);
  return Number.isFinite(value) && digits.length <= 15 ? value : text;
}

const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID) return parseInt8;
    if (oid === NUMERIC_OID) return parseNumeric;
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

/** The password PGPASSWORD or the password file gives for these connection settings. */
function passwordFor(settings: {
  host?: string;
  port?: number;
  database?: string;
  user?: string;
}): Promise<string | undefined> {
  if (process.env.PGPASSWORD !== undefined) return Promise.resolve(process.env.PGPASSWORD);
  return new Promise((resolve) => pgPass(settings, resolve));
}

export interface PostgresOptions {
  /** Connections this process keeps at most. */
  readonly poolSize?: number;
  /** A statement still running after this is cancelled by the server. */
  readonly statementTimeoutMs?: number;
}

export class PostgresDatabase implements Database {
  readonly dialect = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly pooled: Sql;

  /** `url`: postgres://user@host:port/database, `?host=/run/postgresql` for a Unix socket. */
  constructor(url: string, options: PostgresOptions = {}) {
    const statementTimeout = options.statementTimeoutMs ?? 30_000;
    // Parsed here rather than handed over as connectionString: node-postgres would let the URL's empty
    // password replace the function below.
    const settings = parseIntoClientConfig(url);
    const pool = new pg.Pool({
      ...settings,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      statement_timeout: statementTimeout,
      // A transaction left open by a crashed request must not hold its locks for ever.
      idle_in_transaction_session_timeout: statementTimeout,
      application_name: 'byoi serve',
      types,
      // Asked for only when the server wants a password and the connection string carries none.
      password:
        settings.password ||
        (((asked: Parameters<typeof passwordFor>[0]) => passwordFor(asked)) as unknown as () => Promise<string>),
    });
    // An idle connection the server dropped (restart, failover) is discarded by the pool; the next
    // query opens a new one. Without a listener the 'error' event would end the process.
    pool.on('error', () => {});
    this.pool = pool;
    this.pooled = this.over(pool);
  }

  /** The statements of one connection, or of the pool (each on whichever connection is free). */
  private over(client: pg.Pool | pg.PoolClient): Sql {
    const query = async (sql: string, params: readonly SqlValue[] = []) => {
      const { text, count } = numberPlaceholders(sql);
      if (count !== params.length) throw new Error(`${count} placeholders for ${params.length} parameters in: ${sql}`);
      return client.query(text, params as SqlValue[]);
    };
    return {
      dialect: 'postgres',
      all: async <T>(sql: string, params?: readonly SqlValue[]) => (await query(sql, params)).rows as T[],
      get: async <T>(sql: string, params?: readonly SqlValue[]) => (await query(sql, params)).rows[0] as T | undefined,
      run: async (sql: string, params?: readonly SqlValue[]) => (await query(sql, params)).rowCount ?? 0,
      // Simple query protocol: several statements, no parameters.
      exec: async (sql: string) => {
        await client.query(sql);
      },
    };
  }

  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.pooled.all<T>(sql, params);
  }

  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.pooled.get<T>(sql, params);
  }

  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.pooled.run(sql, params);
  }

  exec(sql: string): Promise<void> {
    return this.pooled.exec(sql);
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await work(this.over(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true; // the connection is gone: the pool must not hand it out again
        }
        if (attempt >= MAX_ATTEMPTS || !RETRYABLE.has((error as { code?: string }).code ?? '')) throw error;
      } finally {
        client.release(broken);
      }
      // The transactions that collided back off by different amounts, so they do not collide again.
      await sleep(attempt * 10 + Math.random() * 20 * attempt);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
