import { describe, expect, it } from 'vitest';
import { hashPassword, verifyPassword } from '../../lib/api/passwords.ts';

describe('customer passwords', () => {
  it('are kept as salted scrypt hashes that verify the right password only', async () => {
    const stored = await hashPassword('correct horse battery staple');
    expect(stored).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(stored).not.toContain('correct');
    expect(await hashPassword('correct horse battery staple')).not.toBe(stored);
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true);
    expect(await verifyPassword('correct horse battery stapl', stored)).toBe(false);
  });

  it('refuse hashes that are malformed or ask for unbounded work', async () => {
    const stored = await hashPassword('pw');
    expect(await verifyPassword('pw', stored.replace('scrypt$32768', 'scrypt$1073741824'))).toBe(false);
    expect(await verifyPassword('pw', stored.replace('scrypt$32768', 'scrypt$30000'))).toBe(false);
    expect(await verifyPassword('pw', 'plain-text')).toBe(false);
    expect(await verifyPassword('pw', '')).toBe(false);
  });
});

describe('customer accounts declared in the config', () => {
  it('sign in with the right password only, and own the servers that name them', async () => {
    const { parseConfig } = await import('../../lib/api/config.ts');
    const { ConfigCustomers } = await import('../../lib/api/customers.ts');
    const config = parseConfig(
      {
        customers: [
          { name: 'alice', passwordHash: await hashPassword('alice-pw') },
          { name: 'bob', passwordHash: await hashPassword('bob-pw') },
        ],
        servers: [
          { serviceName: 'ns1.lab', customer: 'alice', apiKeys: [] },
          { serviceName: 'ns2.lab', customer: 'bob', apiKeys: [] },
          { serviceName: 'ns3.lab', apiKeys: [] },
        ],
      },
      'lab.json',
    );
    const customers = new ConfigCustomers(config);
    expect(await customers.signIn('alice', 'alice-pw')).toEqual({ name: 'alice' });
    expect(await customers.signIn('alice', 'bob-pw')).toBeUndefined();
    expect(await customers.signIn('carol', 'alice-pw')).toBeUndefined();
    expect(await customers.servers({ name: 'alice' })).toEqual(['ns1.lab']);
    expect(() =>
      parseConfig({ servers: [{ serviceName: 'ns1', customer: 'nobody', apiKeys: [] }] }, 'lab.json'),
    ).toThrow('servers[0].customer must name one of "customers"');
    expect(() =>
      parseConfig({ customers: [{ name: 'eve', passwordHash: 'hunter2' }], servers: [] }, 'lab.json'),
    ).toThrow('customers[0].passwordHash must be an scrypt hash');
  });
});
