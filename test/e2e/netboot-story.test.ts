// The whole loop as a lab with network boot runs it, in QEMU: the server is a VM whose firmware
// (SeaBIOS, and OVMF) netboots through iPXE (QEMU's NIC option ROM); QEMU's user-mode DHCP names
// `byoi serve`'s entry script as its boot file, which chains the script of the NIC's MAC. A customer
// POSTs a deployment and the lab power-cycles the server: it netboots the rescue system (kernel and
// initrd served by byoi serve) with a one-time token, the agent deploys the cloud image and reboots;
// the server netboots again and is sent to its disk, which boots, and cloud-init applies the config
// drive. Then DELETE power-cycles it, and it comes up in the rescue system without a job.
// The UEFI server is deployed through /reinstall with an image whose ESP lacks the fallback
// \EFI\BOOT\BOOTX64.EFI (its loader only at the job's efiBootloaderPath): its disk boots only
// through the boot entry the agent made, which the firmware's BootCurrent names in the booted system.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootAdapter } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import type { Store } from '../../lib/api/store/types.ts';
import type { Firmware } from '../../scripts/image/boot.ts';
import { ensureNamedLoaderImage, findEsp, NAMED_LOADER } from '../../scripts/image/named-loader.ts';
import { startQemu, type QemuRunning } from '../../scripts/vm/qemu.ts';
import { call } from '../helpers/api.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { expectCloudInitApplied, userDataScript } from '../helpers/boot-checks.ts';
import { sha256Of } from '../helpers/deploy.ts';
import { bootNumbers, bootVariablesScript, parseLoadOption } from '../helpers/efi-vars.ts';
import { blankDisk, consoleLog, prepareVmLab, serveToGuests, startLabApi } from '../helpers/vm-lab.ts';

const run = promisify(execFile);
const key = 'netboot-customer-9d4e2a7c1b6f3085e2d1c0b9a8f7e6d5';
const ovmf = { code: '/usr/share/OVMF/OVMF_CODE.fd', vars: '/usr/share/OVMF/OVMF_VARS.fd' };
const servers: Record<Firmware, { serviceName: string; mac: string }> = {
  bios: { serviceName: 'ns-bios.lab', mac: '52:54:00:b0:17:01' },
  uefi: { serviceName: 'ns-uefi.lab', mac: '52:54:00:b0:17:02' },
};
const cloudInitDone = /Cloud-init v\. \S+ finished at .*Datasource .*\n/;
const rescueWithoutJob = 'rescue: no byoi.server= on the kernel command line; not starting byoi agent';
const timerPanic = "Kernel panic - not syncing: IO-APIC + timer doesn't work!";

/**
 * The lab: each server is a VM with a disk, a NIC that netboots first and, under UEFI, its own
 * NVRAM. Starting a deployment or DELETE power-cycles it (as an IPMI/Redfish boot command does); the
 * server's reboots in between are its own (QEMU reboots the guest in place).
 */
class NetbootLab implements BootAdapter {
  bootUrl = '';
  readonly dir: string;
  readonly vms = new Map<string, QemuRunning>();
  readonly firmwareOf = new Map<string, Firmware>();
  readonly cycles = new Map<string, number>();
  /** How each VM ended, once it has: a server never powers itself off here (its reboots stay in QEMU). */
  readonly endings = new Map<QemuRunning, string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  disk(serviceName: string): string {
    return join(this.dir, `${serviceName}.img`);
  }

