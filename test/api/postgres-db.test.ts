// The PostgreSQL driver on a real server (a throwaway cluster): placeholders, number types, transactions
// (rollback, a real deadlock retried), where the password comes from and that it is never shown, and
// `byoi serve` on PostgreSQL.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ByoiError, databasePasswordOnCommandLine, databaseUnavailable, sharedKeyNeeded } from '../../lib/errors.ts';
import { hasPassword, isPostgresUrl, shownLocation } from '../../lib/api/store/database-url.ts';
import { numberPlaceholders } from '../../lib/api/store/placeholders.ts';
import { openStore as openStoreWithKey } from '../../lib/api/store/open.ts';
import { SecretBox } from '../../lib/api/store/secret-box.ts';
import { PostgresDatabase } from '../../lib/api/store/postgres-db.ts';
import { call } from '../helpers/api.ts';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

describe('numbering placeholders', () => {
  it('numbers each ? in order, and leaves those in literals, quoted names and comments alone', () => {
    expect(numberPlaceholders('SELECT * FROM t WHERE a = ? AND b IN (?, ?)')).toEqual({
      text: 'SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)',
      count: 3,
    });
    expect(
      numberPlaceholders(`SELECT 'what?', 'it''s ?', "odd?name" FROM t WHERE x = ? -- why?\nAND y = ? /* ? */`),
    ).toEqual({
      text: `SELECT 'what?', 'it''s ?', "odd?name" FROM t WHERE x = $1 -- why?\nAND y = $2 /* ? */`,
      count: 2,
    });
    expect(numberPlaceholders('SELECT 1')).toEqual({ text: 'SELECT 1', count: 0 });
  });
});

describe('database locations', () => {
  it('tells PostgreSQL URLs from SQLite paths, sees a password wherever the URL carries it, and shows none', () => {
    expect(isPostgresUrl('postgres://db/byoi')).toBe(true);
    expect(isPostgresUrl('postgresql://db/byoi')).toBe(true);
    expect(isPostgresUrl('/var/lib/byoi/serve.sqlite')).toBe(false);
    expect(hasPassword('postgres://byoi:s3cret@db.lab/byoi')).toBe(true);
    expect(hasPassword('postgres://byoi@db.lab/byoi?password=s3cret')).toBe(true);
    expect(hasPassword('postgres://byoi@/byoi?host=/run/postgresql')).toBe(false);
    expect(shownLocation('postgres://byoi:s3cret@db.lab:5433/byoi?sslmode=require&password=x')).toBe(
      'postgres://byoi@db.lab:5433/byoi',
    );
    expect(shownLocation('postgres://byoi:s3cret@/byoi?host=/run/postgresql')).toBe(
      'postgres://byoi@/byoi?host=/run/postgresql',
    );
    expect(shownLocation('/var/lib/byoi/serve.sqlite')).toBe('/var/lib/byoi/serve.sqlite');
  });
});

