// Opens the store a `--db` location names: an SQLite file path (the embedded default). Job bodies are
// sealed with the key in `keyFile`, by default a file beside the database (created 0600).
import { SecretBox } from './secret-box.ts';
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