  async powerCycle(serviceName: string): Promise<void> {
    // Off first: the disk stays locked by QEMU until the old process has gone.
    const old = this.vms.get(serviceName);
    old?.stop();
    await old?.outcome;
    const firmware = this.firmwareOf.get(serviceName)!;
    const { mac } = servers[firmware];
    const cycle = (this.cycles.get(serviceName) ?? 0) + 1;
    this.cycles.set(serviceName, cycle);
    const args = [
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-cpu',
      'qemu64',
      '-smp',
      '1',
      '-m',
      '4096',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'stdio',
      // DHCP's boot file: iPXE fetches byoi serve's entry script over HTTP.
      '-netdev',
      `user,id=n0,ipv6=off,bootfile=${this.bootUrl}`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${mac},bootindex=0`,
      '-drive',
      `file=${this.disk(serviceName)},format=raw,if=none,id=d0,cache=unsafe`,
      '-device',
      'virtio-blk-pci,drive=d0,bootindex=1',
    ];
    if (firmware === 'uefi') {
      const vars = join(this.dir, `${serviceName}.vars.fd`);
      if (cycle === 1) copyFileSync(ovmf.vars, vars); // the server's NVRAM lives across power cycles
      args.push(
        '-drive',
        `if=pflash,format=raw,unit=0,readonly=on,file=${ovmf.code}`,
        '-drive',
        `if=pflash,format=raw,unit=1,file=${vars}`,
        // The lab's network has no IPv6: without this, after iPXE exits OVMF tries its PXEv6 and
        // HTTPv6 options (each waiting out its timeouts, minutes under TCG) before byoi's entry.
        '-fw_cfg',
        'name=opt/org.tianocore/IPv6Support,string=no',
      );
    }
    const vm = startQemu({ args, timeoutSeconds: 1800, onConsole: consoleLog(`netboot-${serviceName}-${cycle}`) });
    void vm.outcome.then((o) => this.endings.set(vm, `${o.end}, status ${o.status}: ${o.stderr}`));
    this.vms.set(serviceName, vm);
  }

  async boot(context: { serviceName: string }): Promise<void> {
    await this.powerCycle(context.serviceName);
  }

  async rescue(serviceName: string): Promise<void> {
    await this.powerCycle(serviceName);
  }
}

describe.skipIf(skipWithout('root', 'qemu', 'ssh-keygen', 'mtools'))(
  'a netbooting server: rescue, deployed, its disk, and rescue again after DELETE',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-netboot-e2e-'));
    const lab = new NetbootLab(dir);
    /** What each server deploys: the cloud image (SeaBIOS), its variant without the fallback loader (OVMF). */
    const deployed = {} as Record<Firmware, { sha256: string; url: string }>;
    let images: Server | undefined;
    let api: FastifyInstance | undefined;
    let store: Store | undefined;
    let apiUrl = '';
    let publicKey = '';
    const marker = `byoi-netboot-${randomBytes(6).toString('hex')}`;
    /** The first line of each iPXE script byoi serve answered, per MAC. */
    const answered = new Map<string, string[]>();
    const started = Date.now();

    beforeAll(async () => {
      assertCapable('root', 'qemu', 'ssh-keygen', 'mtools');
      const prepared = await prepareVmLab(dir, marker);
      const { image, rescue } = prepared;
      publicKey = prepared.publicKey;
      const imageSha256 = await sha256Of(image);
      const namedLoader = await ensureNamedLoaderImage(image, imageSha256);

      const { server, url: served } = await serveToGuests(
        new Map([
          ['/debian-12-byoi.qcow2', image],
          ['/debian-12-byoi-named-loader.qcow2', namedLoader],
        ]),
      );
      images = server;
      deployed.bios = { sha256: imageSha256, url: `${served}/debian-12-byoi.qcow2` };
      deployed.uefi = {
        sha256: await sha256Of(namedLoader),
        url: `${served}/debian-12-byoi-named-loader.qcow2`,
      };

      const config: ApiConfig = {
        // The PXE loader boots the compressed kernel (vmlinuz), beside the vmlinux QEMU's -kernel takes.
        netboot: {
          kernel: join(dirname(rescue.kernel), 'vmlinuz'),
          initrd: rescue.initrd,
          cmdline:
            'console=ttyS0 quiet mitigations=off cryptomgr.notests random.trust_cpu=on tsc=reliable 8250.nr_uarts=1',
        },
        servers: Object.values(servers).map(({ serviceName, mac }) => ({ serviceName, apiKeys: [key], macs: [mac] })),
      };
      let agentUrl: string;
      ({ api, store, apiUrl, agentUrl } = await startLabApi(config, join(dir, 'api.sqlite'), lab, (app) =>
        app.addHook('onSend', async (request, _reply, payload) => {
          // iPXE sends the MAC's colons escaped (%3A).
          const escaped = /^\/boot\/v1\/mac\/([^/]+)\/ipxe$/.exec(request.url)?.[1];
          const mac = escaped && decodeURIComponent(escaped).toLowerCase();
          if (mac && typeof payload === 'string')
            answered.set(mac, [...(answered.get(mac) ?? []), payload.split('\n')[1] ?? '']);
          return payload;
        }),
      ));
      lab.bootUrl = `${agentUrl}/boot/v1/ipxe`;
      for (const [firmware, { serviceName }] of Object.entries(servers) as [Firmware, { serviceName: string }][]) {
        lab.firmwareOf.set(serviceName, firmware);
        blankDisk(lab.disk(serviceName));
      }
    }, 30 * 60_000);

    afterAll(async () => {
      for (const vm of lab.vms.values()) vm.stop();
      await Promise.all([...lab.vms.values()].map((vm) => vm.outcome));
      await api?.close();
      await store?.close();
      images?.close();
      rmSync(dir, { recursive: true, force: true });
      process.stderr.write(`netboot story: ${Math.round((Date.now() - started) / 1000)} s\n`);
    });

    const route = (serviceName: string) => `/dedicated/server/${serviceName}/bringYourOwnImage`;

    /** Polls `what`; fails after the timeout, or at once when the server's QEMU ended by itself. */
    async function until(
      serviceName: string,
      what: () => Promise<boolean> | boolean,
      timeoutMs: number,
      why: () => string,
    ): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!(await what())) {
        if (Date.now() > deadline || lab.endings.get(lab.vms.get(serviceName)!)?.startsWith('exited'))
          throw new Error(why());
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }

    /**
     * The deployed disk has no fallback loader, only the named one; the firmware started the boot
     * option the agent made (label byoi, the deployed ESP's partition GUID, the named loader).
     */
    async function expectBootedThroughOurEntry(disk: string, console: string): Promise<void> {
      const esp = await findEsp(disk);
      const inEsp = async (file: string) =>
        (
          await run('mdir', ['-b', '-i', `${disk}@@${esp.offset}`, `::${file.replaceAll('\\', '/')}`], {
            env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
          }).catch(() => ({ stdout: '' }))
        ).stdout.trim() !== '';
      expect(await inEsp(NAMED_LOADER)).toBe(true);
      expect(await inEsp('\\EFI\\BOOT\\BOOTX64.EFI')).toBe(false);
      const variable = (name: string) => new RegExp(`${marker} ${name}=([0-9a-f]+)`).exec(console)?.[1];
      const current = bootNumbers(variable('BootCurrent') ?? '');
      expect(current, console.split('\n').slice(-60).join('\n')).toHaveLength(1);
      const option = variable(`Boot${current[0]}`);
      expect(option, `no Boot${current[0]} on the console`).toBeDefined();
      expect(parseLoadOption(option!), `BootOrder ${bootNumbers(variable('BootOrder') ?? '').join(',')}`).toEqual({
        description: 'byoi',
        partition: { number: esp.number, guid: esp.guid },
        file: NAMED_LOADER,
      });
    }

    // The two servers go through their stories at the same time: each TCG VM keeps one core busy.
    for (const firmware of ['bios', 'uefi'] as Firmware[]) {
      it.concurrent(
        `${firmware === 'bios' ? 'SeaBIOS' : 'OVMF'}: netboot rescue -> deployed -> netboot to the disk, cloud-init applied; DELETE -> rescue`,
        async () => {
          const { serviceName, mac } = servers[firmware];
          const tail = () => {
            const vm = lab.vms.get(serviceName);
            const ended = vm && lab.endings.get(vm);
            return `${(vm?.console() ?? '').split('\n').slice(-60).join('\n')}${ended ? `\nQEMU ended: ${ended}` : ''}`;
          };
          const hostname = `netboot-${firmware}`;
          const { url, sha256 } = deployed[firmware];
          // SeaBIOS: the legacy BYOI route. OVMF: /reinstall, whose customizations name the loader.
          const [path, body] =
            firmware === 'bios'
              ? [
                  route(serviceName),
                  {
                    URL: url,
                    type: 'qcow2',
                    checkSum: sha256,
                    checkSumType: 'sha256',
                    description: 'netboot e2e',
                    configdrive: { enable: true, hostname, sshKey: publicKey, userData: userDataScript(marker) },
                  },
                ]
              : [
                  `/dedicated/server/${serviceName}/reinstall`,
                  {
                    operatingSystem: 'byoi_64',
                    customizations: {
                      imageURL: url,
                      imageType: 'qcow2',
                      imageCheckSum: sha256,
                      imageCheckSumType: 'sha256',
                      efiBootloaderPath: NAMED_LOADER,
                      hostname,
                      sshKey: publicKey,
                      configDriveUserData: userDataScript(marker) + bootVariablesScript(marker),
                    },
                  },
                ];
          expect((await call(apiUrl, 'POST', path, { key, body })).status).toBe(200);
          let last: Record<string, unknown> = {};
          await until(
            serviceName,
            async () => {
              last = (await call(apiUrl, 'GET', route(serviceName), { key })).body;
              return last.status !== 'doing';
            },
            1500_000,
            () => `still ${JSON.stringify(last)}\n${tail()}`,
          );
          expect(last, tail()).toMatchObject({ status: 'done', checksum: sha256, servername: serviceName });
          const since = Date.now();
          const say = (what: string) =>
            process.stderr.write(
              `${serviceName}: ${what} (${Math.round((Date.now() - started) / 1000)} s after the start)\n`,
            );
          say('deployed');

          // The agent rebooted the server; it netboots again and is sent to its disk, which boots. Under
          // TCG on a loaded host the guest kernel's IO-APIC timer check can starve (QEMU's timer thread
          // gets no CPU in time) and panic: the lab power-cycles such a server, up to twice.
          let vm = lab.vms.get(serviceName)!;
          let cycles = 0;
          await until(
            serviceName,
            async () => {
              if (vm.console().includes(timerPanic) && cycles < 2) {
                cycles++;
                process.stderr.write(
                  `${serviceName}: the guest kernel's timer check panicked under TCG; power cycle ${cycles}\n`,
                );
                await lab.powerCycle(serviceName);
                vm = lab.vms.get(serviceName)!;
              }
              return cloudInitDone.test(vm.console());
            },
            900_000,
            () => `no cloud-init on the deployed disk\n${tail()}`,
          );
          say(`its disk booted and cloud-init finished in ${Math.round((Date.now() - since) / 1000)} s`);
          expectCloudInitApplied(vm.console(), { firmware, marker, hostname, publicKey, configDrive: '/dev/vda4' });
          if (firmware === 'uefi') await expectBootedThroughOurEntry(lab.disk(serviceName), vm.console());
          expect(
            answered.get(mac)?.map((line) => line.replace(/^echo byoi: \S+: /, '')),
            JSON.stringify(answered.get(mac)),
          ).toEqual([
            'deploying (rescue system with the agent)',
            ...Array<string>(cycles + 1).fill('booting the local disk'),
          ]);

          // DELETE: the server is power-cycled and comes up in the rescue system, without a job.
          expect((await call(apiUrl, 'DELETE', route(serviceName), { key })).status).toBe(200);
          const rescued = lab.vms.get(serviceName)!;
          expect(rescued).not.toBe(vm);
          await until(
            serviceName,
            () => rescued.console().includes(rescueWithoutJob),
            900_000,
            () => `no rescue system after DELETE\n${tail()}`,
          );
          expect(answered.get(mac)?.at(-1)).toBe(`echo byoi: ${serviceName}: rescue mode`);
          say('in rescue after DELETE');
          rescued.stop();
        },
        3600_000,
      );
    }
  },
);
