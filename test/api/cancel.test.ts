// DELETE reaches an agent that is not the API's child (every real lab: the boot command has long
// exited): the agent is spawned here as a lab would boot it, with its token in its environment, and
// left alone by DELETE. It learns of the cancellation from the API's answers (events, heartbeat) and
// stops at once: during the download the loop device is left byte for byte as it was; during the
// write (slowed by a blkio cgroup throttling this loop device, a real slow disk) it is left with no
// partition table. A token the API refuses stops the agent before anything is written.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootContext } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { DeploymentCancelled, jobUnavailable } from '../../lib/errors.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';
import { readAt, sha256Of } from '../helpers/deploy.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MiB = 2 ** 20;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const sh = (command: string, args: string[]) =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const key = 'key-alice';
const byoi = '/dedicated/server/ns1.lab/bringYourOwnImage';

interface Agent {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; at: number }>;
  stderr: string;
}

describe.skipIf(skipWithout('root', 'loop', 'sgdisk'))(
  'DELETE reaches an agent the API did not start, which stops at once',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-cancel-'));
    const image = join(dir, 'image.raw');
    // A cgroup (v1 blkio) whose members write the target at 4 MiB/s: the 32 MiB write lasts ~8 s.
    const cgroup = `/sys/fs/cgroup/blkio/byoi-cancel-${process.pid}`;
    let images: Server;
    let imagesUrl = '';
    let api: TestApi;
    let disk = '';
    let diskFile = '';
    const boot = new RecordingBoot();
    const agents: Agent[] = [];
    let throttled = false;

    beforeAll(async () => {
      assertCapable('root', 'loop', 'sgdisk');
      // A 40 MiB GPT disk image with 32 MiB of random data in its partition.
      sh('truncate', ['-s', `${40 * MiB}`, image]);
      sh('sgdisk', ['-n1:2048:+32M', '-t1:8300', image]);
      sh('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', 'seek=1', 'count=32', 'conv=notrunc', 'status=none']);
      const body = readFileSync(image);
      // /image.raw whole; /stalled.raw: half of it, then nothing (a download that never ends by itself).
      images = createServer((request, response) => {
        response.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
        if (request.url === '/image.raw') return void response.end(body);
        response.write(body.subarray(0, body.length / 2));
      });
      await new Promise<void>((listening) => images.listen(0, '127.0.0.1', listening));
      imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;

      diskFile = join(dir, 'disk.img');
      sh('dd', ['if=/dev/urandom', `of=${diskFile}`, 'bs=1M', 'count=64', 'status=none']);
      disk = attachLoop(diskFile);
      const [major, minor] = [Math.floor(statSync(disk).rdev / 256), statSync(disk).rdev % 256];
      mkdirSync(cgroup);
      writeFileSync(join(cgroup, 'blkio.throttle.write_bps_device'), `${major}:${minor} ${4 * MiB}\n`);
      const config: ApiConfig = { servers: [{ serviceName: 'ns1.lab', apiKeys: [key] }] };
      api = await startApi(config, join(dir, 'api.sqlite'), boot);
      // The lab boots the server: the agent runs on its own, with its token in the environment only.
      boot.onBoot = async (context) => void agents.push(spawnAgent(context));
    });

    afterAll(async () => {
      for (const agent of agents) agent.child.kill('SIGKILL');
      await Promise.all(agents.map((a) => a.exited));
      await api?.close();
      images?.closeAllConnections();
      images?.close();
      detachAllLoops();
      try {
        rmdirSync(cgroup);
      } catch {
        // not made
      }
      rmSync(dir, { recursive: true, force: true });
    });

    function spawnAgent(context: BootContext, token = context.token): Agent {
      const args = [
        join(repo, 'agent/byoi.ts'),
        'agent',
        '--insecure',
        '--server',
        context.serverUrl,
        '--service-name',
        context.serviceName,
        '--disk',
        disk,
        '--no-reboot',
        '--ram-size',
        String(4096 * MiB),
        '--heartbeat',
        '1',
        '--deliver-timeout',
        '10',
      ];
      // Into the throttled cgroup first when asked, then the agent (exec: same process).
      const child = spawn(
        'sh',
        ['-c', `${throttled ? `echo $$ > ${cgroup}/cgroup.procs; ` : ''}exec "$0" "$@"`, process.execPath, ...args],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { ...process.env, BYOI_AGENT_TOKEN: token },
        },
      );
      const agent: Agent = {
        child,
        stderr: '',
        exited: new Promise((resolve) => child.once('exit', (code) => resolve({ code, at: Date.now() }))),
      };
      child.stderr!.on('data', (chunk: Buffer) => (agent.stderr += chunk.toString()));
      return agent;
    }

    const status = async () => (await call(api.url, 'GET', byoi, { key })).body;
    const lastLine = (agent: Agent) => agent.stderr.trim().split('\n').at(-1);

    async function untilPhase(phase: string, agent: Agent): Promise<void> {
      const deadline = Date.now() + 60_000;
      while ((await status()).phase !== phase) {
        if (Date.now() > deadline)
          throw new Error(`phase ${phase} not reached: ${JSON.stringify(await status())}\n${agent.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }

    /** DELETE, then how long the agent took to end, and the task's status. */
    async function cancel(agent: Agent): Promise<{ seconds: number; code: number | null; task: string }> {
      const { id } = (await api.store.current('ns1.lab'))!;
      const asked = Date.now();
      expect((await call(api.url, 'DELETE', byoi, { key })).status).toBe(200);
      const { code, at } = await agent.exited;
      const task = (await call(api.url, 'GET', `/dedicated/server/ns1.lab/task/${id}`, { key })).body.status;
      return { seconds: (at - asked) / 1000, code, task };
    }

    it('during the download: the agent stops within seconds, the disk is unchanged, the task is cancelled; the token never was on its argv', async () => {
      const before = await sha256Of(disk);
      expect(
        (await call(api.url, 'POST', byoi, { key, body: { URL: `${imagesUrl}/stalled.raw`, type: 'raw' } })).status,
      ).toBe(200);
      const agent = agents.at(-1)!;
      await untilPhase('download', agent);
      // Issue 13: nobody reads the token in the process list.
      expect(readFileSync(`/proc/${agent.child.pid}/cmdline`, 'utf8')).not.toContain(boot.boots.at(-1)!.token);
      // The agent reported the server's disks when it started (the loop device named by --disk among them).
      const hardware = await call(api.url, 'GET', '/dedicated/server/ns1.lab/specifications/hardware', { key });
      expect(hardware.status).toBe(200);
      expect(hardware.body.disks.map((d: { path: string }) => d.path)).toContain(disk);
      const { seconds, code, task } = await cancel(agent);
      expect(code).toBe(1);
      expect(lastLine(agent)).toBe(new DeploymentCancelled('').message);
      expect(seconds).toBeLessThan(10); // a heartbeat a second, then a prompt exit
      expect(task).toBe('cancelled');
      expect(await sha256Of(disk)).toBe(before);
    });

    it('during the write: the agent stops within seconds and leaves the disk without a partition table', async () => {
      throttled = true;
      expect(
        (await call(api.url, 'POST', byoi, { key, body: { URL: `${imagesUrl}/image.raw`, type: 'raw' } })).status,
      ).toBe(200);
      const agent = agents.at(-1)!;
      await untilPhase('write', agent);
      const { seconds, code, task } = await cancel(agent);
      throttled = false;
      expect(code, agent.stderr).toBe(1);
      expect(lastLine(agent)).toBe(new DeploymentCancelled('').message);
      expect(seconds).toBeLessThan(10);
      expect(task).toBe('cancelled');
      // No MBR, no GPT, no backup GPT: the first MiB is the writer's last write, and it never came.
      const size = statSync(diskFile).size;
      expect(readAt(disk, 0, MiB).equals(Buffer.alloc(MiB))).toBe(true);
      expect(readAt(disk, size - MiB, MiB).equals(Buffer.alloc(MiB))).toBe(true);
      expect(spawnSync('blkid', ['-p', '-o', 'export', disk], { encoding: 'utf8' }).stdout).not.toContain('PTTYPE');
      // It was stopped part way: the image's data did not all land.
      expect(readAt(disk, MiB, 32 * MiB).equals(readAt(image, MiB, 32 * MiB))).toBe(false);
    });

    it('a token the API refuses stops the agent before it writes anything', async () => {
      const before = await sha256Of(disk);
      const agent = spawnAgent({ serverUrl: api.url, serviceName: 'ns1.lab', token: 'f'.repeat(64) });
      agents.push(agent);
      const { code } = await agent.exited;
      expect(code).toBe(1);
      expect(lastLine(agent)).toBe(jobUnavailable(`${api.url}/agent/v1/servers/ns1.lab/job`).message);
      expect(await sha256Of(disk)).toBe(before);
    });
  },
);
