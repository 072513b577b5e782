// byoi serve under attack, on 127.0.0.1: each case is one of a hostile probe's findings (issue 13),
// driven over real HTTP (and raw TCP for what no client library sends) against the real server over
// a SQLite file.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { clientKey } from '../../lib/api/auth-failures.ts';
import { SqlAuthFailures } from '../../lib/api/store/auth-failures-store.ts';
import { SqliteDatabase } from '../../lib/api/store/sqlite-db.ts';
import { isStrongKey, parseConfig, type ApiConfig } from '../../lib/api/config.ts';
import type { ApiOptions } from '../../lib/api/context.ts';
import { pruneJobBodies } from '../../lib/api/retention.ts';
import { MAX_STEPS } from '../../lib/api/store/sql-store.ts';
import {
  ByoiError,
  badEvents,
  badHttpHeader,
  badSecretsKey,
  badServiceName,
  bodyTooLarge,
  reservedKey,
  tooManyFailures,
  urlTooLong,
  weakApiKeyReason,
  wrongAgentToken,
} from '../../lib/errors.ts';
import { jobFromBody, validateJob } from '../../lib/job.ts';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';
import { rawExchange, requestText } from '../helpers/raw-http.ts';

const aliceKey = 'alice-7f3e9a2c4b1d8e6f0a5c3b7d9e2f4a6c';
const bobKey = 'bob-1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b';
const config: ApiConfig = {
  servers: [
    { serviceName: 'ns1.lab', apiKeys: [aliceKey] },
    { serviceName: 'ns2.lab', apiKeys: [bobKey] },
  ],
};
const legacyBody = {
  URL: 'https://user:url-password-secret@images.example/disk.raw?sig=query-secret',
  type: 'raw',
  httpHeader: [{ key: 'X-Auth', value: 'header-secret-value' }],
  configdrive: { enable: true, hostname: 'web1', userData: '#cloud-config\n# userdata-secret\n' },
};

