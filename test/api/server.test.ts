// The provisioning API over real HTTP on 127.0.0.1, its state in a SQLite file in a temp dir; the
// test plays the lab (a recording boot adapter) and the agent (its agent-only routes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import {
  bootStep,
  badDiskGroupId,
  badEvents,
  badJobBody,
  badJson,
  badOperatingSystem,
  badUrl,
  bootFailed,
  deploymentCancelled,
  deploymentRunning,
  missingAgentToken,
  missingApiKey,
  missingUrl,
  noSuchServer,
  noSuchTask,
  notInstalling,
  notYourServer,
  unknownApiKey,
  wrongAgentToken,
} from '../../lib/errors.ts';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';

const config: ApiConfig = {
  servers: [
    { serviceName: 'ns1.lab', apiKeys: ['key-alice'] },
    { serviceName: 'ns2.lab', apiKeys: ['key-alice', 'key-bob'] },
    { serviceName: 'ns3.lab', apiKeys: ['key-bob'] },
    {
      serviceName: 'ns4.lab',
      apiKeys: ['key-carol'],
      network: {
        links: [{ id: 'eth0', mac: '0c:c4:7a:00:00:04' }],
        bonds: [],
        vlans: [],
        networks: [{ link: 'eth0', type: 'static', address: '203.0.113.4/24', gateway: '203.0.113.1', routes: [] }],
        dns: [],
      },
      verifyWrite: true,
    },
  ],
};

const sha256 = 'a'.repeat(64);
const legacyBody = {
  URL: 'http://images.example/debian.qcow2',
  type: 'qcow2',
  checkSum: sha256,
  checkSumType: 'sha256',
};
const reinstallBody = {
  operatingSystem: 'byoi_64',
  customizations: {
    imageURL: 'https://images.example/disk.raw',
    imageType: 'raw',
    efiBootloaderPath: '\\efi\\debian\\grubx64.efi',
    hostname: 'web1',
  },
};

