// The operator's subcommands of `byoi serve`, as processes: secrets read from standard input only,
// printed once when made, stored hashed or sealed; clear errors and non-zero exits otherwise.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyPassword } from '../../lib/api/passwords.ts';
import { customerExists, noSecret, noSuchCustomer, notPending } from '../../lib/errors.ts';
import { serveAdmin } from '../helpers/ovh-sdk.ts';

const dir = mkdtempSync(join(tmpdir(), 'byoi-serve-admin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const db = join(dir, 'lab.sqlite');

describe("byoi serve's operator subcommands", () => {
  it('hash-password hashes the password read from standard input, and refuses none', async () => {
    const hashed = await serveAdmin(['hash-password'], 'correct horse\n');
    expect(hashed.exitCode).toBe(0);
    expect(await verifyPassword('correct horse', hashed.stdout.trim())).toBe(true);
    const none = await serveAdmin(['hash-password'], '');
    expect(none.exitCode).not.toBe(0);
    expect(none.stderr.trim().split('\n').at(-1)).toBe(noSecret('password').message);
  });

  it('customer add keeps the password hashed; a second account of the same name is refused', async () => {
    expect(
      await serveAdmin(['customer', 'add', 'carol', '--server', 'ns1.lab', '--db', db], 'carol secret\n'),
    ).toMatchObject({ exitCode: 0 });
    expect(readFileSync(db).includes(Buffer.from('carol secret'))).toBe(false);
    const again = await serveAdmin(['customer', 'add', 'carol', '--db', db], 'other\n');
    expect(again.exitCode).toBe(1);
    expect(again.stderr.trim()).toBe(customerExists('carol').message);
    expect((await serveAdmin(['customer', 'add', 'bad name', '--db', db], 'x\n')).exitCode).toBe(2);
    expect((await serveAdmin(['customer', 'assign', 'nobody', 'ns2.lab', '--db', db])).stderr.trim()).toBe(
      noSuchCustomer('nobody').message,
    );
  });

  it('application create prints its key and secret once; the secret is sealed under a 0600 key file', async () => {
    const created = await serveAdmin(['application', 'create', '--name', 'tool', '--db', db]);
    expect(created.exitCode).toBe(0);
    const secret = /applicationSecret=([A-Za-z0-9]{32})\n?$/.exec(created.stdout)![1]!;
    expect(created.stdout).toMatch(/^applicationKey=[A-Za-z0-9]{16}\n/);
    expect(readFileSync(db).includes(Buffer.from(secret))).toBe(false);
    expect(statSync(`${db}.key`).mode & 0o777).toBe(0o600);
  });

  it('credential validate reads the consumer key from standard input and refuses one that is not pending', async () => {
    const unknown = await serveAdmin(
      ['credential', 'validate', '--customer', 'carol', '--db', db],
      'y'.repeat(32) + '\n',
    );
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr.trim()).toBe(notPending().message);
    const none = await serveAdmin(['credential', 'validate', '--customer', 'carol', '--db', db], '');
    expect(none.stderr.trim()).toBe(noSecret('consumer key').message);
    expect(
      (await serveAdmin(['credential', 'validate', '--customer', 'nobody', '--db', db], 'y'.repeat(32))).stderr.trim(),
    ).toBe(noSuchCustomer('nobody').message);
  });
});
