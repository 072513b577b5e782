// Customer accounts kept in the store (added by `byoi serve customer add`), beside those the config
// file declares: one `Customers` (lib/api/customers.ts) over both, config first.
import type { ApiConfig } from '../config.ts';
import { ConfigCustomers, type Customer, type Customers } from '../customers.ts';
import { UNKNOWN_HASH, verifyPassword } from '../passwords.ts';
import type { Sql } from './sql.ts';

export class SqlCustomers implements Customers {
  private readonly sql: Sql;
  private readonly declared: ConfigCustomers;
  private readonly config: ApiConfig;

  /** `sql` must have had the store's migrations (store/migrations.ts). */
  constructor(sql: Sql, config: ApiConfig) {
    this.sql = sql;
    this.config = config;
    this.declared = new ConfigCustomers(config);
  }

  /** Adds an account; false when the name is taken (in the store or the config). */
  async add(name: string, passwordHash: string, servers: readonly string[]): Promise<boolean> {
    if (await this.declared.byName(name)) return false;
    const inserted = await this.sql.get(
      'INSERT INTO customers (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING name',
      [name, passwordHash, new Date().toISOString()],
    );
    if (!inserted) return false;
    for (const serviceName of servers) await this.assign(name, serviceName);
    return true;
  }

  /** Makes `customer` the owner of the server (its one owner). */
  async assign(customer: string, serviceName: string): Promise<void> {
    await this.sql.run(
      'INSERT INTO customer_servers (service_name, customer) VALUES (?, ?) ON CONFLICT (service_name) DO UPDATE SET customer = excluded.customer',
      [serviceName, customer],
    );
  }

  async signIn(name: string, password: string): Promise<Customer | undefined> {
    if (await this.declared.byName(name)) return this.declared.signIn(name, password);
    const row = await this.sql.get<{ password_hash: string }>('SELECT password_hash FROM customers WHERE name = ?', [
      name,
    ]);
    // Verified even for an unknown name, so that a sign-in costs the same either way.
    const matches = await verifyPassword(password, row?.password_hash ?? UNKNOWN_HASH);
    return row && matches ? { name } : undefined;
  }

  async byName(name: string): Promise<Customer | undefined> {
    const declared = await this.declared.byName(name);
    if (declared) return declared;
    const row = await this.sql.get<{ name: string }>('SELECT name FROM customers WHERE name = ?', [name]);
    return row && { name: row.name };
  }

  async servers(customer: Customer): Promise<readonly string[]> {
    const rows = await this.sql.all<{ service_name: string }>(
      'SELECT service_name FROM customer_servers WHERE customer = ? ORDER BY service_name',
      [customer.name],
    );
    // A server the config gives to someone is theirs; the store's assignments apply to the others.
    const configured = new Map(this.config.servers.map((s) => [s.serviceName, s.customer]));
    const fromStore = rows.map((r) => r.service_name).filter((s) => configured.get(s) === undefined);
    return [...new Set([...(await this.declared.servers(customer)), ...fromStore])].sort();
  }
}
