// Opens the store a `--db` location names: an SQLite file path (the embedded default).
import { migrate } from './migrations.ts';
import type { Database } from './sql.ts';
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './types.ts';

export async function openStore(location: string): Promise<Store> {
  return SqlStore.open(new SqliteDatabase(location));
}

/** The database itself, its schema up to date: for the stores of other concerns (customers, credentials). */
export async function openDatabase(location: string): Promise<Database> {
  const db = new SqliteDatabase(location);
  await migrate(db);
  return db;
}
