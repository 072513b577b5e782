// Opens the database a `--db` location names: a postgres:// (or postgresql://) URL for a fleet of
// replicas over one PostgreSQL, otherwise an SQLite file path (the embedded default). Job bodies are
// sealed with the key in `keyFile`: for SQLite by default a file beside the database (created 0600);
// for PostgreSQL a file that must exist already, the same on every replica.
import { existsSync } from 'node:fs';
import { databaseUnavailable, sharedKeyNeeded } from '../../errors.ts';
import { isPostgresUrl, shownLocation } from './database-url.ts';
import { migrate } from './migrations.ts';
import { SecretBox } from './secret-box.ts';
import type { Database } from './sql.ts';
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './types.ts';

export interface StoreOptions {
  readonly keyFile?: string;
}

/** Connects, then runs `use` on the database; closes it and explains when either fails. */
async function connected<T>(location: string, use: (db: Database) => Promise<T>): Promise<T> {
  let db: Database | undefined;
  try {
    if (isPostgresUrl(location)) {
      // Loaded only when asked for: the embedded default does not pay for the PostgreSQL client.
      const { PostgresDatabase } = await import('./postgres-db.ts');
      db = new PostgresDatabase(location);
    } else db = new SqliteDatabase(location);
    return await use(db);
  } catch (error) {
    await db?.close().catch(() => {});
    // The driver's own words go in the detail: they name the host and user, never the password.
    throw databaseUnavailable(shownLocation(location), {
      detail: String(error),
      cause: error,
    });
  }
}

/** The key that seals job bodies and application secrets in the database at `location`. */
export function secretBoxFor(location: string, keyFile: string | undefined): SecretBox {
  if (isPostgresUrl(location)) {
    // A key made up by one replica would leave what it seals unreadable to the others.
    if (keyFile === undefined || !existsSync(keyFile)) throw sharedKeyNeeded(keyFile);
    return SecretBox.fromKeyFile(keyFile);
  }
  return location === ':memory:' && !keyFile
    ? SecretBox.ephemeral()
    : SecretBox.fromKeyFile(keyFile ?? `${location}.key`);
}

/** The store at `location`, its schema brought up to date; a clear error when it cannot be reached. */
export async function openStore(location: string, options: StoreOptions = {}): Promise<Store> {
  const box = secretBoxFor(location, options.keyFile);
  return connected(location, (db) => SqlStore.open(db, box));
}

/** The database itself, its schema up to date: for the stores of other concerns (customers, credentials). */
export async function openDatabase(location: string): Promise<Database> {
  return connected(location, async (db) => {
    await migrate(db);
    return db;
  });
}
