// Opens the store a `--db` location names: an SQLite file path (the embedded default). Job bodies are
// sealed with the key in `keyFile`, by default a file beside the database (created 0600).
import { migrate } from './migrations.ts';
import { SecretBox } from './secret-box.ts';
import type { Database } from './sql.ts';
import { SqliteDatabase } from './sqlite-db.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './types.ts';

export interface StoreOptions {
  readonly keyFile?: string;
}

export async function openStore(location: string, options: StoreOptions = {}): Promise<Store> {
  const box = location === ':memory:' && !options.keyFile ? SecretBox.ephemeral() : SecretBox.fromKeyFile(options.keyFile ?? `${location}.key`);
  return SqlStore.open(new SqliteDatabase(location), box);
}

/** The database itself, its schema up to date: for the stores of other concerns (customers, credentials). */
export async function openDatabase(location: string): Promise<Database> {
  const db = new SqliteDatabase(location);
  await migrate(db);
  return db;
}
