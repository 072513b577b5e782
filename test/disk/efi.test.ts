// UEFI boot: the image's EFI system partition and bootloader checked before the write, the boot
// entry made after it, first in BootOrder, replacing byoi's older one; nothing on legacy BIOS.
// The firmware is injected (this machine boots with BIOS and has no EFI variables); images are
// made by sgdisk, mkfs.fat and mtools, and deployed onto loop devices by the real pipeline.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../agent/deploy.ts';
import { Reporter } from '../../agent/reporter.ts';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { installBootEntry, parseEfibootmgr, planEfiBoot, type Platform } from '../../lib/disk/efi.ts';
import { normaliseLoaderPath } from '../../lib/disk/efi-path.ts';
import { ByoiError } from '../../lib/errors.ts';
import { guestReader } from '../../lib/formats/guest.ts';
import { readImageTable } from '../../lib/formats/image-partitions.ts';
import { openImage } from '../../lib/formats/open.ts';
import { validateJob } from '../../lib/job.ts';
import { StatusFile } from '../../lib/report/status.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { sha256Of } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { FakeBootManager } from '../helpers/efi.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
const LOADER = '\\EFI\\debian\\grubx64.efi';

function refusal(run: () => unknown): ByoiError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    return error as ByoiError;
  }
  throw new Error('not refused');
}

describe('UEFI boot entries', () => {
  it('reads efibootmgr', () => {
    const out =
      'BootCurrent: 0001\nTimeout: 0 seconds\nBootOrder: 0003,0001,0000\nBoot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)\nBoot0001* UEFI QEMU HARDDISK QM00001 \tPciRoot(0x0)/Pci(0x1,0x1)/Ata(0x0)\nBoot0003* byoi\tHD(1,GPT,5a1e...,0x800,0x8000)/File(\\EFI\\debian\\grubx64.efi)\nBoot0004  inactive one\nBoot0005* UEFI PXEv4 (MAC:525400123456)\tPciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,1)/IPv4(0.0.0.0,0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)\n';
    expect(parseEfibootmgr(out)).toEqual({
      order: ['0003', '0001', '0000'],
      entries: [
        { number: '0000', label: 'UiApp' },
        { number: '0001', label: 'UEFI QEMU HARDDISK QM00001' },
        { number: '0003', label: 'byoi' },
        { number: '0004', label: 'inactive one' },
        { number: '0005', label: 'UEFI PXEv4 (MAC:525400123456)', network: true },
      ],
    });
  });

  it("replaces byoi's older entry and puts the new one first in BootOrder, after the network boots that lead it", async () => {
    const manager = new FakeBootManager();
    const number = await installBootEntry(manager, '/dev/sda', { partition: 15, loader: LOADER });
    expect(manager.created).toEqual([{ disk: '/dev/sda', partition: 15, label: 'byoi', loader: LOADER }]);
    expect(manager.entries_.filter((e) => e.label === 'byoi').map((e) => e.number)).toEqual([number]);
    // The lab netboots first (its rescue after DELETE comes that way); then the deployed disk.
    expect(manager.order).toEqual(['0002', number, '0000']);
    const disk = new FakeBootManager();
    disk.order = ['0000', '0002', '0001'];
    const first = await installBootEntry(disk, '/dev/sda', { partition: 15, loader: LOADER });
    expect(disk.order).toEqual([first, '0000', '0002']);
  });

  it("a boot manager failure is the deployment's, in its own sentence", async () => {
    const manager = new FakeBootManager();
    manager.fail = true;
    const error = await installBootEntry(manager, '/dev/sda', { partition: 1, loader: LOADER }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).message).toBe('Could not create the UEFI boot entry.');
    expect((error as ByoiError).detail).toMatch(/No space left/);
  });

  it('efiBootloaderPath: an absolute path in the ESP, / or \\ separated', () => {
    expect(normaliseLoaderPath('/EFI/debian/shimx64.efi')).toBe('\\EFI\\debian\\shimx64.efi');
    expect(normaliseLoaderPath('\\EFI\\BOOT\\BOOTX64.EFI')).toBe('\\EFI\\BOOT\\BOOTX64.EFI');
    for (const bad of ['EFI/boot.efi', '/EFI/../x.efi', '/EFI//x.efi', '/', '/EFI/a:b.efi']) {
      expect(refusal(() => normaliseLoaderPath(bad)).message).toMatch(/^Bad efiBootloaderPath/);
    }
    expect(
      validateJob({ url: 'http://h/i.raw', type: 'raw', efiBootloaderPath: '/EFI/ubuntu/shimx64.efi' })
        .efiBootloaderPath,
    ).toBe('\\EFI\\ubuntu\\shimx64.efi');
    expect(refusal(() => validateJob({ url: 'http://h/i.raw', type: 'raw', efiBootloaderPath: 'grub.efi' })).kind).toBe(
      'invalid-job',
    );
  });
});

