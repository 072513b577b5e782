// The whole loop on one machine: a customer POSTs a job to the API, the API boots its server by
// spawning `byoi agent` (the lab's boot command), the agent downloads a GPT image made by sgdisk (and
// its qcow2 by qemu-img) from an HTTP server on 127.0.0.1 and writes it onto a loop device this test attached, and the
// customer's GET goes from doing to done. A bad image ends in error with the agent's exact message.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandBootAdapter } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { call, startApi, type TestApi } from '../helpers/api.ts';
import { readAt, sh, sha256Of, sha256OfFile } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { agentCommand, makeGptImages } from '../helpers/agent-lab.ts';
import { detachAllLoops } from '../helpers/loop.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 2 ** 20;

describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))(
  'the provisioning loop: API, spawned agent, loop device',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-e2e-'));
    let images: TestServer;
    let api: TestApi;
    let disk: string;
    const boot = { current: undefined as CommandBootAdapter | undefined };
    const raw = join(dir, 'image.raw');
    const qcow2 = join(dir, 'image.qcow2');

    beforeAll(async () => {
      assertCapable('root', 'loop', 'qemu-img', 'sgdisk');
      // A 48 MiB GPT disk image with random data in its partition, as qcow2.
      makeGptImages(raw, qcow2, 48, 32);
      images = await startServer();
      images.serve('/image.qcow2', { body: readFileSync(qcow2) });
      images.serve('/image.raw', { body: readFileSync(raw) });

      // The target: a 96 MiB loop device full of old data.
      disk = garbageLoop(join(dir, 'disk.img'), 96 * MiB);

      const config: ApiConfig = {
        servers: [
          {
            serviceName: 'ns1.lab',
            apiKeys: ['key-alice'],
            boot: {
              command: agentCommand(disk, { insecure: true }),
              logFile: join(dir, 'agent-{service}.log'),
            },
          },
        ],
      };
      boot.current = new CommandBootAdapter(config.servers);
      api = await startApi(config, join(dir, 'api.sqlite'), boot.current);
    });

    afterAll(async () => {
      await boot.current?.rescue('ns1.lab');
      await api?.close();
      await images?.close();
      detachAllLoops();
      rmSync(dir, { recursive: true, force: true });
    });

    const status = async () =>
      (await call(api.url, 'GET', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: 'key-alice' })).body;

    async function finalStatus(): Promise<{ seen: string[]; last: Record<string, unknown> }> {
      const seen: string[] = [];
      const deadline = Date.now() + 90_000;
      for (;;) {
        const now = await status();
        if (now.status === 'doing' && seen.at(-1) !== now.phase) seen.push(now.phase);
        if (now.status !== 'doing') return { seen, last: now };
        if (Date.now() > deadline)
          throw new Error(`still doing: ${JSON.stringify(now)}; the agent's log:\n${agentLog()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }

    const agentLog = () => readFileSync(join(dir, 'agent-ns1.lab.log'), 'utf8');
    /** The agent's last stderr line: the message it ended with. */
    const agentLastLine = () =>
      agentLog()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .at(-1);

    it.each<[string, () => object, () => string | RegExp]>([
      [
        'a wrong checksum',
        () => ({ URL: `${images.url}/image.qcow2`, type: 'qcow2', checkSum: '0'.repeat(64), checkSumType: 'sha256' }),
        () => `Bad sha256 for downloaded file, got: ${sha256OfFile(qcow2)} while expecting ${'0'.repeat(64)}.`,
      ],
      [
        'a raw image declared qcow2',
        () => ({ URL: `${images.url}/image.raw`, type: 'qcow2' }),
        () => /^image provided format is \S+ which does not match expected qcow2 format$/,
      ],
    ])(
      "refuses %s: GET says error with the agent's exact message, and the disk is untouched",
      async (_what, body, expected) => {
        writeFileSync(join(dir, 'agent-ns1.lab.log'), '');
        const before = await sha256Of(disk);
        expect(
          (
            await call(api.url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', {
              key: 'key-alice',
              body: body(),
            })
          ).status,
        ).toBe(200);
        const { last } = await finalStatus();
        expect(last).toMatchObject({ status: 'error', servername: 'ns1.lab' });
        // The agent delivers its final status first, then ends with the message as its last line.
        await expect.poll(agentLastLine, { timeout: 15_000 }).toBe(last.message);
        expect(last.message).toMatch(expected());
        expect(await sha256Of(disk)).toBe(before);
      },
    );

    it('deploys: POST, GET doing, GET done, every step delivered; the disk holds the image and its GPT is clean', async () => {
      const checksum = sha256OfFile(qcow2);
      const body = {
        URL: `${images.url}/image.qcow2`,
        type: 'qcow2',
        checkSum: checksum,
        checkSumType: 'sha256',
        description: 'e2e',
      };
      expect(
        (await call(api.url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: 'key-alice', body })).status,
      ).toBe(200);
      const { seen, last } = await finalStatus();
      expect(seen[0]).toBe('boot');
      expect(last).toMatchObject({ status: 'done', checksum, servername: 'ns1.lab', phase: 'done' });
      expect(last.message).toContain(disk);
      // The partition's data is the image's, byte for byte; the GPT verifies with its backup at the end.
      expect(readAt(disk, MiB, 32 * MiB).equals(readAt(raw, MiB, 32 * MiB))).toBe(true);
      expect(sh('sgdisk', ['-v', disk])).toContain('No problems found');
      const steps = (await call(api.url, 'GET', '/dedicated/server/ns1.lab/install/status', { key: 'key-alice' })).body
        .progress;
      expect(steps.length).toBeGreaterThanOrEqual(4);
      expect(steps.every((s: { status: string }) => s.status === 'done')).toBe(true);
    });

    it('lets a reinstall follow the same path, as a task', async () => {
      writeFileSync(join(dir, 'agent-ns1.lab.log'), '');
      const body = {
        operatingSystem: 'byoi_64',
        customizations: {
          imageURL: `${images.url}/image.raw`,
          imageType: 'raw',
          efiBootloaderPath: '\\EFI\\BOOT\\BOOTX64.EFI',
        },
      };
      const task = (await call(api.url, 'POST', '/dedicated/server/ns1.lab/reinstall', { key: 'key-alice', body }))
        .body;
      expect(task).toMatchObject({ function: 'reinstallServer', status: 'init' });
      const { last } = await finalStatus();
      expect(last).toMatchObject({ status: 'done' });
      expect(
        (await call(api.url, 'GET', `/dedicated/server/ns1.lab/task/${task.taskId}`, { key: 'key-alice' })).body,
      ).toMatchObject({ status: 'done', doneDate: expect.any(String) });
      expect(readAt(disk, MiB, 32 * MiB).equals(readAt(raw, MiB, 32 * MiB))).toBe(true);
    });
  },
);