const dir = mkdtempSync(join(tmpdir(), 'byoi-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let api: TestApi;
let boot: RecordingBoot;
let db: string;
let n = 0;

beforeEach(async () => {
  db = join(dir, `state-${n++}.sqlite`);
  boot = new RecordingBoot();
  api = await startApi(config, db, boot);
});
afterEach(async () => {
  await api.close();
});

const byoi = (service: string) => `/dedicated/server/${service}/bringYourOwnImage`;
const agentJob = (service: string) => `/agent/v1/servers/${service}/job`;
const agentEvents = (service: string) => `/agent/v1/servers/${service}/events`;
const event = (fields: Record<string, unknown>) => ({ at: new Date().toISOString(), ...fields });

async function startLegacy(service = 'ns1.lab', key = 'key-alice'): Promise<string> {
  const response = await call(api.url, 'POST', byoi(service), { key, body: legacyBody });
  expect(response).toEqual({ status: 200, body: null });
  return boot.boots.at(-1)!.token;
}

describe('POST/GET bringYourOwnImage', () => {
  it('starts a deployment, boots the server with a fresh agent token, and reports it doing', async () => {
    const token = await startLegacy();
    expect(boot.boots).toEqual([{ serverUrl: api.url, serviceName: 'ns1.lab', token }]);
    expect(token).toMatch(/^[0-9a-f]{64}$/); // never a leading "-": it is passed as a command-line argument
    const status = await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' });
    expect(status).toEqual({
      status: 200,
      body: {
        checksum: null,
        message: bootStep.message,
        detail: null,
        servername: 'ns1.lab',
        status: 'doing',
        phase: 'boot',
        percent: null,
        progress: null,
      },
    });
  });

  it('answers null fields for a server that never deployed', async () => {
    const status = await call(api.url, 'GET', byoi('ns2.lab'), { key: 'key-bob' });
    expect(status.body).toMatchObject({ checksum: null, message: null, servername: 'ns2.lab', status: null });
  });

  it.each([
    ['an unknown type', { ...legacyBody, type: 'vhd' }, 'Bad format image, expected: qcow2, raw, ova.'],
    [
      'an unknown checksum type',
      { ...legacyBody, checkSumType: 'crc32' },
      'Bad checkSumType, expected: md5, sha1, sha256, sha512.',
    ],
    [
      'a checksum without its type',
      { URL: legacyBody.URL, type: 'raw', checkSum: sha256 },
      'Please provide checkSum AND checkSumType or none of them',
    ],
    [
      'a type without a checksum',
      { URL: legacyBody.URL, type: 'raw', checkSumType: 'md5' },
      'Please provide checkSum AND checkSumType or none of them',
    ],
    ['an ftp URL', { ...legacyBody, URL: 'ftp://images.example/x.qcow2' }, badUrl().message],
    ['no URL', { type: 'raw' }, missingUrl().message],
    ['a bad diskGroupId', { ...legacyBody, diskGroupId: -1 }, badDiskGroupId().message],
    ['an array', [legacyBody], badJobBody().message],
  ])('refuses %s with 400 and OVH error shape, booting nothing', async (_what, body, message) => {
    const response = await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', body });
    expect(response).toEqual({ status: 400, body: { class: 'Client::BadRequest', message } });
    expect(boot.boots).toEqual([]);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body.status).toBeNull();
  });

  it('refuses a body that is not JSON', async () => {
    const response = await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', rawBody: '{"URL": ' });
    expect(response).toEqual({ status: 400, body: { class: 'Client::BadRequest', message: badJson().message } });
  });

  it('answers 409 while a deployment is doing, and accepts a new one once it is finished', async () => {
    const token = await startLegacy();
    const second = await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', body: legacyBody });
    expect(second).toEqual({
      status: 409,
      body: { class: 'Client::Conflict', message: deploymentRunning('ns1.lab').message },
    });
    expect(boot.boots).toHaveLength(1);
    await call(api.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [event({ status: 'error', message: "Can't write qcow2 on disk.", errorKind: 'failed' })] },
    });
    expect((await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', body: legacyBody })).status).toBe(200);
    expect(boot.boots).toHaveLength(2);
  });

  it('marks the deployment error when the server cannot be booted', async () => {
    boot.onBoot = async () => {
      throw new Error('power controller unreachable');
    };
    expect((await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', body: legacyBody })).status).toBe(200);
    const status = await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' });
    expect(status.body).toMatchObject({ status: 'error', message: bootFailed('ns1.lab').message });
  });
});

describe('the agent routes', () => {
  it("give the job with the lab's network and read-back setting for that server", async () => {
    const token = await startLegacy('ns4.lab', 'key-carol');
    const job = await call(api.url, 'GET', agentJob('ns4.lab'), { key: token });
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({
      serviceName: 'ns4.lab',
      body: legacyBody,
      network: config.servers[3]!.network,
      verifyWrite: true,
    });
  });

  it('give the job to its token and take its events; GET shows the last message verbatim with progress', async () => {
    const token = await startLegacy();
    const job = await call(api.url, 'GET', agentJob('ns1.lab'), { key: token });
    expect(job).toEqual({
      status: 200,
      body: { deploymentId: 1, serviceName: 'ns1.lab', kind: 'bringYourOwnImage', body: legacyBody },
    });
    const progress = { done: 3 * 2 ** 20, total: 4 * 2 ** 20, bytesPerSecond: 2 ** 20 };
    const posted = await call(api.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [event({ status: 'doing', message: 'Downloading the image', phase: 'download', progress })] },
    });
    expect(posted).toEqual({ status: 200, body: { status: 'doing' } });
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body).toEqual({
      checksum: null,
      message: 'Downloading the image',
      detail: null,
      servername: 'ns1.lab',
      status: 'doing',
      phase: 'download',
      percent: 75,
      progress,
    });
    const final = `Bad sha256 for downloaded file, got: ${'b'.repeat(64)} while expecting ${sha256}.`;
    await call(api.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: {
        events: [
          event({
            status: 'error',
            message: final,
            phase: 'verify',
            errorKind: 'refused-image',
            checksum: `sha256:${'b'.repeat(64)}`,
          }),
        ],
      },
    });
    // A late `doing` (a redelivered batch) never overwrites the outcome.
    await call(api.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: { events: [event({ status: 'doing', message: 'late', phase: 'write' })] },
    });
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body).toMatchObject({
      status: 'error',
      message: final,
      checksum: `sha256:${'b'.repeat(64)}`,
    });
    expect((await call(api.url, 'GET', agentJob('ns1.lab'), { key: token })).status).toBe(409);
  });

  it('refuse a missing token (401), a wrong one (403), and a token of another server (403)', async () => {
    const tokenA = await startLegacy('ns1.lab');
    const tokenB = await startLegacy('ns3.lab', 'key-bob');
    const doing = { events: [event({ status: 'done', message: 'stolen' })] };
    expect(await call(api.url, 'GET', agentJob('ns1.lab'))).toEqual({
      status: 401,
      body: { class: 'Client::Unauthorized', message: missingAgentToken().message },
    });
    expect(await call(api.url, 'GET', agentJob('ns1.lab'), { key: 'x'.repeat(43) })).toEqual({
      status: 403,
      body: { class: 'Client::Forbidden', message: wrongAgentToken().message },
    });
    expect((await call(api.url, 'GET', agentJob('ns3.lab'), { key: tokenA })).status).toBe(403);
    expect((await call(api.url, 'POST', agentEvents('ns3.lab'), { key: tokenA, body: doing })).status).toBe(403);
    expect((await call(api.url, 'POST', agentEvents('ns3.lab'), { body: doing })).status).toBe(401);
    expect((await call(api.url, 'GET', byoi('ns3.lab'), { key: 'key-bob' })).body.status).toBe('doing');
    // A customer key is not an agent token, nor the other way round.
    expect((await call(api.url, 'GET', agentJob('ns1.lab'), { key: 'key-alice' })).status).toBe(403);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: tokenA })).status).toBe(403);
    expect((await call(api.url, 'GET', agentJob('ns3.lab'), { key: tokenB })).status).toBe(200);
  });

  it('refuse malformed events with 400', async () => {
    const token = await startLegacy();
    for (const body of [
      {},
      { events: [{ status: 'finished', message: 'x', at: new Date().toISOString() }] },
      { events: [{ status: 'done' }] },
    ]) {
      expect(await call(api.url, 'POST', agentEvents('ns1.lab'), { key: token, body })).toEqual({
        status: 400,
        body: { class: 'Client::BadRequest', message: badEvents().message },
      });
    }
  });
});