describe.skipIf(skipWithoutPostgres)('the PostgreSQL driver', () => {
  let cluster: TestPostgres;
  let db: PostgresDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'byoi-pg-driver-'));
  const keyFile = join(dir, 'bodies.key');
  SecretBox.fromKeyFile(keyFile);
  const openStore = (url: string) => openStoreWithKey(url, { keyFile });
  const savedEnv = { PGPASSWORD: process.env.PGPASSWORD, PGPASSFILE: process.env.PGPASSFILE };

  beforeAll(async () => {
    cluster = await startPostgres();
    db = new PostgresDatabase(await cluster.createDatabase('driver'));
    await db.exec(
      'CREATE TABLE pair (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO pair VALUES (1, 0), (2, 0);',
    );
  });

  afterEach(() => {
    for (const [name, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  afterAll(async () => {
    await db?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers int8 and numeric as numbers when they are exact, as text when a double would round them', async () => {
    const row = await db.get<Record<string, unknown>>(
      'SELECT ?::int8 AS small, 9007199254740993::int8 AS big, (SELECT count(*) FROM pair) AS n, 1.5::numeric AS dec, 12345678901234567890.5::numeric AS wide',
      [42],
    );
    expect(row).toEqual({ small: 42, big: '9007199254740993', n: 2, dec: 1.5, wide: '12345678901234567890.5' });
  });

  it('refuses a statement whose placeholders and parameters do not match', async () => {
    await expect(db.get('SELECT ? AS a', [1, 2])).rejects.toThrow('1 placeholders for 2 parameters');
  });

  it('rolls a transaction back when its work throws', async () => {
    await expect(
      db.transaction(async (tx) => {
        await tx.run('UPDATE pair SET v = 100 WHERE id = 1');
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(await db.get('SELECT v FROM pair WHERE id = 1')).toEqual({ v: 0 });
  });

  it('runs again the transaction PostgreSQL aborts to break a deadlock: both end up applied', async () => {
    let runs = 0;
    let arrived = 0;
    let release!: () => void;
    const bothHoldOneRow = new Promise<void>((resolve) => (release = resolve));
    // Each locks one row, waits until the other holds the other row, then wants it: a deadlock.
    const crossing = (first: number, second: number) =>
      db.transaction(async (tx) => {
        runs++;
        await tx.run('UPDATE pair SET v = v + 1 WHERE id = ?', [first]);
        if (++arrived === 2) release();
        await bothHoldOneRow;
        await tx.run('UPDATE pair SET v = v + 1 WHERE id = ?', [second]);
      });
    await Promise.all([crossing(1, 2), crossing(2, 1)]);
    expect(runs).toBe(3);
    expect(await db.all('SELECT id, v FROM pair ORDER BY id')).toEqual([
      { id: 1, v: 2 },
      { id: 2, v: 2 },
    ]);
  });

  it('needs the key file every replica shares, and makes none up', async () => {
    const url = cluster.url('driver');
    await expect(openStoreWithKey(url)).rejects.toThrow(sharedKeyNeeded(undefined).message);
    const absent = join(dir, 'absent.key');
    await expect(openStoreWithKey(url, { keyFile: absent })).rejects.toThrow(sharedKeyNeeded(absent).message);
  });

  describe('the password', () => {
    const password = "s3cret-'Pa55";
    let url: string;
    const noPasswordFile = () => (process.env.PGPASSFILE = join(dir, 'absent'));

    beforeAll(async () => {
      await cluster.createRole('fleet', password, 'fleet_db');
      url = cluster.url('fleet_db', 'fleet');
    });

    it('is asked for: without one the store does not open, with a clear error', async () => {
      delete process.env.PGPASSWORD;
      noPasswordFile();
      await expect(openStore(url)).rejects.toThrow(
        databaseUnavailable(`postgres://fleet@/fleet_db?host=${cluster.socketDir}`).message,
      );
    });

    it('comes from PGPASSWORD', async () => {
      noPasswordFile();
      process.env.PGPASSWORD = password;
      const store = await openStore(url);
      await store.close();
    });

    it("comes from a password file (PGPASSFILE, libpq's format)", async () => {
      delete process.env.PGPASSWORD;
      const file = join(dir, 'pgpass');
      writeFileSync(file, `*:*:fleet_db:fleet:${password}\n`, { mode: 0o600 });
      process.env.PGPASSFILE = file;
      const store = await openStore(url);
      await store.close();
    });

    it('is never shown when it is wrong', async () => {
      noPasswordFile();
      const wrong = 'wrong-Secret-4242';
      const error = await openStore(
        `postgres://fleet:${wrong}@/fleet_db?host=${encodeURIComponent(cluster.socketDir)}`,
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ByoiError);
      const { message, detail } = error as ByoiError;
      expect(message).toBe(databaseUnavailable(`postgres://fleet@/fleet_db?host=${cluster.socketDir}`).message);
      expect(detail).toMatch(/password authentication failed/);
      expect(`${message} ${detail}`).not.toContain(wrong);
    });
  });

  describe('byoi serve --db postgres://', () => {
    const byoi = fileURLToPath(new URL('../../agent/byoi.ts', import.meta.url));

    function serve(args: string[]): {
      stderr: () => string;
      exited: Promise<number | null>;
      listening: Promise<string>;
      stop: () => void;
    } {
      const child = spawn(process.execPath, [byoi, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const listening = new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          const match = /listening on (http:\/\/\S+)/.exec(stderr);
          if (match) resolve(match[1]!);
        });
        void exited.then((code) => reject(new Error(`byoi serve exited ${code}: ${stderr}`)));
      });
      listening.catch(() => {});
      return { stderr: () => stderr, exited, listening, stop: () => child.kill('SIGTERM') };
    }

    it('keeps its deployments in the PostgreSQL database the config names', async () => {
      const config = join(dir, 'fleet.json');
      const database = await cluster.createDatabase('serve');
      const key = 'Fleet-Key-7f3a9c2e51b84d6a0c9e7f2b4a6d8c1e';
      writeFileSync(
        config,
        JSON.stringify({
          database,
          secretsKeyFile: keyFile,
          servers: [{ serviceName: 'ns1.fleet', apiKeys: [key], boot: { command: ['true'] } }],
        }),
      );
      const served = serve(['--config', config, '--listen', '127.0.0.1:0']);
      try {
        const url = await served.listening;
        const body = { URL: 'http://127.0.0.1:9/x.raw', type: 'raw' };
        expect((await call(url, 'POST', '/dedicated/server/ns1.fleet/bringYourOwnImage', { key, body })).status).toBe(
          200,
        );
        expect((await call(url, 'GET', '/dedicated/server/ns1.fleet/bringYourOwnImage', { key })).body).toMatchObject({
          status: 'doing',
        });
      } finally {
        served.stop();
        expect(await served.exited).toBe(0);
      }
      const check = new PostgresDatabase(database);
      try {
        expect(await check.get('SELECT service_name, status FROM deployments')).toEqual({
          service_name: 'ns1.fleet',
          status: 'doing',
        });
      } finally {
        await check.close();
      }
    });

    it('refuses a password on its command line, without echoing it', async () => {
      const config = join(dir, 'plain.json');
      writeFileSync(config, JSON.stringify({ servers: [] }));
      const secret = 'cmdline-Secret-77';
      const served = serve([
        '--config',
        config,
        '--listen',
        '127.0.0.1:0',
        '--db',
        `postgres://fleet:${secret}@/fleet_db?host=${encodeURIComponent(cluster.socketDir)}`,
      ]);
      expect(await served.exited).not.toBe(0);
      expect(served.stderr()).toContain(databasePasswordOnCommandLine().message);
      expect(served.stderr()).not.toContain(secret);
    });
  });
});
