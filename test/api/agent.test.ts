// byoi agent against a real API on 127.0.0.1: it takes its job, runs a pipeline (here one the test
// steers, phase by phase, through the real Reporter), and its outbox survives the API going away.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import type { AgentEvent } from '../../lib/api/store/types.ts';
import type { PhaseName } from '../../lib/report/phases.ts';
import { ByoiError, noPartitionTable, badAgentSettings, badDisk, jobUnavailable } from '../../lib/errors.ts';
import type { Job } from '../../lib/job.ts';
import type { Delivery } from '../../agent/remote/client.ts';
import { EventQueue } from '../../agent/remote/queue.ts';
import { runAgent, type AgentOptions, type Pipeline } from '../../agent/remote/run-agent.ts';
import { agentSettings, parseCmdline } from '../../agent/remote/settings.ts';
import type { Reporter } from '../../agent/reporter.ts';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';

const config: ApiConfig = { servers: [{ serviceName: 'ns1.lab', apiKeys: ['key-alice'] }] };
const body = {
  URL: 'http://images.example/disk.raw?sig=secret-query-value',
  type: 'raw',
  httpHeader: [{ key: 'X-Auth', value: 'header-secret-value' }],
};
const backoff = { initialDelay: 20, maxDelay: 100 };

const dir = mkdtempSync(join(tmpdir(), 'byoi-agent-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A promise the test resolves when it wants the pipeline to go on. */
function gate(): { open: () => void; passed: Promise<void> } {
  let open!: () => void;
  const passed = new Promise<void>((resolve) => (open = resolve));
  return { open, passed };
}

async function until(what: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

let api: TestApi;
let boot: RecordingBoot;
let db: string;
let n = 0;

beforeEach(async () => {
  db = join(dir, `agent-${n++}.sqlite`);
  boot = new RecordingBoot();
  api = await startApi(config, db, boot);
});
afterEach(async () => {
  await api?.close().catch(() => {});
});

const status = async () =>
  (await call(api.url, 'GET', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: 'key-alice' })).body;

/** POSTs the job; the lab "boots" by starting runAgent in this process with `pipeline`. */
async function deployWith(
  pipeline: Pipeline,
  extra: Partial<AgentOptions> = {},
): Promise<{ agent: Promise<void>; reboots: string[] }> {
  const reboots: string[] = [];
  let agent!: Promise<void>;
  boot.onBoot = async (context) => {
    agent = runAgent({
      settings: { server: context.serverUrl, serviceName: context.serviceName, token: context.token },
      overrides: { disk: '/dev/loop-test' },
      pipeline,
      jobTimeoutMs: 5000,
      deliverTimeoutMs: 20_000,
      backoff,
      // Records what the API knew at the moment of reboot.
      reboot: async () => {
        let known: string;
        try {
          known = (await api.store.current('ns1.lab'))?.status ?? 'nothing';
        } catch {
          known = 'API down';
        }
        reboots.push(known);
      },
      ...extra,
    });
    agent.catch(() => {}); // awaited by the test
  };
  expect(
    (await call(api.url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: 'key-alice', body })).status,
  ).toBe(200);
  return { agent, reboots };
}

describe('byoi agent with the API', () => {
  it('keeps deploying while the API is down, and delivers every step and the outcome once it is back; reboots after', async () => {
    const afterDownload = gate();
    const afterWrite = gate();
    let seenJob: Job | undefined;
    const pipeline: Pipeline = async (job, report: Reporter) => {
      seenJob = job;
      report.phase('download', 'Downloading image', 1000);
      report.progress(500, 1000);
      await afterDownload.passed;
      report.phase('write', 'Writing image on /dev/loop-test', 1000);
      report.progress(1000, 1000);
      await afterWrite.passed;
      report.done('Image deployed on /dev/loop-test');
    };
    const { agent, reboots } = await deployWith(pipeline);
    await until(async () => (await status()).phase === 'download');
    expect(seenJob).toMatchObject({
      url: body.URL,
      type: 'raw',
      target: { disk: '/dev/loop-test' },
      httpHeaders: { 'X-Auth': 'header-secret-value' },
      noReboot: true,
    });

    const port = api.port;
    await api.close();
    afterDownload.open();
    afterWrite.open();
    // The pipeline finishes while the API is away; the agent must hold its outcome and not reboot.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(reboots).toEqual([]);

    api = await startApi(config, db, boot, port);
    await agent;
    expect(reboots).toEqual(['done']);
    expect(await status()).toMatchObject({
      status: 'done',
      message: 'Image deployed on /dev/loop-test',
      phase: 'done',
    });
    const steps = (await call(api.url, 'GET', '/dedicated/server/ns1.lab/install/status', { key: 'key-alice' })).body
      .progress;
    expect(steps.map((s: { comment: string; status: string }) => [s.comment, s.status])).toEqual([
      ['Booting the server on the deployment agent', 'done'],
      ['Downloading image', 'done'],
      ['Writing image on /dev/loop-test', 'done'],
      ['Image deployed on /dev/loop-test', 'done'],
    ]);
  });

  it('reports a refused image with its exact message, scrubbed of secrets, and does not reboot', async () => {
    const pipeline: Pipeline = async (_job, report) => {
      report.phase('inspect', 'Inspecting image', null);
      throw noPartitionTable('ext4 filesystem', { detail: 'sent header-secret-value to secret-query-value' });
    };
    const { agent, reboots } = await deployWith(pipeline);
    await expect(agent).rejects.toMatchObject({
      kind: 'refused-image',
      message: noPartitionTable('ext4 filesystem').message,
    });
    expect(await status()).toMatchObject({
      status: 'error',
      message: noPartitionTable('ext4 filesystem').message,
      phase: 'inspect',
    });
    expect((await call(api.url, 'GET', '/dedicated/server/ns1.lab/task/1', { key: 'key-alice' })).body.status).toBe(
      'customerError',
    );
    expect(reboots).toEqual([]);
  });

  it('never lets a secret of the job reach the API', async () => {
    const pipeline: Pipeline = async (job) => {
      throw new Error(`socket hang up while sending X-Auth: ${job.httpHeaders['X-Auth']} to ${job.url}`);
    };
    const { agent } = await deployWith(pipeline);
    await expect(agent).rejects.toBeInstanceOf(ByoiError);
    const { message } = await status();
    expect(message).toMatch(/^Unexpected error: socket hang up/);
    expect(message).not.toContain('header-secret-value');
    expect(message).not.toContain('secret-query-value');
  });

  it('reports an invalid job (after local overrides) with the job validation message', async () => {
    const { agent } = await deployWith(async () => {}, { overrides: { disk: 'sda' } });
    await expect(agent).rejects.toMatchObject({ kind: 'invalid-job', message: badDisk().message });
    expect(await status()).toMatchObject({ status: 'error', message: badDisk().message });
  });

  it('waits a bounded time for delivery, then reboots anyway', async () => {
    const started = gate();
    const finish = gate();
    const { agent, reboots } = await deployWith(
      async (_job, report) => {
        report.phase('write', 'Writing image', 10);
        started.open();
        await finish.passed;
        report.done('Image deployed');
      },
      { deliverTimeoutMs: 300 },
    );
    await started.passed;
    await until(async () => (await status()).phase === 'write');
    await api.close();
    finish.open();
    await agent;
    expect(reboots).toEqual(['API down']);
    api = await startApi(config, db, boot);
    expect((await status()).status).toBe('doing');
  });

  it('stops sending once the deployment is erased (DELETE)', async () => {
    const finish = gate();
    const { agent } = await deployWith(async (_job, report) => {
      report.phase('write', 'Writing image', 10);
      await finish.passed;
      report.done('Image deployed');
    });
    await until(async () => (await status()).phase === 'write');
    expect(
      (await call(api.url, 'DELETE', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: 'key-alice' })).status,
    ).toBe(200);
    finish.open();
    await agent; // the outbox gives up at once instead of retrying a refused token
    expect((await status()).status).toBeNull();
  });

  it('gives up taking its job when the API never answers, with a clear message', async () => {
    await api.close();
    const settings = { server: api.url, serviceName: 'ns1.lab', token: 't'.repeat(43) };
    const run = runAgent({
      settings,
      overrides: {},
      pipeline: async () => {},
      jobTimeoutMs: 200,
      deliverTimeoutMs: 100,
      backoff,
    });
    await expect(run).rejects.toMatchObject({ message: jobUnavailable(api.url).message });
    api = await startApi(config, db, boot);
  });
});