describe('customer authentication', () => {
  it("needs a key (401), a known key (403), and the server to be the customer's (403); unknown servers are 404", async () => {
    expect(await call(api.url, 'GET', byoi('ns1.lab'))).toEqual({
      status: 401,
      body: { class: 'Client::Unauthorized', message: missingApiKey().message },
    });
    expect(await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-mallory' })).toEqual({
      status: 403,
      body: { class: 'Client::Forbidden', message: unknownApiKey().message },
    });
    expect(await call(api.url, 'GET', byoi('ns9.lab'), { key: 'key-alice' })).toEqual({
      status: 404,
      body: { class: 'Client::NotFound', message: noSuchServer('ns9.lab').message },
    });
    // An unauthenticated request is refused before its body is even parsed.
    expect((await call(api.url, 'POST', byoi('ns1.lab'), { rawBody: 'not json' })).status).toBe(401);
  });

  it("keeps one customer away from another's server on every route", async () => {
    await startLegacy('ns1.lab', 'key-alice');
    const refused = {
      status: 403,
      body: { class: 'Client::Forbidden', message: notYourServer('ns1.lab').message },
    };
    expect(await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-bob' })).toEqual(refused);
    expect(await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-bob', body: legacyBody })).toEqual(refused);
    expect(await call(api.url, 'DELETE', byoi('ns1.lab'), { key: 'key-bob' })).toEqual(refused);
    expect(
      await call(api.url, 'POST', '/dedicated/server/ns1.lab/reinstall', { key: 'key-bob', body: reinstallBody }),
    ).toEqual(refused);
    expect(await call(api.url, 'GET', '/dedicated/server/ns1.lab/task/1', { key: 'key-bob' })).toEqual(refused);
    expect(await call(api.url, 'GET', '/dedicated/server/ns1.lab/install/status', { key: 'key-bob' })).toEqual(refused);
    // Bob cannot reach Alice's task through his own server either.
    expect((await call(api.url, 'GET', '/dedicated/server/ns3.lab/task/1', { key: 'key-bob' })).status).toBe(404);
    expect(boot.boots).toHaveLength(1);
    expect(boot.rescues).toEqual([]);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body.status).toBe('doing');
  });
});