describe.skipIf(skipWithout('root', 'loop', 'mtools', 'sgdisk', 'qemu-img'))(
  'UEFI: the image checked before the write, the entry made after it',
  () => {
    let dir: string;
    let server: TestServer;
    const uefi = (manager = new FakeBootManager()): Platform & { bootManager: FakeBootManager } => ({
      uefi: true,
      bootManager: manager,
    });

    /** A GPT image: an ESP (EF00, FAT) holding only the named loader (no fallback), and a Linux partition. */
    function makeImage(name: string, esp: boolean): string {
      const file = join(dir, `${name}.raw`);
      writeFileSync(file, Buffer.alloc(40 * MiB));
      execFileSync(
        'sgdisk',
        ['-n', '1:2048:+16M', '-t', `1:${esp ? 'EF00' : '8300'}`, '-n', '2:0:0', '-t', '2:8300', file],
        { stdio: 'ignore' },
      );
      execFileSync('mkfs.fat', ['--offset', '2048', file, String(16 * 1024)], { stdio: 'ignore' });
      const fat = `${file}@@${MiB}`;
      execFileSync('mmd', ['-i', fat, '::/EFI', '::/EFI/debian'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
      writeFileSync(join(dir, 'loader.efi'), randomBytes(64 * 1024));
      execFileSync('mcopy', ['-i', fat, join(dir, 'loader.efi'), '::/EFI/debian/grubx64.efi'], {
        env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
      });
      execFileSync('qemu-img', ['convert', '-O', 'qcow2', file, join(dir, `${name}.qcow2`)]);
      server.serve(`/${name}.raw`, { body: readFileSync(file) });
      server.serve(`/${name}.qcow2`, { body: readFileSync(join(dir, `${name}.qcow2`)) });
      return file;
    }

    beforeAll(async () => {
      assertCapable('root', 'loop', 'mtools', 'sgdisk', 'qemu-img');
      dir = mkdtempSync(join(tmpdir(), 'byoi-efi-'));
      server = await startServer();
      makeImage('esp', true);
      makeImage('noesp', false);
    });
    afterEach(() => detachAllLoops());
    afterAll(async () => {
      await server?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function plan(
      name: string,
      type: 'raw' | 'qcow2',
      platform: Platform,
      options: { loaderPath?: string; check: boolean },
    ) {
      const source = await ChunkedBuffer.fromFile(join(dir, `${name}.${type}`));
      const image = openImage(source, type);
      const guest = guestReader(image, source);
      return planEfiBoot(platform, await readImageTable(guest), guest, 512, options);
    }

    for (const type of ['raw', 'qcow2'] as const) {
      it(`finds the ESP and the named loader in a ${type} image, case-insensitively as FAT does`, async () => {
        expect(await plan('esp', type, uefi(), { loaderPath: LOADER, check: true })).toEqual({
          partition: 1,
          loader: LOADER,
        });
        expect(await plan('esp', type, uefi(), { loaderPath: '\\efi\\DEBIAN\\GrubX64.EFI', check: true })).toEqual({
          partition: 1,
          loader: '\\efi\\DEBIAN\\GrubX64.EFI',
        });
      });

      it(`refuses a ${type} image without the fallback loader, or without an ESP; --no-efi-check lets it through`, async () => {
        await expect(plan('esp', type, uefi(), { check: true })).rejects.toThrow(
          'image provided has no EFI bootloader at \\EFI\\BOOT\\BOOTX64.EFI in its EFI system partition (partition 1).',
        );
        await expect(plan('noesp', type, uefi(), { loaderPath: LOADER, check: true })).rejects.toThrow(
          /^image provided has no EFI system partition/,
        );
        expect(await plan('noesp', type, uefi(), { loaderPath: LOADER, check: false })).toBeUndefined();
        expect(await plan('esp', type, uefi(), { check: false })).toBeUndefined();
      });
    }

    it('a boot manager that cannot list its entries fails before the write', async () => {
      const manager = new FakeBootManager();
      manager.entries = async () => {
        throw new Error('EFI variables are not supported on this system.');
      };
      const error = await plan('esp', 'raw', uefi(manager), { loaderPath: LOADER, check: true }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as ByoiError).message).toMatch(/^Could not read the UEFI boot entries/);
      expect((error as ByoiError).detail).toBe('EFI variables are not supported on this system.');
    });

    it('does nothing on legacy BIOS', async () => {
      expect(
        await plan('noesp', 'raw', { uefi: false, bootManager: new FakeBootManager() }, { check: true }),
      ).toBeUndefined();
    });

    async function deployWith(name: string, platform: Platform, fields: Record<string, unknown> = {}) {
      const file = join(dir, `${name}-${randomBytes(3).toString('hex')}.disk`);
      writeFileSync(file, randomBytes(64 * MiB));
      const device = attachLoop(file);
      const before = await sha256Of(device);
      const lines: string[] = [];
      const log = pino({ base: null }, { write: (line: string) => void lines.push(line) });
      const report = new Reporter(new StatusFile(undefined, (t) => t), log);
      const job = validateJob({
        url: `${server.url}/${name}.qcow2`,
        type: 'qcow2',
        disk: device,
        noReboot: true,
        ...fields,
      });
      const error = await deploy(job, report, {}, platform).then(
        () => undefined,
        (e: unknown) => e,
      );
      return { device, before, error, logs: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
    }

    it('a UEFI deployment: refused before the first write without the loader, disk unchanged', async () => {
      const platform = uefi();
      const { device, before, error } = await deployWith('esp', platform);
      expect((error as ByoiError).message).toBe(
        'image provided has no EFI bootloader at \\EFI\\BOOT\\BOOTX64.EFI in its EFI system partition (partition 1).',
      );
      expect(await sha256Of(device)).toBe(before);
      expect(platform.bootManager.created).toEqual([]);
    });

    it('a UEFI deployment with efiBootloaderPath: written, then the entry made for that disk, partition and file, first after the network boot', async () => {
      const platform = uefi();
      const { device, error, logs } = await deployWith('esp', platform, {
        efiBootloaderPath: '/EFI/debian/grubx64.efi',
      });
      expect(error).toBeUndefined();
      expect(platform.bootManager.created).toEqual([{ disk: device, partition: 1, label: 'byoi', loader: LOADER }]);
      const ours = platform.bootManager.entries_.filter((e) => e.label === 'byoi');
      expect(ours).toHaveLength(1); // the older byoi entry (0001) replaced
      expect(ours[0]!.number).not.toBe('0001');
      expect(platform.bootManager.order.slice(0, 2)).toEqual(['0002', ours[0]!.number]);
      expect(logs.some((l) => l.phase === 'boot-entry' && l.loader === LOADER)).toBe(true);
    });

    it('legacy BIOS: deployed, no entry, and the log says why', async () => {
      const platform: Platform & { bootManager: FakeBootManager } = { uefi: false, bootManager: new FakeBootManager() };
      const { error, logs } = await deployWith('noesp', platform);
      expect(error).toBeUndefined();
      expect(platform.bootManager.created).toEqual([]);
      expect(logs.some((l) => l.msg === 'legacy BIOS boot: no UEFI boot entry will be made')).toBe(true);
    });
  },
);