const dir = mkdtempSync(join(tmpdir(), 'byoi-hardening-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let api: TestApi | undefined;
let boot: RecordingBoot;
let n = 0;
let db = '';

async function start(extra: Partial<ApiOptions> = {}): Promise<TestApi> {
  db = join(dir, `h-${n++}.sqlite`);
  boot = new RecordingBoot();
  api = await startApi(config, db, boot, 0, extra);
  return api;
}
afterEach(async () => {
  await api?.close();
  api = undefined;
});

const byoi = (service: string) => `/dedicated/server/${service}/bringYourOwnImage`;
const agentJob = (service: string) => `/agent/v1/servers/${service}/job`;
const agentEvents = (service: string) => `/agent/v1/servers/${service}/events`;

async function deploy(body: unknown = legacyBody): Promise<string> {
  const posted = await call(api!.url, 'POST', byoi('ns1.lab'), { key: aliceKey, body });
  expect(posted.status).toBe(200);
  return boot.boots.at(-1)!.token;
}

/** OVH's error shape, and nothing else. */
function expectOvhShape(body: string): { class: string; message: string } {
  const parsed = JSON.parse(body) as Record<string, unknown>;
  expect(Object.keys(parsed).sort()).toEqual(['class', 'message']);
  expect(parsed.class).toMatch(/^(Client|Server)::/);
  return parsed as { class: string; message: string };
}

describe('authentication happens before the body (item 5)', () => {
  it('refuses a wrong agent token announcing 12 MiB without waiting for a byte of it', async () => {
    const { port } = await start();
    await deploy();
    const answer = await rawExchange(port, (socket) => {
      socket.write(
        requestText('POST', agentEvents('ns1.lab'), {
          authorization: `Bearer ${'0'.repeat(64)}`,
          'content-type': 'application/json',
          'content-length': 12 * 1024 * 1024,
        }),
      );
    });
    expect(answer.status).toBe(403);
    expect(expectOvhShape(answer.body).message).toBe(wrongAgentToken().message);
    expect(answer.ms).toBeLessThan(2000);
  });

  it('refuses a customer without a key before reading the body', async () => {
    const { port } = await start();
    const answer = await rawExchange(port, (socket) => {
      socket.write(
        requestText('POST', byoi('ns1.lab'), { 'content-type': 'application/json', 'content-length': 4 * 1024 * 1024 }),
      );
    });
    expect(answer.status).toBe(401);
    expectOvhShape(answer.body);
  });

  it('cuts a body that trickles in one byte at a time once the request time is over, OVH-shaped', async () => {
    const { port } = await start({ limits: { requestTimeoutMs: 1000, headersTimeoutMs: 500 } });
    const answer = await rawExchange(
      port,
      async (socket) => {
        socket.write(
          requestText('POST', byoi('ns1.lab'), {
            authorization: `Bearer ${aliceKey}`,
            'content-type': 'application/json',
            'content-length': 100,
          }),
        );
        for (let i = 0; i < 40 && !socket.destroyed; i++) {
          socket.write(' ');
          await new Promise((resolve) => setTimeout(resolve, 150));
        }
      },
      { timeoutMs: 6000 },
    );
    expect(answer.closed).toBe(true);
    expect(answer.ms).toBeLessThan(4000);
    if (answer.status !== undefined) {
      expect(answer.status).toBe(408);
      expectOvhShape(answer.body);
    }
  });

  it('closes a connection whose headers never end', async () => {
    const { port } = await start({ limits: { requestTimeoutMs: 1000, headersTimeoutMs: 500 } });
    const answer = await rawExchange(
      port,
      async (socket) => {
        socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
        for (let i = 0; i < 40 && !socket.destroyed; i++) {
          socket.write('X: y\r\n');
          await new Promise((resolve) => setTimeout(resolve, 150));
        }
      },
      { timeoutMs: 6000 },
    );
    expect(answer.closed).toBe(true);
    expect(answer.ms).toBeLessThan(4000);
  });

  it('caps a batch of events', async () => {
    await start();
    const token = await deploy();
    const events = Array.from({ length: 101 }, () => ({
      status: 'doing',
      message: 'Downloading image',
      phase: 'download',
      at: new Date().toISOString(),
    }));
    const answer = await call(api!.url, 'POST', agentEvents('ns1.lab'), { key: token, body: { events } });
    expect(answer).toEqual({ status: 400, body: { class: 'Client::BadRequest', message: badEvents().message } });
  });
});

describe('the job body is stored apart, sealed, cut to the contract and pruned (items 4, 6, 7)', () => {
  it('creates the database, its WAL and SHM files and the key file 0600', async () => {
    await start();
    const token = await deploy();
    await call(api!.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [{ status: 'doing', message: 'Downloading image', phase: 'download' }] },
    });
    const files = readdirSync(dir).filter((f) => f.startsWith(db.slice(dir.length + 1)));
    expect(files.sort()).toEqual(
      expect.arrayContaining([
        `h-${n - 1}.sqlite`,
        `h-${n - 1}.sqlite-wal`,
        `h-${n - 1}.sqlite-shm`,
        `h-${n - 1}.sqlite.key`,
      ]),
    );
    for (const file of files)
      expect({ file, mode: (statSync(join(dir, file)).mode & 0o777).toString(8) }).toEqual({ file, mode: '600' });
  });

  it('keeps no secret of the job in clear in the database files, and the agent still gets it whole', async () => {
    await start();
    const token = await deploy();
    expect((await call(api!.url, 'GET', agentJob('ns1.lab'), { key: token })).body.body).toEqual(legacyBody);
    const bytes = readdirSync(dir)
      .filter((f) => f.startsWith(db.slice(dir.length + 1)) && !f.endsWith('.key'))
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('');
    for (const secret of ['url-password-secret', 'query-secret', 'header-secret-value', 'userdata-secret'])
      expect(bytes).not.toContain(secret);
  });

  it('keeps the body out of the deployments table that events update', async () => {
    await start();
    await deploy();
    const sqlite = new DatabaseSync(db, { readOnly: true });
    try {
      const columns = (sqlite.prepare('PRAGMA table_info(deployments)').all() as { name: string }[]).map((c) => c.name);
      expect(columns).not.toContain('body');
      expect(sqlite.prepare('SELECT count(*) AS n FROM job_bodies').get()).toEqual({ n: 1 });
    } finally {
      sqlite.close();
    }
  });

  it("stores only the contract's fields of a body", async () => {
    await start();
    const junk = 'j'.repeat(1024 * 1024);
    const token = await deploy({
      ...legacyBody,
      junk,
      configdrive: { ...legacyBody.configdrive, junk },
      httpHeader: [{ key: 'X-Auth', value: 'header-secret-value', junk }],
    });
    expect((await call(api!.url, 'GET', agentJob('ns1.lab'), { key: token })).body.body).toEqual(legacyBody);
    const sqlite = new DatabaseSync(db, { readOnly: true });
    try {
      const { length } = sqlite.prepare('SELECT length(body) AS length FROM job_bodies').get() as { length: number };
      expect(length).toBeLessThan(2000);
    } finally {
      sqlite.close();
    }
  });

  it("stores only the contract's fields of a reinstall body", async () => {
    await start();
    const customizations = {
      imageURL: 'https://images.example/disk.raw',
      imageType: 'raw',
      httpHeaders: { 'X-Auth': 'header-secret-value' },
      configDriveMetadata: { role: 'web' },
      hostname: 'web1',
    };
    const answer = await call(api!.url, 'POST', '/dedicated/server/ns1.lab/reinstall', {
      key: aliceKey,
      body: {
        operatingSystem: 'byoi_64',
        junk: 'j',
        customizations: { ...customizations, junk: 'j' },
        storage: [{ diskGroupId: 2, junk: 'j' }, { diskGroupId: 3 }],
      },
    });
    expect(answer.status).toBe(200);
    const job = await call(api!.url, 'GET', agentJob('ns1.lab'), { key: boot.boots.at(-1)!.token });
    expect(job.body.body).toEqual({ operatingSystem: 'byoi_64', customizations, storage: [{ diskGroupId: 2 }] });
  });

  it("forgets finished deployments' bodies after the retention period, not running ones", async () => {
    await start();
    const token = await deploy();
    await call(api!.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [{ status: 'done', message: 'Installed', phase: 'done' }] },
    });
    const finished = (await api!.store.current('ns1.lab'))!;
    const running = await call(api!.url, 'POST', byoi('ns2.lab'), { key: bobKey, body: legacyBody });
    expect(running.status).toBe(200);
    expect(await pruneJobBodies(api!.store, 7)).toBe(0);
    expect(await api!.store.jobBody(finished.id)).toBeDefined();
    expect(await pruneJobBodies(api!.store, 7, Date.now() + 8 * 24 * 3600 * 1000)).toBe(1);
    expect(await api!.store.jobBody(finished.id)).toBeUndefined();
    expect(await api!.store.jobBody((await api!.store.current('ns2.lab'))!.id)).toEqual(legacyBody);
    expect(() => parseConfig({ servers: [], jobBodyRetentionDays: -1 }, 'lab.json')).toThrow('jobBodyRetentionDays');
  });
});