describe('DELETE bringYourOwnImage', () => {
  it('erases the status, puts the server in rescue, voids the agent token and allows a new deployment', async () => {
    const token = await startLegacy();
    expect(await call(api.url, 'DELETE', byoi('ns1.lab'), { key: 'key-alice' })).toEqual({ status: 200, body: null });
    expect(boot.rescues).toEqual(['ns1.lab']);
    expect(await api.store.inRescue('ns1.lab')).toBe(true);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body).toMatchObject({
      status: null,
      message: null,
    });
    // The agent hears it in the answer to its next request (events, heartbeat, job): 410, and stops.
    expect((await call(api.url, 'GET', agentJob('ns1.lab'), { key: token })).body).toEqual({
      class: 'Client::Gone',
      message: deploymentCancelled().message,
    });
    expect(
      (
        await call(api.url, 'POST', agentEvents('ns1.lab'), {
          key: token,
          body: { events: [event({ status: 'done', message: 'x' })] },
        })
      ).status,
    ).toBe(410);
    expect((await call(api.url, 'POST', agentEvents('ns1.lab'), { key: token, body: { events: [] } })).status).toBe(
      410,
    );
    expect((await call(api.url, 'GET', '/dedicated/server/ns1.lab/task/1', { key: 'key-alice' })).body.status).toBe(
      'cancelled',
    );
    await startLegacy();
    expect(await api.store.inRescue('ns1.lab')).toBe(false);
  });
});

describe('reinstall, task and install/status', () => {
  it('maps byoi_64 customizations to a deployment and follows it step by step', async () => {
    const posted = await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', {
      key: 'key-bob',
      body: reinstallBody,
    });
    expect(posted.status).toBe(200);
    const task = posted.body;
    expect(task).toEqual({
      taskId: 1,
      function: 'reinstallServer',
      status: 'init',
      comment: 'Start bare metal OS installation',
      startDate: expect.any(String),
      doneDate: null,
    });
    expect(Date.parse(task.startDate)).not.toBeNaN();
    const token = boot.boots[0]!.token;
    const job = await call(api.url, 'GET', agentJob('ns2.lab'), { key: token });
    expect(job.body).toMatchObject({ kind: 'reinstall', body: reinstallBody });
    expect((await call(api.url, 'GET', '/dedicated/server/ns2.lab/task/1', { key: 'key-bob' })).body.status).toBe(
      'doing',
    );

    await call(api.url, 'POST', agentEvents('ns2.lab'), {
      key: token,
      body: {
        events: [
          event({
            status: 'doing',
            message: 'Downloading the image',
            phase: 'download',
            progress: { done: 0, total: null, bytesPerSecond: 0 },
          }),
          event({
            status: 'doing',
            message: 'Downloading the image',
            phase: 'download',
            progress: { done: 10, total: null, bytesPerSecond: 5 },
          }),
          event({ status: 'doing', message: 'Writing the image', phase: 'write' }),
        ],
      },
    });
    const during = await call(api.url, 'GET', '/dedicated/server/ns2.lab/install/status', { key: 'key-bob' });
    expect(during.body).toEqual({
      elapsedTime: expect.any(Number),
      progress: [
        { comment: bootStep.message, status: 'done' },
        { comment: 'Downloading the image', status: 'done' },
        { comment: 'Writing the image', status: 'doing' },
      ],
    });
    await call(api.url, 'POST', agentEvents('ns2.lab'), {
      key: token,
      body: { events: [event({ status: 'done', message: 'The image is on the disk', phase: 'done' })] },
    });
    const after = await call(api.url, 'GET', '/dedicated/server/ns2.lab/install/status', { key: 'key-bob' });
    expect(after.body.progress.map((s: { status: string }) => s.status)).toEqual(['done', 'done', 'done', 'done']);
    const done = await call(api.url, 'GET', '/dedicated/server/ns2.lab/task/1', { key: 'key-bob' });
    expect(done.body).toMatchObject({ taskId: 1, status: 'done', doneDate: expect.any(String) });
    expect((await call(api.url, 'GET', byoi('ns2.lab'), { key: 'key-bob' })).body).toMatchObject({
      status: 'done',
      message: 'The image is on the disk',
    });
  });

  it('reports a refused image as customerError with the failing step', async () => {
    await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', { key: 'key-bob', body: reinstallBody });
    const token = boot.boots[0]!.token;
    const message =
      'image provided format is not of type raw because no partition table was found. It seems to contain: ext4 filesystem';
    await call(api.url, 'POST', agentEvents('ns2.lab'), {
      key: token,
      body: {
        events: [
          event({ status: 'doing', message: 'Inspecting the image', phase: 'inspect' }),
          event({ status: 'error', message, phase: 'inspect', errorKind: 'refused-image' }),
        ],
      },
    });
    const steps = (await call(api.url, 'GET', '/dedicated/server/ns2.lab/install/status', { key: 'key-bob' })).body
      .progress;
    expect(steps.at(-1)).toEqual({ comment: 'Inspecting the image', error: message, status: 'error' });
    expect((await call(api.url, 'GET', '/dedicated/server/ns2.lab/task/1', { key: 'key-bob' })).body.status).toBe(
      'customerError',
    );
  });

  it('refuses another operating system, and invalid customizations with the job messages', async () => {
    expect(
      await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', { key: 'key-bob', body: [reinstallBody] }),
    ).toEqual({ status: 400, body: { class: 'Client::BadRequest', message: badJobBody().message } });
    expect(
      await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', {
        key: 'key-bob',
        body: { ...reinstallBody, operatingSystem: 'debian12_64' },
      }),
    ).toEqual({
      status: 400,
      body: { class: 'Client::BadRequest', message: badOperatingSystem().message },
    });
    const badType = {
      operatingSystem: 'byoi_64',
      customizations: { ...reinstallBody.customizations, imageType: 'vmdk' },
    };
    expect(
      (await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', { key: 'key-bob', body: badType })).body,
    ).toEqual({ class: 'Client::BadRequest', message: 'Bad format image, expected: qcow2, raw, ova.' });
    const pair = {
      operatingSystem: 'byoi_64',
      customizations: { ...reinstallBody.customizations, imageCheckSum: sha256 },
    };
    expect(
      (await call(api.url, 'POST', '/dedicated/server/ns2.lab/reinstall', { key: 'key-bob', body: pair })).body.message,
    ).toBe('Please provide checkSum AND checkSumType or none of them');
    expect(boot.boots).toEqual([]);
  });

  it('answers 404 for an unknown task and for install/status without an installation', async () => {
    expect(await call(api.url, 'GET', '/dedicated/server/ns2.lab/task/77', { key: 'key-bob' })).toEqual({
      status: 404,
      body: { class: 'Client::NotFound', message: noSuchTask('77').message },
    });
    expect(await call(api.url, 'GET', '/dedicated/server/ns2.lab/install/status', { key: 'key-bob' })).toEqual({
      status: 404,
      body: { class: 'Client::NotFound', message: notInstalling().message },
    });
  });
});

