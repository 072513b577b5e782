// The contracts of the stores beside the deployments' (customer accounts, APIv6 applications and
// credentials, the control panel's sessions), run against every database behind them: the embedded
// SQLite file and a real PostgreSQL server (a throwaway cluster, test/helpers/postgres.ts). Two
// databases opened on the same location stand for two `byoi serve` replicas, each with its own
// connections: what one writes, the other reads; what both race for, one wins.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { hashPassword } from '../../lib/api/passwords.ts';
import { SqlCredentials } from '../../lib/api/store/credentials-store.ts';
import { SqlCustomers } from '../../lib/api/store/customers-store.ts';
import { openDatabase } from '../../lib/api/store/open.ts';
import { SecretBox } from '../../lib/api/store/secret-box.ts';
import { hashSessionId, SessionStore } from '../../lib/api/store/sessions-store.ts';
import type { Database } from '../../lib/api/store/sql.ts';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

const dir = mkdtempSync(join(tmpdir(), 'byoi-account-stores-'));
// Every replica seals with the same key, as a fleet's must.
const keyFile = join(dir, 'shared.key');
const box = SecretBox.fromKeyFile(keyFile);
const otherKey = SecretBox.fromKeyFile(join(dir, 'other.key'));
let cluster: TestPostgres | undefined;

const backends = [
  { name: 'SQLite', skip: false, location: async () => join(dir, 'accounts.sqlite') },
  {
    name: 'PostgreSQL',
    skip: skipWithoutPostgres,
    location: async () => {
      cluster ??= await startPostgres();
      return cluster.createDatabase('accounts');
    },
  },
];

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// The config's account and server assignments take precedence over the store's.
const config: ApiConfig = {
  customers: [{ name: 'declared', passwordHash: await hashPassword('declared password') }],
  servers: [
    { serviceName: 'ns-declared.lab', customer: 'declared', apiKeys: [] },
    { serviceName: 'ns-free.lab', apiKeys: [] },
  ],
};