describe('what an agent may report is bounded (item 7)', () => {
  it('caps steps however the agent flips phases, and collapses progress of one phase', async () => {
    await start();
    const token = await deploy();
    const flips = Array.from({ length: 100 }, (_, i) => ({
      status: 'doing',
      message: `step ${i}`,
      phase: i % 2 ? 'download' : 'write',
    }));
    for (let i = 0; i < 3; i++)
      expect(
        (await call(api!.url, 'POST', agentEvents('ns1.lab'), { key: token, body: { events: flips } })).status,
      ).toBe(200);
    const status = await call(api!.url, 'GET', `/dedicated/server/ns1.lab/install/status`, { key: aliceKey });
    expect(status.body.progress.length).toBe(MAX_STEPS);
    const progress = Array.from({ length: 50 }, (_, i) => ({
      status: 'doing',
      message: 'Writing',
      phase: 'write',
      progress: { done: i, total: 100, bytesPerSecond: 1 },
    }));
    await call(api!.url, 'POST', agentEvents('ns1.lab'), { key: token, body: { events: progress } });
    expect((await call(api!.url, 'GET', byoi('ns1.lab'), { key: aliceKey })).body.progress).toEqual({
      done: 49,
      total: 100,
      bytesPerSecond: 1,
    });
  });

  it.each([
    ['a phase the pipeline does not have', { status: 'doing', message: 'x', phase: 'mine' }],
    [
      'a negative byte count',
      { status: 'doing', message: 'x', phase: 'write', progress: { done: -1, total: 1, bytesPerSecond: 0 } },
    ],
    [
      'a byte count past 2^53',
      { status: 'doing', message: 'x', phase: 'write', progress: { done: 2 ** 60, total: null, bytesPerSecond: 0 } },
    ],
    ['a huge message', { status: 'doing', message: 'x'.repeat(5000), phase: 'write' }],
    [
      'a checksum that is not a digest',
      { status: 'doing', message: 'x', phase: 'verify', checksum: '<script>alert(1)</script>' },
    ],
  ])('refuses %s', async (_what, event) => {
    await start();
    const token = await deploy();
    const answer = await call(api!.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [{ ...event, at: new Date().toISOString() }] },
    });
    expect(answer).toEqual({ status: 400, body: { class: 'Client::BadRequest', message: badEvents().message } });
  });

  it("drops fields outside the contract and dates the outcome by the server's clock", async () => {
    await start();
    const since = new Date().toISOString();
    const token = await deploy();
    const junk = 'j'.repeat(100_000);
    const answer = await call(api!.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: {
        events: [
          {
            status: 'done',
            message: 'Installed',
            phase: 'done',
            at: '1999-01-01T00:00:00.000Z',
            junk,
            progress: { done: 1, total: 1, bytesPerSecond: 1, junk },
          },
        ],
      },
    });
    expect(answer.status).toBe(200);
    const task = await call(api!.url, 'GET', `/dedicated/server/ns1.lab/task/1`, { key: aliceKey });
    expect(task.body.doneDate >= since).toBe(true);
    const sqlite = new DatabaseSync(db, { readOnly: true });
    try {
      expect(JSON.stringify(sqlite.prepare('SELECT * FROM deployments').all())).not.toContain('jjjj');
    } finally {
      sqlite.close();
    }
  });
});

