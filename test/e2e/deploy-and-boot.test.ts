// The whole system as a data centre runs it, in QEMU: a customer POSTs a deployment to the
// provisioning API (byoi's own, on the host's loopback); the lab "PXE-boots" the server, a VM with
// a blank disk, into the rescue system (scripts/rescue/build-rescue.sh) with the API, the server's
// name and the deployment's token on the kernel command line; `byoi agent` takes its job, downloads
// the cloud image (scripts/image/build-cloud-image.sh) from this test's HTTP server, writes it with a
// config drive, reports done and reboots, which ends QEMU. Then the server boots its disk, once with
// SeaBIOS and once with OVMF, and cloud-init applies the config drive. A wrong checksum ends in
// OVH's error and leaves the disk as it was.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootAdapter, BootContext } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import type { Store } from '../../lib/api/store/types.ts';
import { checksumMismatch } from '../../lib/errors.ts';
import { bootDisk, type Firmware } from '../../scripts/image/boot.ts';
import { bootRescue, type Rescue } from '../../scripts/rescue/boot.ts';
import type { QemuOutcome, QemuRunning } from '../../scripts/vm/qemu.ts';
import { call } from '../helpers/api.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { expectCloudInitApplied, userDataScript } from '../helpers/boot-checks.ts';
import { sha256Of } from '../helpers/deploy.ts';
import { blankDisk, consoleLog, prepareVmLab, serveToGuests, startLabApi } from '../helpers/vm-lab.ts';

const run = promisify(execFile);
const key = 'e2e-customer-key';
// The server's NIC in the rescue system; its disk boots with another one, which the agent never saw:
// without a network configuration the config drive names no NIC, and cloud-init takes DHCP on the first.
const mac = '52:54:00:b0:01:e2';
const diskMac = '52:54:00:b0:01:e3';

/** The lab: "PXE-booting" a server is booting the rescue system in QEMU with that server's disk. */
class QemuLab implements BootAdapter {
  system: Rescue | undefined;
  readonly disks = new Map<string, string>();
  readonly vms = new Map<string, QemuRunning>();

  async boot(context: BootContext): Promise<void> {
    const disk = this.disks.get(context.serviceName);
    if (!this.system || !disk) throw new Error(`no rescue system or disk for ${context.serviceName}`);
    this.vms.set(
      context.serviceName,
      bootRescue({
        rescue: this.system,
        disks: [disk],
        mac,
        // RAM - 3 GiB must hold the download (the qcow2, a few hundred MiB): 4 GiB leaves ~0.8 GiB.
        memoryMiB: 4096,
        timeoutSeconds: 900,
        onConsole: consoleLog(`rescue-${context.serviceName}`),
        // Plain HTTP over QEMU's user network, allowed explicitly (byoi.insecure=1).
        cmdline: [
          `byoi.server=${context.serverUrl}`,
          `byoi.service=${context.serviceName}`,
          `byoi.token=${context.token}`,
          'byoi.insecure=1',
        ],
      }),
    );
  }

  async rescueMode(serviceName: string): Promise<QemuOutcome | undefined> {
    const vm = this.vms.get(serviceName);
    this.vms.delete(serviceName);
    vm?.stop();
    return vm?.outcome;
  }

  async rescue(serviceName: string): Promise<void> {
    await this.rescueMode(serviceName);
  }
}

