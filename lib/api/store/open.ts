// Opens the store a `--db` location names: an SQLite file path (the embedded default).
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './types.ts';

export async function openStore(location: string): Promise<Store> {
  return SqlStore.open(new SqliteDatabase(location));
}
