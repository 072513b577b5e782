// The embedded database: one SQLite file through node:sqlite. node:sqlite is synchronous and has one
// connection, so operations are queued: a transaction's awaits must not let another request's
// statements run inside it. A database another process holds locked is waited for asynchronously
// (short retries with backoff), never in a synchronous busy wait that would stall the event loop.
// The file and its WAL/SHM companions hold deployments' state and sealed job bodies: mode 0600.
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import type { Database, Sql, SqlValue } from './sql.ts';

/** How long a statement waits for a lock another connection holds, in all. */
const BUSY_WAIT_MS = 5000;
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

const isBusy = (error: unknown) => {
  const code = (error as { errcode?: number }).errcode;
  return code !== undefined && ((code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED);
};

/** Runs `work`, retrying it after a growing pause while the database is locked by someone else. */
async function whenUnlocked<T>(work: () => T): Promise<T> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
    try {
      return work();
    } catch (error) {
      if (!isBusy(error) || Date.now() + delay > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Creates the database file 0600 before SQLite does (its WAL and SHM files take the file's mode). */
function privateFiles(path: string): void {
  if (path === ':memory:' || path === '') return;
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
  }
}

export class SqliteDatabase implements Database {
  readonly dialect = 'sqlite' as const;
  private readonly db: DatabaseSync;
  private queue: Promise<unknown> = Promise.resolve();

  /** `path` is a file, or ':memory:'. */
  constructor(path: string) {
    privateFiles(path);
    this.db = new DatabaseSync(path);
    // busy_timeout 0: a lock is waited for by whenUnlocked; secure_delete: pruned secrets are overwritten;
    // synchronous NORMAL in WAL mode: no fsync per commit (a power loss may lose the last commits, never
    // corrupt the file); with an fsync per progress event the API managed ~200 events/s on this disk.
    this.db.exec(
      'PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 0; PRAGMA secure_delete = ON; PRAGMA synchronous = NORMAL;',
    );
    if (path !== ':memory:' && path !== '') this.db.exec('PRAGMA journal_mode = WAL;');
  }

  /** Runs `work` after everything queued before it. */
  private serial<T>(work: () => Promise<T> | T): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private readonly direct: Sql = {
    dialect: 'sqlite',
    all: <T>(sql: string, params: readonly SqlValue[] = []) =>
      whenUnlocked(() => this.db.prepare(sql).all(...params) as T[]),
    get: <T>(sql: string, params: readonly SqlValue[] = []) =>
      whenUnlocked(() => this.db.prepare(sql).get(...params) as T | undefined),
    run: (sql: string, params: readonly SqlValue[] = []) =>
      whenUnlocked(() => Number(this.db.prepare(sql).run(...params).changes)),
    exec: (sql: string) => whenUnlocked(() => this.db.exec(sql)),
  };

  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.serial(() => this.direct.all<T>(sql, params));
  }

  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.serial(() => this.direct.get<T>(sql, params));
  }

  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.serial(() => this.direct.run(sql, params));
  }

  exec(sql: string): Promise<void> {
    return this.serial(() => this.direct.exec(sql));
  }

  transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      await whenUnlocked(() => this.db.exec('BEGIN IMMEDIATE'));
      try {
        const result = await work(this.direct);
        await whenUnlocked(() => this.db.exec('COMMIT'));
        return result;
      } catch (error) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    await this.serial(() => this.db.close());
  }
}