describe.skipIf(skipWithout('root', 'qemu', 'ssh-keygen'))(
  'a server PXE-boots the rescue system, byoi agent deploys its job, the server boots the result',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-e2e-'));
    const lab = new QemuLab();
    let image = '';
    let imageSha256 = '';
    let images: Server | undefined;
    let imageUrl = '';
    let api: FastifyInstance | undefined;
    let store: Store | undefined;
    let apiUrl = '';
    let publicKey = '';
    const marker = `byoi-e2e-${randomBytes(6).toString('hex')}`;
    const hostname = 'e2e-deployed-node';

    beforeAll(async () => {
      assertCapable('root', 'qemu', 'ssh-keygen');
      // The agent as shipped: this checkout bundled, in the rescue system built around it.
      ({ image, rescue: lab.system, publicKey } = await prepareVmLab(dir, marker));
      imageSha256 = await sha256Of(image);

      const served = await serveToGuests(new Map([['/debian-12-byoi.qcow2', image]]));
      images = served.server;
      // The guest reaches the host's loopback at 10.0.2.2 (QEMU's user-mode network).
      imageUrl = `${served.url}/debian-12-byoi.qcow2`;

      // `byoi serve` with this lab as its boot adapter, agents told to come through 10.0.2.2.
      const config: ApiConfig = {
        servers: ['ns-refused.lab', 'ns-deployed.lab'].map((serviceName) => ({
          serviceName,
          apiKeys: [key],
          boot: { command: ['unused'] },
        })),
      };
      ({ api, store, apiUrl } = await startLabApi(config, join(dir, 'api.sqlite'), lab));
    }, 30 * 60_000);

    afterAll(async () => {
      await Promise.all([...lab.vms.keys()].map((name) => lab.rescueMode(name)));
      await api?.close();
      await store?.close();
      images?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const route = (serviceName: string) => `/dedicated/server/${serviceName}/bringYourOwnImage`;

    /** POSTs the deployment as a customer does, then GETs its status until it is no longer doing. */
    async function deploy(serviceName: string, body: object, timeoutMs: number): Promise<Record<string, unknown>> {
      const posted = await call(apiUrl, 'POST', route(serviceName), { key, body });
      expect(posted.status, JSON.stringify(posted.body)).toBe(200);
      const deadline = Date.now() + timeoutMs;
      const vm = lab.vms.get(serviceName);
      let ended: QemuOutcome | undefined;
      for (;;) {
        const { body: now } = await call(apiUrl, 'GET', route(serviceName), { key });
        if (now.status !== 'doing') return now;
        // A VM that ended before the API heard the outcome (asked once more after it ended) crashed.
        if (ended)
          throw new Error(
            `the server's VM ended (${ended.end}, status ${ended.status}) while the API says ${JSON.stringify(now)}\n${ended.console.split('\n').slice(-60).join('\n')}`,
          );
        if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(now)} after ${timeoutMs / 1000} s`);
        ended = await Promise.race([
          vm!.outcome,
          new Promise<undefined>((wait) => setTimeout(() => wait(undefined), 2000)),
        ]);
      }
    }

    // The four tests start together: the two servers deploy at the same time, then the deployed disk
    // boots under both firmwares at the same time. Each TCG VM keeps one core busy, and these are
    // the suite's longest minutes.
    it.concurrent(
      'reports a wrong checksum as OVH does, stays in rescue, and leaves the disk unchanged',
      async () => {
        const disk = blankDisk(join(dir, 'refused.img'));
        writeFileSync(disk, randomBytes(1024 * 1024), { flag: 'r+' });
        const before = await sha256Of(disk);
        lab.disks.set('ns-refused.lab', disk);
        const wrong = imageSha256.replace(/^./, (c) => (c === '0' ? '1' : '0'));
        const status = await deploy(
          'ns-refused.lab',
          { URL: imageUrl, type: 'qcow2', checkSum: wrong, checkSumType: 'sha256' },
          840_000,
        );
        expect(status).toMatchObject({
          status: 'error',
          servername: 'ns-refused.lab',
          message: checksumMismatch('sha256', imageSha256, wrong).message,
        });
        // The server stays in rescue until the customer erases the deployment (DELETE powers it off here).
        const vm = lab.vms.get('ns-refused.lab')!;
        // The API hears the error before the agent has exited: wait for the rescue system to say so.
        const staying = 'byoi agent ended with status 1 without rebooting; staying in rescue';
        await expect.poll(() => vm.console(), { timeout: 120_000, interval: 1000 }).toContain(staying);
        expect((await call(apiUrl, 'DELETE', route('ns-refused.lab'), { key })).status).toBe(200);
        const outcome = await vm.outcome;
        expect(outcome.end).toBe('stopped');
        expect(outcome.console).not.toContain('reboot: Restarting system');
        expect(await sha256Of(disk)).toBe(before);
      },
      900_000,
    );

    // A deployment with a config drive: done, reboot, then its disk boots.
    const disk = join(dir, 'deployed.img');
    let deployment: Promise<void> | undefined;

    const deployed = () =>
      (deployment ??= (async () => {
        blankDisk(disk);
        lab.disks.set('ns-deployed.lab', disk);
        const body = {
          URL: imageUrl,
          type: 'qcow2',
          checkSum: imageSha256,
          checkSumType: 'sha256',
          description: 'e2e',
          configdrive: { enable: true, hostname, sshKey: publicKey, userData: userDataScript(marker) },
        };
        const status = await deploy('ns-deployed.lab', body, 840_000);
        expect(status).toMatchObject({ status: 'done', checksum: imageSha256, servername: 'ns-deployed.lab' });
        // Once the outcome is delivered the agent reboots: the kernel restarts the machine, which
        // QEMU (-no-reboot) answers by exiting cleanly. Not a crash, not the timeout.
        const outcome = await lab.vms.get('ns-deployed.lab')!.outcome;
        expect(outcome, outcome.console.split('\n').slice(-40).join('\n')).toMatchObject({ end: 'exited', status: 0 });
        expect(outcome.console).toMatch(/reboot: Restarting system\n/);
        expect(outcome.console).not.toMatch(/Kernel panic|BUG:|Oops/);
        // The disk now holds the image's partitions and, at its end, the config drive.
        const { stdout } = await run('sgdisk', ['-v', disk]);
        expect(stdout).toContain('No problems found');
      })());

    it.concurrent('is reported done, and the server reboots', deployed, 900_000);

    for (const firmware of ['bios', 'uefi'] as Firmware[]) {
      it.concurrent(
        `boots through ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF'} and cloud-init applies the config drive`,
        async () => {
          await deployed().catch(() => expect.fail('the deployment failed (its own test says why)'));
          const { console } = await bootDisk({
            firmware,
            // Each boot is the first one of this deployment: the disk file is left as byoi wrote it.
            disks: [{ file: disk, snapshot: true }],
            nicMacs: [diskMac],
            until: /Cloud-init v\. \S+ finished at .*Datasource .*\n/,
            timeoutSeconds: 840,
            onConsole: consoleLog(`boot-${firmware}`),
          });
          // The partition byoi added after the image's three.
          expectCloudInitApplied(console, { firmware, marker, hostname, publicKey, configDrive: '/dev/vda4' });
        },
        1800_000,
      );
    }
  },
);
