// A deployment never ends in limbo: the watchdog (store-based, shared by replicas) ends a silent
// one; an outcome the agent could not deliver before rebooting is delivered by the agent of the next
// netboot (or the deployment is settled after too many boots); errors carry their redacted detail and
// are classed customerError or ovhError. The API and the agents are real, on 127.0.0.1; the agents'
// pipelines are steered by the test through the real Reporter.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { watchdogRound } from '../../lib/api/watchdog.ts';
import {
  cannotWriteImage,
  checksumMismatch,
  downloadFailed,
  faultOf,
  noPartitionTable,
  rereadFailed,
  tooBigForMemory,
  unknownDiskGroup,
  agentLost,
  agentSilent,
} from '../../lib/errors.ts';
import { runAgent, type AgentOptions, type Pipeline } from '../../agent/remote/run-agent.ts';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';

const run = promisify(execFile);
const config: ApiConfig = {
  netboot: { kernel: 'http://boot.lab/vmlinuz', initrd: 'http://boot.lab/initrd.img', maxBoots: 2 },
  servers: [{ serviceName: 'ns1.lab', apiKeys: ['key-alice'] }],
};
const key = 'key-alice';
const byoi = '/dedicated/server/ns1.lab/bringYourOwnImage';
const body = { URL: 'http://images.example/disk.raw?sig=secret-query-value', type: 'raw' };
const dir = mkdtempSync(join(tmpdir(), 'byoi-lifecycle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let api: TestApi;
let boot: RecordingBoot;
let db: string;
let n = 0;
beforeEach(async () => {
  db = join(dir, `api-${n++}.sqlite`);
  boot = new RecordingBoot();
  api = await startApi(config, db, boot);
});
afterEach(async () => {
  await api?.close().catch(() => {});
});

const status = async () => (await call(api.url, 'GET', byoi, { key })).body;
const task = async (id: number) => (await call(api.url, 'GET', `/dedicated/server/ns1.lab/task/${id}`, { key })).body;
const netboot = async () => (await fetch(`${api.url}/boot/v1/servers/ns1.lab/ipxe`)).text();
const tokenIn = (script: string) => /byoi\.token=([0-9a-f]{64})/.exec(script)?.[1];

function agent(token: string, pipeline: Pipeline, extra: Partial<AgentOptions> = {}): Promise<void> {
  const run = runAgent({
    settings: { server: api.url, serviceName: 'ns1.lab', token },
    overrides: { disk: '/dev/loop-test' },
    pipeline,
    jobTimeoutMs: 5000,
    deliverTimeoutMs: 5000,
    backoff: { initialDelay: 20, maxDelay: 100 },
    reboot: async () => {},
    disksReport: async () => ({ disks: [], groups: [] }),
    ...extra,
  });
  run.catch(() => {});
  return run;
}

const deploys: Pipeline = async (_job, report) => {
  report.phase('write', 'Writing image on /dev/loop-test', 100);
  report.done('Image deployed on /dev/loop-test');
};

describe('the watchdog', () => {
  it("ends a deployment not heard from in time with a message saying so; its server netboots rescue; the agent's own outcome still wins", async () => {
    expect((await call(api.url, 'POST', byoi, { key, body })).status).toBe(200);
    const { id } = (await api.store.current('ns1.lab'))!;
    const watchdog = { store: api.store, silenceMs: 600_000 };
    expect(await watchdogRound(watchdog)).toBe(0); // heard from at the start: not silent yet
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    const slow = agent(boot.boots[0]!.token, async (_job, report) => {
      report.phase('write', 'Writing image on /dev/loop-test', 100);
      await resumed;
      report.done('Image deployed on /dev/loop-test');
    });
    while ((await status()).phase !== 'write') await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await watchdogRound(watchdog, Date.now() + 601_000)).toBe(1);
    expect(await status()).toMatchObject({ status: 'error', message: agentSilent(600).message });
    expect((await task(id)).status).toBe('ovhError');
    expect(await netboot()).toContain('byoi.rescue=1');
    // The agent was only slow: it delivers done, which replaces the watchdog's guess.
    resume();
    await slow;
    expect(await status()).toMatchObject({ status: 'done', message: 'Image deployed on /dev/loop-test' });
    expect((await task(id)).status).toBe('done');
    expect(await netboot()).toContain('sanboot');
  });

  it('keeps no state in memory: replicas over one database end each silent deployment once, and a restart finds it', async () => {
    expect((await call(api.url, 'POST', byoi, { key, body })).status).toBe(200);
    // Two other processes, each a replica's watchdog over the same database, an hour later.
    const replica = `
      const { openStore } = await import(${JSON.stringify(new URL('../../lib/api/store/open.ts', import.meta.url).href)});
      const { watchdogRound } = await import(${JSON.stringify(new URL('../../lib/api/watchdog.ts', import.meta.url).href)});
      const store = await openStore(${JSON.stringify(db)});
      process.stdout.write(String(await watchdogRound({ store, silenceMs: 60000 }, Date.now() + 3600000)));
      await store.close();`;
    const ended = await Promise.all(
      [0, 1].map(() => run(process.execPath, ['--input-type=module', '-e', replica]).then((r) => Number(r.stdout))),
    );
    expect(ended.sort()).toEqual([0, 1]);
    expect(await status()).toMatchObject({ status: 'error', message: agentSilent(60).message });
  });
});

describe('an outcome the agent could not deliver before rebooting', () => {
  it('is delivered by the agent of the next netboot, whose fresh token voids the last one; then the server boots its disk', async () => {
    expect(await netboot()).toContain('sanboot'); // nothing to do yet: the local disk
    expect((await call(api.url, 'POST', byoi, { key, body })).status).toBe(200);
    const script = await netboot();
    // The config gives the rescue's kernel and initrd as URLs: the script points at them as they are.
    expect(script).toContain('kernel http://boot.lab/vmlinuz initrd=initrd.img byoi.server=');
    expect(script).toContain('initrd --name initrd.img http://boot.lab/initrd.img');
    const first = tokenIn(script)!;
    expect(first).toBeDefined();
    // The agent finishes while the API is down, waits its bounded time, and reboots all the same.
    const port = api.port;
    let rebooted = false;
    const stalled: Pipeline = async (job, report) => {
      report.phase('write', 'Writing image on /dev/loop-test', 100);
      await api.close();
      report.done('Image deployed on /dev/loop-test');
    };
    await agent(first, stalled, { deliverTimeoutMs: 300, reboot: async () => void (rebooted = true) });
    expect(rebooted).toBe(true);
    api = await startApi(config, db, boot, port);
    expect(await status()).toMatchObject({ status: 'doing' });

    // The reboot netboots: the rescue again, with a new token; the old one is refused.
    const second = tokenIn(await netboot())!;
    expect(second).not.toBe(first);
    expect((await call(api.url, 'GET', '/agent/v1/servers/ns1.lab/job', { key: first })).status).toBe(403);
    await agent(second, deploys);
    expect(await status()).toMatchObject({ status: 'done' });
    expect(await netboot()).toMatch(/sanboot --no-describe --drive 0x80/);
  });

  it('is settled in error (ovhError) once the server has netbooted too often without one, and the server goes to rescue', async () => {
    expect((await call(api.url, 'POST', byoi, { key, body })).status).toBe(200);
    const { id } = (await api.store.current('ns1.lab'))!;
    expect(tokenIn(await netboot())).toBeDefined();
    expect(tokenIn(await netboot())).toBeDefined();
    const third = await netboot(); // netboot.maxBoots is 2
    expect(tokenIn(third)).toBeUndefined();
    expect(third).toContain('byoi.rescue=1');
    expect(await status()).toMatchObject({ status: 'error', message: agentLost(2).message });
    expect((await task(id)).status).toBe('ovhError');
  });
});

describe("errors: OVH's sentence in message, the redacted detail beside it, customerError or ovhError", () => {
  it.each([
    ['a wrong checksum', checksumMismatch('sha256', 'a'.repeat(64), 'b'.repeat(64)), 'customerError'],
    [
      'a bad URL',
      downloadFailed('http://images.example/disk.raw', {
        detail: 'HTTP 404 from http://images.example/disk.raw?sig=secret-query-value',
      }),
      'customerError',
    ],
    ['a too-big image', tooBigForMemory('raw'), 'customerError'],
    ['a refused image', noPartitionTable('ext4 filesystem'), 'customerError'],
    ['an unknown disk group', unknownDiskGroup(4, []), 'customerError'],
    [
      'a disk write error',
      cannotWriteImage('raw', 'EIO at 1048576 while writing http://images.example/disk.raw?sig=secret-query-value'),
      'ovhError',
    ],
    ['a failure of the lab', rereadFailed('/dev/sda', { detail: 'BLKRRPART: device busy' }), 'ovhError'],
  ])('%s', async (_what, error, expected) => {
    expect((await call(api.url, 'POST', byoi, { key, body })).status).toBe(200);
    const { id } = (await api.store.current('ns1.lab'))!;
    await agent(boot.boots[0]!.token, async (_job, report) => {
      report.phase('download', 'Downloading image', null);
      throw error;
    }).catch(() => undefined);
    const now = await status();
    expect(now).toMatchObject({ status: 'error', message: error.message });
    expect(now.detail).toBe(error.detail === undefined ? null : error.detail.replaceAll('secret-query-value', '***'));
    expect(JSON.stringify(now)).not.toContain('secret-query-value');
    expect((await task(id)).status).toBe(expected);
    expect(faultOf(error)).toBe(expected === 'customerError' ? 'customer' : 'lab');
    expect(await netboot()).toContain('byoi.rescue=1'); // an error leaves the server in rescue
  });
});
