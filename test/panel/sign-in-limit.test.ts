// The control panel's brake on password guessing (lib/panel/sign-in-limit.ts), over the store's
// counters: a guesser is stopped without locking the customer out from elsewhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../lib/api/store/open.ts';
import type { Database } from '../../lib/api/store/sql.ts';
import {
  signInFailed,
  signInLimited,
  storeSignInFailures,
  type SignInFailures,
} from '../../lib/panel/sign-in-limit.ts';

describe('the sign-in limit', () => {
  let db: Database;
  let limits: SignInFailures;
  beforeAll(async () => {
    db = await openDatabase(':memory:');
    limits = storeSignInFailures(db);
  });
  afterAll(() => db.close());

  it('stops one address guessing one account after 10 failures, and only that address', async () => {
    for (let i = 0; i < 10; i++) {
      expect(await signInLimited(limits, 'erin', '198.51.100.7')).toBe(false);
      await signInFailed(limits, 'erin', '198.51.100.7');
    }
    expect(await signInLimited(limits, 'erin', '198.51.100.7')).toBe(true);
    expect(await signInLimited(limits, 'erin', '203.0.113.9')).toBe(false); // the customer, elsewhere
    expect(await signInLimited(limits, 'frank', '198.51.100.7')).toBe(false); // another account
  });

  it('counts an IPv6 client by its /64', async () => {
    for (let i = 0; i < 10; i++) await signInFailed(limits, 'gail', `2001:db8:1:2::${i + 1}`);
    expect(await signInLimited(limits, 'gail', '2001:db8:1:2:ffff::1')).toBe(true);
    expect(await signInLimited(limits, 'gail', '2001:db8:1:3::1')).toBe(false);
  });

  it('stops one address trying many accounts after 100 failures, before it could lock an account for everyone', async () => {
    for (let i = 0; i < 100; i++) await signInFailed(limits, `user${i % 20}`, '192.0.2.33');
    expect(await signInLimited(limits, 'someone-new', '192.0.2.33')).toBe(true);
    expect(await signInLimited(limits, 'user1', '192.0.2.34')).toBe(false);
  });

  it('stops guessing one account from many addresses after 200 failures', async () => {
    for (let i = 0; i < 200; i++) await signInFailed(limits, 'hana', `10.${i >> 8}.${i & 255}.1`);
    expect(await signInLimited(limits, 'hana', '172.16.0.1')).toBe(true);
    expect(await signInLimited(limits, 'ivan', '172.16.0.1')).toBe(false);
  });
});
