// Opens the store a `--db` location names: a postgres:// (or postgresql://) URL for a fleet of
// replicas over one PostgreSQL, otherwise an SQLite file path (the embedded default).
import { apiMessages, failed } from '../../errors.ts';
import { redactUrl } from '../../redact.ts';
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Database } from './sql.ts';
import type { Store } from './types.ts';

/** Whether `location` names a PostgreSQL database rather than an SQLite file. */
export const isPostgresUrl = (location: string): boolean => /^postgres(ql)?:\/\//i.test(location);

export async function openDatabase(location: string): Promise<Database> {
  if (!isPostgresUrl(location)) return new SqliteDatabase(location);
  // Loaded only when asked for: the embedded default does not pay for the PostgreSQL client.
  const { PostgresDatabase } = await import('./postgres-db.ts');
  return new PostgresDatabase(location);
}

/** The location as it may be shown: a URL without its password or query values. */
export const shownLocation = (location: string): string => (isPostgresUrl(location) ? redactUrl(location) : location);

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
