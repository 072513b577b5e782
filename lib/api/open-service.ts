// What `byoi serve` and its operator subcommands work on: one database holding deployments, customer
// accounts and APIv6 credentials, and the key file that seals application secrets.
import type { ApiConfig } from './config.ts';
import { SqlCredentials } from './store/credentials-store.ts';
import { SqlCustomers } from './store/customers-store.ts';
import { openDatabase, secretBoxFor } from './store/open.ts';
import { SqlStore } from './store/sql-store.ts';
import type { Store } from './store/types.ts';

export interface Service {
  readonly store: Store;
  readonly customers: SqlCustomers;
  readonly credentials: SqlCredentials;
  close(): Promise<void>;
}

/**
 * `location`: an SQLite path or a postgres:// URL (store/open.ts). `keyFile` (store/secret-box.ts), by
 * default beside an SQLite database and made 0600 on first use, must stay with the database: without
 * it nothing sealed opens; over PostgreSQL it is required, the same file on every replica.
 */
export async function openService(location: string, keyFile: string | undefined, config: ApiConfig): Promise<Service> {
  const box = secretBoxFor(location, keyFile);
  const db = await openDatabase(location);
  const store = await SqlStore.open(db, box);
  return {
    store,
    customers: new SqlCustomers(db, config),
    credentials: new SqlCredentials(db, box),
    close: () => store.close(),
  };
}
