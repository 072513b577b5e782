// The one SQL interface the store is written against, so that its rules exist once whatever database
// stands behind it: the embedded SQLite file (sqlite-db.ts) or PostgreSQL. Statements use `?`
// placeholders (a driver may rewrite them: never put a literal `?` in statement text) and portable
// SQL: TEXT, INTEGER, BIGINT, `INSERT ... RETURNING`, `ON CONFLICT ... DO UPDATE`.
export type SqlValue = string | number | null;

export type Dialect = 'sqlite' | 'postgres';

export interface Sql {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  /** Answers how many rows the statement changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /** Several statements without parameters (schema migrations). */
  exec(sql: string): Promise<void>;
}

export interface Database extends Sql {
  /**
   * Runs `work` in one transaction that sees and changes the database alone; rolled back if it throws.
   * SQLite runs transactions one at a time; PostgreSQL runs them side by side (READ COMMITTED: take the
   * locks a rule needs, see sql-store.ts) and may run `work` again after a deadlock (postgres-db.ts), so
   * `work` must touch nothing but `tx`.
   */
  transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
