// Customer accounts: who signs in (control panel, credential validation) and which servers are theirs.
// The accounts the lab declares in its config file; a store of accounts can stand behind the same interface.
import type { ApiConfig } from './config.ts';
import { UNKNOWN_HASH, verifyPassword } from './passwords.ts';

export interface Customer {
  readonly name: string;
}

export interface Customers {
  /** The customer with this name and password; undefined for a wrong name or password alike. */
  signIn(name: string, password: string): Promise<Customer | undefined>;
  byName(name: string): Promise<Customer | undefined>;
  /** The serviceNames of the servers the customer owns. */
  servers(customer: Customer): Promise<readonly string[]>;
}

export class ConfigCustomers implements Customers {
  private readonly config: ApiConfig;

  constructor(config: ApiConfig) {
    this.config = config;
  }

  async signIn(name: string, password: string): Promise<Customer | undefined> {
    const declared = this.config.customers?.find((c) => c.name === name);
    const matches = await verifyPassword(password, declared?.passwordHash ?? UNKNOWN_HASH);
    return declared && matches ? { name: declared.name } : undefined;
  }

  async byName(name: string): Promise<Customer | undefined> {
    const declared = this.config.customers?.find((c) => c.name === name);
    return declared && { name: declared.name };
  }

  async servers(customer: Customer): Promise<readonly string[]> {
    return this.config.servers.filter((s) => s.customer === customer.name).map((s) => s.serviceName);
  }
}