describe('a restart of the API', () => {
  it('keeps every deployment, status, step and agent token', async () => {
    const token = await startLegacy();
    await call(api.url, 'GET', agentJob('ns1.lab'), { key: token });
    await call(api.url, 'POST', agentEvents('ns1.lab'), {
      key: token,
      body: {
        events: [
          event({
            status: 'doing',
            message: 'Writing the image',
            phase: 'write',
            progress: { done: 1, total: 2, bytesPerSecond: 1 },
          }),
        ],
      },
    });
    const before = (await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body;
    await api.close();
    api = await startApi(config, db, boot);
    expect((await call(api.url, 'GET', byoi('ns1.lab'), { key: 'key-alice' })).body).toEqual(before);
    expect((await call(api.url, 'POST', byoi('ns1.lab'), { key: 'key-alice', body: legacyBody })).status).toBe(409);
    expect(
      (
        await call(api.url, 'POST', agentEvents('ns1.lab'), {
          key: token,
          body: { events: [event({ status: 'done', message: 'finished' })] },
        })
      ).status,
    ).toBe(200);
    const steps = (await call(api.url, 'GET', '/dedicated/server/ns1.lab/install/status', { key: 'key-alice' })).body
      .progress;
    expect(steps.map((s: { comment: string }) => s.comment)).toEqual([bootStep.message, 'Writing the image']);
    expect((await call(api.url, 'GET', '/dedicated/server/ns1.lab/task/1', { key: 'key-alice' })).body.status).toBe(
      'done',
    );
  });
});