describe('the outbox', () => {
  const event = (status: AgentEvent['status'], phase: PhaseName, done = 0): AgentEvent => ({
    status,
    message: phase,
    phase,
    progress: { done, total: 100, bytesPerSecond: 1 },
    at: new Date().toISOString(),
  });

  it('delivers in order, collapsing progress of one phase while the API is away, never the phase changes or outcome', async () => {
    const received: AgentEvent[][] = [];
    let reachable = false;
    const queue = new EventQueue(async (events): Promise<Delivery> => {
      if (!reachable) return 'retry';
      received.push([...events]);
      return 'delivered';
    }, backoff);
    queue.push(event('doing', 'download', 1));
    for (let done = 2; done <= 50; done++) queue.push(event('doing', 'download', done));
    queue.push(event('doing', 'write', 0));
    queue.push(event('doing', 'write', 70));
    queue.push(event('done', 'done'));
    queue.push(event('doing', 'boot-entry', 0));
    expect(await queue.drain(150)).toBe(false);
    reachable = true;
    expect(await queue.drain(5000)).toBe(true);
    const flat = received.flat();
    // The first event was on its way when the API turned out to be away: it is kept as it was.
    expect(flat.map((e) => [e.phase, e.status, e.progress?.done])).toEqual([
      ['download', 'doing', 1],
      ['download', 'doing', 50],
      ['write', 'doing', 70],
      ['done', 'done', 0],
      ['boot-entry', 'doing', 0],
    ]);
  });

  it('never changes an event that is being sent', async () => {
    const received: AgentEvent[][] = [];
    let release!: () => void;
    const queue = new EventQueue(async (events) => {
      received.push([...events]);
      if (received.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return 'delivered';
    }, backoff);
    queue.push(event('doing', 'write', 1));
    await until(async () => received.length === 1);
    queue.push(event('doing', 'write', 2));
    queue.push(event('doing', 'write', 3));
    release();
    await queue.drain(5000);
    expect(received.map((batch) => batch.map((e) => e.progress?.done))).toEqual([[1], [3]]);
  });
});

describe('agent settings', () => {
  it('reads byoi.server, byoi.service and byoi.token from the kernel command line; flags win', () => {
    const cmdline = join(dir, 'cmdline');
    writeFileSync(
      cmdline,
      'BOOT_IMAGE=/vmlinuz root=/dev/ram0 byoi.server=http://10.0.0.1:8080/ byoi.service=ns1.lab byoi.token=abc byoi.insecure=1 quiet\n',
    );
    expect(parseCmdline('a=1 byoi.token="q"')).toEqual({ token: 'q' });
    expect(agentSettings({}, cmdline)).toEqual({
      server: 'http://10.0.0.1:8080',
      serviceName: 'ns1.lab',
      token: 'abc',
    });
    expect(agentSettings({ token: 'flag' }, cmdline)).toEqual({
      server: 'http://10.0.0.1:8080',
      serviceName: 'ns1.lab',
      token: 'flag',
    });
    expect(() => agentSettings({ server: 'http://x' }, join(dir, 'absent'))).toThrow(
      badAgentSettings(['service name', 'token']).message,
    );
  });
});
