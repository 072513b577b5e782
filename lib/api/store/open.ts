// Opens the store a `--db` location names: a postgres:// (or postgresql://) URL for a fleet of
// replicas over one PostgreSQL, otherwise an SQLite file path (the embedded default).
import { apiMessages, failed } from '../../errors.ts';
import { isPostgresUrl, shownLocation } from './database-url.ts';
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Database } from './sql.ts';
import type { Store } from './types.ts';

export async function openDatabase(location: string): Promise<Database> {
  if (!isPostgresUrl(location)) return new SqliteDatabase(location);
  // Loaded only when asked for: the embedded default does not pay for the PostgreSQL client.
  const { PostgresDatabase } = await import('./postgres-db.ts');
  return new PostgresDatabase(location);
}

/** The store at `location`, its schema brought up to date; a clear error when it cannot be reached. */
export async function openStore(location: string): Promise<Store> {
  let db: Database | undefined;
  try {
    db = await openDatabase(location);
    return await SqlStore.open(db);
  } catch (error) {
    await db?.close().catch(() => {});
    // The driver's own words go in the detail: they name the host and user, never the password.
    throw failed(apiMessages.databaseUnavailable(shownLocation(location)), String(error));
  }
}