describe('every answer is OVH-shaped, however early it fails (item 8)', () => {
  const raw = (port: number, text: string) => rawExchange(port, (socket) => void socket.write(text));

  it.each([
    [
      'a bad percent-encoding in the path',
      (k: string) => requestText('GET', '/dedicated/server/%ZZ/bringYourOwnImage', { authorization: `Bearer ${k}` }),
      400,
    ],
    ['an unknown route', (k: string) => requestText('GET', '/nothing/here', { authorization: `Bearer ${k}` }), 404],
    [
      'another method on a route',
      (k: string) => requestText('PUT', byoi('ns1.lab'), { authorization: `Bearer ${k}`, 'content-length': 0 }),
      404,
    ],
    [
      'a body that is not JSON',
      (k: string) =>
        requestText(
          'POST',
          byoi('ns1.lab'),
          { authorization: `Bearer ${k}`, 'content-type': 'application/json', 'content-length': 3 },
          '{x}',
        ),
      400,
    ],
    [
      'an unsupported content type',
      (k: string) =>
        requestText(
          'POST',
          byoi('ns1.lab'),
          { authorization: `Bearer ${k}`, 'content-type': 'text/plain', 'content-length': 2 },
          'hi',
        ),
      415,
    ],
    ['a request line that is not HTTP', () => 'GARBAGE\r\n\r\n', 400],
    [
      'headers over 16 KiB',
      (k: string) =>
        requestText('GET', byoi('ns1.lab'), { authorization: `Bearer ${k}`, 'x-padding': 'a'.repeat(20_000) }),
      431,
    ],
    [
      'a URL over 16 KiB',
      (k: string) => requestText('GET', `${byoi('ns1.lab')}?q=${'a'.repeat(20_000)}`, { authorization: `Bearer ${k}` }),
      431,
    ],
    [
      'a malformed chunked body',
      (k: string) =>
        requestText(
          'POST',
          byoi('ns1.lab'),
          { authorization: `Bearer ${k}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
          'zz\r\n{}\r\n0\r\n\r\n',
        ),
      400,
    ],
    [
      'both Content-Length and chunked',
      (k: string) =>
        requestText(
          'POST',
          byoi('ns1.lab'),
          {
            authorization: `Bearer ${k}`,
            'content-type': 'application/json',
            'content-length': 2,
            'transfer-encoding': 'chunked',
          },
          '2\r\n{}\r\n0\r\n\r\n',
        ),
      400,
    ],
  ])('%s', async (_what, text, status) => {
    const { port } = await start();
    const answer = await raw(port, text(aliceKey));
    expect(answer.status).toBe(status);
    expectOvhShape(answer.body);
  });

  it('answers a 3,000-character serviceName 414 without echoing it', async () => {
    const { port } = await start();
    const name = `ns${'x'.repeat(3000)}`;
    const answer = await raw(port, requestText('GET', byoi(name), { authorization: `Bearer ${aliceKey}` }));
    expect(answer.status).toBe(414);
    expect(expectOvhShape(answer.body).message).toBe(urlTooLong().message);
    expect(answer.body).not.toContain('xxxxxxxxxx');
  });

  it('answers a body past the limit 413', async () => {
    const { port } = await start({ limits: { bodyBytes: 1000 } });
    const body = JSON.stringify({ ...legacyBody, description: 'd'.repeat(2000) });
    const answer = await raw(
      port,
      requestText(
        'POST',
        byoi('ns1.lab'),
        { authorization: `Bearer ${aliceKey}`, 'content-type': 'application/json', 'content-length': body.length },
        body,
      ),
    );
    expect(answer.status).toBe(413);
    expect(expectOvhShape(answer.body).message).toBe(bodyTooLarge().message);
  });

  it('answers a body shorter than its Content-Length, once the sender gives up, OVH-shaped or not at all', async () => {
    const { port } = await start({ limits: { requestTimeoutMs: 1000, headersTimeoutMs: 500 } });
    const answer = await rawExchange(
      port,
      (socket) => {
        socket.write(
          requestText(
            'POST',
            byoi('ns1.lab'),
            { authorization: `Bearer ${aliceKey}`, 'content-type': 'application/json', 'content-length': 50 },
            '{"URL":',
          ),
        );
      },
      { timeoutMs: 5000 },
    );
    expect(answer.closed).toBe(true);
    if (answer.status !== undefined) expectOvhShape(answer.body);
  });
});

describe('failed authentications are limited per client, weak keys refused (item 9)', () => {
  it('answers 429 to a client past its failures, even with the right key, on customer and agent routes alike', async () => {
    await start();
    for (let i = 0; i < 30; i++)
      expect((await call(api!.url, 'GET', byoi('ns1.lab'), { key: randomBytes(16).toString('hex') })).status).toBe(403);
    const limited = await call(api!.url, 'GET', byoi('ns1.lab'), { key: aliceKey });
    expect(limited).toEqual({
      status: 429,
      body: { class: 'Client::TooManyRequests', message: tooManyFailures().message },
    });
    expect((await call(api!.url, 'GET', agentJob('ns1.lab'), { key: 'f'.repeat(64) })).status).toBe(429);
  });

  it('keeps the counts in the database: another replica (or a restart) sees them', async () => {
    await start();
    for (let i = 0; i < 30; i++)
      await call(api!.url, 'GET', agentJob('ns1.lab'), { key: randomBytes(32).toString('hex') });
    await api!.close();
    api = await startApi(config, db, boot);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: aliceKey })).status).toBe(429);
  });

  it('counts per client and window, IPv6 clients by /64, and forgets windows that are over', async () => {
    const sqlite = new SqliteDatabase(':memory:');
    await sqlite.exec(
      'CREATE TABLE auth_failures (client TEXT PRIMARY KEY, since TEXT NOT NULL, failures INTEGER NOT NULL)',
    );
    let now = Date.parse('2026-01-01T00:00:00Z');
    const failures = new SqlAuthFailures(sqlite, { maxFailures: 2, windowMs: 1000 }, () => now);
    await failures.failed('10.0.0.1');
    expect(await failures.limited('10.0.0.1')).toBe(false);
    await failures.failed('::ffff:10.0.0.1');
    expect(await failures.limited('10.0.0.1')).toBe(true);
    expect(await failures.limited('10.0.0.2')).toBe(false);
    await failures.failed('2001:db8:1:2:aaaa::1');
    await failures.failed('2001:DB8:1:2:bbbb:cccc:dddd:eeee');
    expect(await failures.limited('2001:db8:1:2::9')).toBe(true);
    expect(await failures.limited('2001:db8:1:3::1')).toBe(false);
    now += 1500; // the window is over: the count starts again, and old rows go
    expect(await failures.limited('10.0.0.1')).toBe(false);
    await failures.failed('10.0.0.1');
    expect(await failures.limited('10.0.0.1')).toBe(false);
    expect(await sqlite.all('SELECT client, failures FROM auth_failures')).toEqual([
      { client: 'api 10.0.0.1', failures: 1 },
    ]);
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    await sqlite.close();
  });

  it("keeps each counter in its own scope: a short window's pruning spares a longer one's rows", async () => {
    const sqlite = new SqliteDatabase(':memory:');
    await sqlite.exec(
      'CREATE TABLE auth_failures (client TEXT PRIMARY KEY, since TEXT NOT NULL, failures INTEGER NOT NULL)',
    );
    let now = Date.parse('2026-01-01T00:00:00Z');
    const short = new SqlAuthFailures(sqlite, { maxFailures: 2, windowMs: 1000 }, () => now);
    const long = new SqlAuthFailures(sqlite, { maxFailures: 2, windowMs: 60_000 }, () => now, 'panel-address');
    await long.failed('10.0.0.1');
    await long.failed('10.0.0.1');
    now += 1500;
    await short.failed('10.0.0.1'); // prunes its own scope's old rows only
    expect(await long.limited('10.0.0.1')).toBe(true);
    expect(await short.limited('10.0.0.1')).toBe(false);
    await sqlite.close();
  });

  it('refuses weak API keys when the config is read', () => {
    const withKey = (key: string) => () =>
      parseConfig({ servers: [{ serviceName: 'ns1.lab', apiKeys: [key] }] }, 'lab.json');
    for (const weak of [
      'k',
      'a'.repeat(40),
      'abcd'.repeat(10),
      'password-password-password-passw',
      'short-but-random-9f8e7d',
    ]) {
      expect(withKey(weak)).toThrow(weakApiKeyReason('servers[0].apiKeys[0]'));
    }
    for (let i = 0; i < 200; i++) expect(isStrongKey(randomBytes(16).toString('hex'))).toBe(true);
    expect(withKey(randomBytes(24).toString('base64url'))).not.toThrow();
  });
});

describe('a locked database does not stall the event loop (item 10)', () => {
  it('waits for the lock asynchronously, then records', async () => {
    await start();
    const token = await deploy();
    const other = new DatabaseSync(db);
    other.exec('BEGIN IMMEDIATE');
    let worstGap = 0;
    let last = Date.now();
    const ticker = setInterval(() => {
      worstGap = Math.max(worstGap, Date.now() - last);
      last = Date.now();
    }, 10);
    try {
      const posting = call(api!.url, 'POST', agentEvents('ns1.lab'), {
        key: token,
        body: { events: [{ status: 'doing', message: 'Writing', phase: 'write' }] },
      });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      other.exec('COMMIT');
      expect((await posting).status).toBe(200);
    } finally {
      clearInterval(ticker);
      if (other.isTransaction) other.exec('ROLLBACK');
      other.close();
    }
    expect(worstGap).toBeLessThan(500);
    expect((await call(api!.url, 'GET', byoi('ns1.lab'), { key: aliceKey })).body.phase).toBe('write');
  });
});

describe('validation gaps (item 11)', () => {
  const withHeader = (key: string, value: string) => ({ ...legacyBody, httpHeader: [{ key, value }] });

  it.each([
    ['U+0085 (NEL)', 'a\u0085b'],
    ['U+2028 (line separator)', 'a\u2028b'],
    ['U+2029 (paragraph separator)', 'a\u2029b'],
    ['U+202E (right-to-left override)', 'a\u202eb'],
    ['DEL', 'a\u007fb'],
    ['a vertical tab', 'a\u000bb'],
  ])('refuses a header value with %s, on the API and the CLI alike', async (_what, value) => {
    await start();
    const answer = await call(api!.url, 'POST', byoi('ns1.lab'), { key: aliceKey, body: withHeader('X-Auth', value) });
    expect(answer).toEqual({
      status: 400,
      body: { class: 'Client::BadRequest', message: badHttpHeader('X-Auth').message },
    });
    expect(() =>
      validateJob({ url: 'https://images.example/x.raw', type: 'raw', httpHeaders: { 'X-Auth': value } }),
    ).toThrow(badHttpHeader('X-Auth').message);
    expect(boot.boots).toEqual([]);
  });

  it.each([
    [
      'httpHeader',
      `{"URL":"https://i.example/x.raw","type":"raw","httpHeader":[{"key":"__proto__","value":"x"}]}`,
      'bringYourOwnImage',
    ],
    [
      'httpHeader',
      `{"URL":"https://i.example/x.raw","type":"raw","httpHeader":[{"key":"constructor","value":"x"}]}`,
      'bringYourOwnImage',
    ],
    [
      'userMetadatas',
      `{"URL":"https://i.example/x.raw","type":"raw","configdrive":{"enable":true,"userMetadatas":[{"key":"prototype","value":"x"}]}}`,
      'bringYourOwnImage',
    ],
    [
      'httpHeaders',
      `{"operatingSystem":"byoi_64","customizations":{"imageURL":"https://i.example/x.raw","imageType":"raw","httpHeaders":{"constructor":"x"}}}`,
      'reinstall',
    ],
    [
      'configDriveMetadata',
      `{"operatingSystem":"byoi_64","customizations":{"imageURL":"https://i.example/x.raw","imageType":"raw","configDriveMetadata":{"prototype":"x"}}}`,
      'reinstall',
    ],
  ])('refuses a %s key naming the prototype', async (field, rawBody, route) => {
    await start();
    const answer = await call(api!.url, 'POST', `/dedicated/server/ns1.lab/${route}`, { key: aliceKey, rawBody });
    expect(answer).toEqual({
      status: 400,
      body: { class: 'Client::BadRequest', message: reservedKey(field).message },
    });
    expect(boot.boots).toEqual([]);
  });

  it('refuses a "__proto__" key in a JSON body, and in a job file the CLI reads', async () => {
    await start();
    const rawBody = `{"operatingSystem":"byoi_64","customizations":{"imageURL":"https://i.example/x.raw","imageType":"raw","httpHeaders":{"__proto__":"x"}}}`;
    expect(
      (await call(api!.url, 'POST', `/dedicated/server/ns1.lab/reinstall`, { key: aliceKey, rawBody })).status,
    ).toBe(400);
    expect(() => validateJob(jobFromBody(JSON.parse(rawBody)))).toThrow(reservedKey('httpHeaders').message);
  });

  it.each([
    ['NUL', 'ns1%00.lab'],
    ['RLO', 'ns1%E2%80%AE.lab'],
    ['a newline', 'ns1%0A.lab'],
    ['a space', 'ns1%20lab'],
  ])('never echoes a serviceName with %s', async (_what, name) => {
    await start();
    for (const path of [byoi(name), agentJob(name), `/dedicated/server/${name}/task/1`]) {
      const answer = await call(api!.url, 'GET', path, { key: aliceKey });
      expect(answer).toEqual({ status: 404, body: { class: 'Client::NotFound', message: badServiceName().message } });
    }
    expect(() => validateJob({ url: 'x' })).toThrow(ByoiError);
  });
});

describe("the sealed bodies' key (item 4)", () => {
  it('opens a body on its own row only, and refuses a key file others may read', async () => {
    const { SecretBox } = await import('../../lib/api/store/secret-box.ts');
    const keyFile = join(dir, 'box.key');
    const box = SecretBox.fromKeyFile(keyFile);
    expect((statSync(keyFile).mode & 0o777).toString(8)).toBe('600');
    const sealed = box.seal('{"URL":"https://u:p@x/"}', 'row 1');
    expect(sealed).not.toContain('u:p');
    expect(SecretBox.fromKeyFile(keyFile).open(sealed, 'row 1')).toBe('{"URL":"https://u:p@x/"}');
    expect(() => box.open(sealed, 'row 2')).toThrow();
    expect(() => SecretBox.ephemeral().open(sealed, 'row 1')).toThrow();
    chmodSync(keyFile, 0o644);
    expect(() => SecretBox.fromKeyFile(keyFile)).toThrow(
      badSecretsKey(keyFile, 'others than its owner may read it (chmod 600)').message,
    );
  });
});

describe('a database from before the bodies were sealed (item 4)', () => {
  it('moves its clear bodies out of deployments, seals them, and leaves no trace of them in the file', async () => {
    const path = join(dir, 'old.sqlite');
    const old = new DatabaseSync(path);
    const { migrations } = await import('../../lib/api/store/migrations.ts');
    old.exec('CREATE TABLE schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    old.exec(migrations[0]!.sql('sqlite'));
    old.prepare('INSERT INTO schema_migrations VALUES (1, ?, ?)').run(migrations[0]!.name, new Date().toISOString());
    old
      .prepare(
        "INSERT INTO deployments (service_name, kind, body, token_hash, status, message, phase, started_at) VALUES ('ns1.lab', 'bringYourOwnImage', ?, 'h', 'doing', 'm', 'boot', ?)",
      )
      .run(JSON.stringify(legacyBody), new Date().toISOString());
    old.close();
    const { openStore } = await import('../../lib/api/store/open.ts');
    const store = await openStore(path);
    try {
      expect(await store.jobBody(1)).toEqual(legacyBody);
      expect((await store.current('ns1.lab'))?.status).toBe('doing');
    } finally {
      await store.close();
    }
    const bytes = readdirSync(dir)
      .filter((f) => f.startsWith('old.sqlite') && !f.endsWith('.key'))
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('');
    expect(bytes).not.toContain('header-secret-value');
  });
});