describe.each(backends)('the account stores on $name', (backend) => {
  let here: Database;
  let there: Database;

  beforeAll(async () => {
    if (backend.skip) return;
    const location = await backend.location();
    [here, there] = await Promise.all([openDatabase(location), openDatabase(location)]);
  });

  afterAll(async () => {
    await here?.close();
    await there?.close();
  });

  it.skipIf(backend.skip)(
    'customers: one account per name across replicas, never over a declared one; sign-in by password',
    async () => {
      const [a, b] = [new SqlCustomers(here, config), new SqlCustomers(there, config)];
      const hash = await hashPassword('a long enough password');
      // Two replicas adding the same name at once: exactly one succeeds.
      const added = await Promise.all([a.add('alice', hash, ['ns1.lab']), b.add('alice', hash, ['ns2.lab'])]);
      expect(added.filter(Boolean)).toHaveLength(1);
      expect(await a.add('declared', hash, [])).toBe(false);
      expect(await b.byName('alice')).toEqual({ name: 'alice' });
      expect(await b.byName('nobody')).toBeUndefined();
      expect(await b.signIn('alice', 'a long enough password')).toEqual({ name: 'alice' });
      expect(await a.signIn('alice', 'wrong')).toBeUndefined();
      expect(await a.signIn('nobody', 'a long enough password')).toBeUndefined();
      expect(await b.signIn('declared', 'declared password')).toEqual({ name: 'declared' });
    },
  );

  it.skipIf(backend.skip)("customers: a server has one owner, and the config's assignment wins", async () => {
    const [a, b] = [new SqlCustomers(here, config), new SqlCustomers(there, config)];
    const hash = await hashPassword('another long password');
    expect(await a.add('bob', hash, ['ns-bob.lab', 'ns-declared.lab', 'ns-free.lab'])).toBe(true);
    expect(await a.add('carol', hash, [])).toBe(true);
    expect(await b.servers({ name: 'bob' })).toEqual(['ns-bob.lab', 'ns-free.lab']);
    await b.assign('carol', 'ns-free.lab');
    expect(await a.servers({ name: 'bob' })).toEqual(['ns-bob.lab']);
    expect(await a.servers({ name: 'carol' })).toEqual(['ns-free.lab']);
    expect(await a.servers({ name: 'declared' })).toEqual(['ns-declared.lab']);
  });

  it.skipIf(backend.skip)(
    'credentials: an application made on one replica signs on the other; a secret sealed under another key opens nowhere',
    async () => {
      const [a, b] = [new SqlCredentials(here, box), new SqlCredentials(there, box)];
      const { application, appSecret } = await a.createApplication('tool', 'a customer tool');
      expect(await b.applicationByKey(application.appKey)).toEqual({ ...application, appSecret });
      expect(await b.applicationById(application.id)).toEqual({ ...application, appSecret });
      expect(await b.applicationByKey('no-such-key')).toBeUndefined();
      // A replica with the wrong key reads no secret rather than a wrong one.
      expect(await new SqlCredentials(there, otherKey).applicationByKey(application.appKey)).toBeUndefined();
      // The secret is sealed at rest, the consumer keys and validation tokens hashed.
      const request = await a.request({
        applicationId: application.id,
        rules: [],
        allowedIPs: null,
        redirection: null,
      });
      if (request === 'too-many') throw new Error('too many');
      const rows = JSON.stringify([
        await here.all('SELECT * FROM api_applications'),
        await here.all('SELECT * FROM api_credentials'),
      ]);
      for (const secret of [appSecret, request.consumerKey, request.validationToken])
        expect(rows).not.toContain(secret);
    },
  );

  it.skipIf(backend.skip)(
    'credentials: validated once whichever replica answers first; the token is spent; consumer keys find their credential',
    async () => {
      const [a, b] = [new SqlCredentials(here, box), new SqlCredentials(there, box)];
      const { application } = await a.createApplication('tool', '');
      const rules = [{ method: 'GET' as const, path: '/dedicated/server/*' }];
      const request = await b.request({
        applicationId: application.id,
        rules,
        allowedIPs: ['192.0.2.0/24'],
        redirection: 'https://tool.example/done',
      });
      if (request === 'too-many') throw new Error('too many');
      const { credential, consumerKey, validationToken } = request;
      expect(credential).toMatchObject({
        applicationId: application.id,
        customer: null,
        status: 'pendingValidation',
        rules,
        allowedIPs: ['192.0.2.0/24'],
        redirection: 'https://tool.example/done',
        expiration: null,
        lastUse: null,
      });
      expect(await a.byValidationToken(validationToken)).toEqual(credential);
      const outcomes = await Promise.all([
        a.validate(credential.id, 'alice', 3600),
        b.validate(credential.id, 'bob', null),
      ]);
      expect(outcomes.filter(Boolean)).toHaveLength(1);
      const validated = (await a.byConsumerKey(consumerKey))!;
      expect(validated.status).toBe('validated');
      expect(validated.customer).toBe(outcomes[0] ? 'alice' : 'bob');
      expect(await b.byValidationToken(validationToken)).toBeUndefined();
      expect(await b.refuse(credential.id)).toBe(false);
      expect(await b.ofCustomer(validated.customer!)).toContainEqual(validated);
      await b.touch(credential.id);
      const used = (await a.byId(credential.id))!.lastUse;
      expect(used).not.toBeNull();
      await a.touch(credential.id); // within the minute: not written again
      expect((await b.byId(credential.id))!.lastUse).toBe(used);
      await a.remove(credential.id);
      expect(await b.byConsumerKey(consumerKey)).toBeUndefined();
    },
  );

  it.skipIf(backend.skip)('credentials: a refused request cannot be validated', async () => {
    const [a, b] = [new SqlCredentials(here, box), new SqlCredentials(there, box)];
    const { application } = await a.createApplication('tool', '');
    const request = await a.request({ applicationId: application.id, rules: [], allowedIPs: null, redirection: null });
    if (request === 'too-many') throw new Error('too many');
    expect(await b.refuse(request.credential.id)).toBe(true);
    expect(await a.validate(request.credential.id, 'alice', null)).toBe(false);
    expect((await b.byConsumerKey(request.consumerKey))!.status).toBe('refused');
  });

  it.skipIf(backend.skip)(
    'sessions: found by their id on every replica, stored only hashed; a pending install sealed to its own row',
    async () => {
      const [a, b] = [new SessionStore(here, box), new SessionStore(there, box)];
      const { id, session } = await a.create('alice');
      expect(await b.find(id)).toEqual(session);
      expect(await b.find(`${id}x`)).toBeUndefined();
      expect(JSON.stringify(await here.all('SELECT * FROM panel_sessions'))).not.toContain(id);
      expect(session.idHash).toBe(hashSessionId(id));

      const pending = {
        serviceName: 'ns1.lab',
        body: { URL: 'https://images.lab/i.qcow2', httpHeader: { t: 's3cr3t' } },
      };
      await b.setPendingInstall(session.idHash, pending);
      expect((await a.find(id))!.pendingInstall).toEqual(pending);
      const sealed = await here.get<{ pending_install: string }>(
        'SELECT pending_install FROM panel_sessions WHERE id_hash = ?',
        [session.idHash],
      );
      expect(sealed!.pending_install).not.toContain('s3cr3t');
      // Copied onto another session's row, it does not open there.
      const other = await b.create('mallory');
      await here.run('UPDATE panel_sessions SET pending_install = ? WHERE id_hash = ?', [
        sealed!.pending_install,
        other.session.idHash,
      ]);
      expect((await a.find(other.id))!.pendingInstall).toBeNull();
      await a.setPendingInstall(session.idHash, null);
      expect((await b.find(id))!.pendingInstall).toBeNull();
      await b.end(session.idHash);
      expect(await a.find(id)).toBeUndefined();
    },
  );

  it.skipIf(backend.skip)(
    'sessions: an expired session is found nowhere and is cleared by the next sign-in',
    async () => {
      const shortLived = new SessionStore(here, box, -1000);
      const { id, session } = await shortLived.create('alice');
      expect(await new SessionStore(there, box).find(id)).toBeUndefined();
      await new SessionStore(there, box).create('bob');
      expect(await here.get('SELECT id_hash FROM panel_sessions WHERE id_hash = ?', [session.idHash])).toBeUndefined();
    },
  );
});
