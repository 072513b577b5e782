// What `byoi serve` and its operator subcommands work on: one database holding deployments, customer
// accounts and APIv6 credentials, and the key file that seals application secrets.
import type { ApiConfig } from './config.ts';
import { SqlCredentials } from './store/credentials-store.ts';
import { SqlCustomers } from './store/customers-store.ts';
import { openDatabase } from './store/open.ts';
import { SecretBox } from './store/secret-box.ts';
import { SqlStore } from './store/sql-store.ts';
import type { Store } from './store/types.ts';

export interface Service {
  readonly store: Store;
  readonly customers: SqlCustomers;
  readonly credentials: SqlCredentials;
  close(): Promise<void>;
}

/** `keyFile` (store/secret-box.ts) is made 0600 on first use; it must stay with the database: without it nothing sealed opens. */
export async function openService(dbPath: string, keyFile: string, config: ApiConfig): Promise<Service> {
  const box = SecretBox.fromKeyFile(keyFile);
  const db = await openDatabase(dbPath);
  const store = await SqlStore.open(db, box);
  return { store, customers: new SqlCustomers(db, config), credentials: new SqlCredentials(db, box), close: () => store.close() };
}
