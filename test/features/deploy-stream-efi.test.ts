// The streaming mode on a UEFI server, onto garbage-filled loop devices (the firmware injected, as in
// test/disk/efi.test.ts): an image without an EFI system partition is refused from its held-back
// first MiB before anything is written (raw) or before that MiB is written (qcow2); the loader is
// looked for on the disk once the body is written, and without it the deployment stops there,
// leaving no partition table; with it, the boot entry is made as the normal mode makes it. Images
// are made by sgdisk, mkfs.fat, mtools and qemu-img.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../agent/deploy.ts';
import { Reporter } from '../../agent/reporter.ts';
import type { Platform } from '../../lib/disk/efi.ts';
import { ByoiError } from '../../lib/errors.ts';
import { validateJob } from '../../lib/job.ts';
import { StatusFile } from '../../lib/report/status.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { readAt, sh, sha256Of } from '../helpers/deploy.ts';
import { FakeBootManager } from '../helpers/efi.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
const IMAGE_SIZE = 40 * MiB;
const DISK_SIZE = 64 * MiB;
const LOADER = '\\EFI\\debian\\grubx64.efi';
const MTOOLS = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
const NO_FALLBACK =
  'image provided has no EFI bootloader at \\EFI\\BOOT\\BOOTX64.EFI in its EFI system partition (partition 1).';

type Fake = Platform & { bootManager: FakeBootManager };
const uefi = (): Fake => ({ uefi: true, bootManager: new FakeBootManager() });

describe.skipIf(skipWithout('root', 'loop', 'mtools', 'sgdisk', 'qemu-img'))('byoi deploy --stream on UEFI', () => {
  let dir: string;
  let server: TestServer;
  let loader: Buffer;

  /**
   * A GPT image: partition 1 at `espStart` (type EF00 when `esp`, FAT either way) holding only the
   * named loader (no fallback), and a Linux partition; served raw and as qcow2.
   */
  function makeImage(name: string, { esp = true, espStart = 2048 } = {}): void {
    const file = join(dir, `${name}.raw`);
    writeFileSync(file, Buffer.alloc(IMAGE_SIZE));
    sh('sgdisk', ['-a', '8', '-n', `1:${espStart}:+16M`, '-t', `1:${esp ? 'EF00' : '8300'}`, '-n', '2:0:0', file]);
    execFileSync('mkfs.fat', ['--offset', String(espStart), file, String(16 * 1024)], { stdio: 'ignore' });
    const fat = `${file}@@${espStart * 512}`;
    execFileSync('mmd', ['-i', fat, '::/EFI', '::/EFI/debian'], { env: MTOOLS });
    execFileSync('mcopy', ['-i', fat, join(dir, 'loader.efi'), '::/EFI/debian/grubx64.efi'], { env: MTOOLS });
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', file, join(dir, `${name}.qcow2`)]);
    server.serve(`/${name}.raw`, { body: readFileSync(file) });
    server.serve(`/${name}.qcow2`, { body: readFileSync(join(dir, `${name}.qcow2`)) });
  }

  beforeAll(async () => {
    assertCapable('root', 'loop', 'mtools', 'sgdisk', 'qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-stream-efi-'));
    server = await startServer();
    loader = randomBytes(600 * 1024);
    writeFileSync(join(dir, 'loader.efi'), loader);
    makeImage('esp');
    makeImage('noesp', { esp: false });
    // Its last cluster (the backup GPT's, last in the file as qemu-img lays it out) never comes.
    const noesp = readFileSync(join(dir, 'noesp.qcow2'));
    server.serve('/noesp-cut.qcow2', { body: noesp, mode: 'cut', bytes: noesp.length - 64 * 1024 });
    // The ESP's first 1000 sectors lie in the first MiB, which is written last: read from the held-back head.
    makeImage('early-esp', { espStart: 1048 });
  }, 60_000);
  afterEach(() => detachAllLoops());
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function deployWith(file: string, platform: Platform, fields: Record<string, unknown> = {}) {
    const disk = join(dir, `disk-${randomBytes(3).toString('hex')}`);
    writeFileSync(disk, randomBytes(DISK_SIZE));
    const device = attachLoop(disk);
    const before = await sha256Of(device);
    const lines: string[] = [];
    const log = pino({ base: null }, { write: (line: string) => void lines.push(line) });
    const report = new Reporter(new StatusFile(undefined, (t) => t), log);
    const job = validateJob({
      url: `${server.url}/${file}`,
      type: file.endsWith('.qcow2') ? 'qcow2' : 'raw',
      disk: device,
      noReboot: true,
      stream: true,
      ...fields,
    });
    const error = await deploy(job, report, {}, platform).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { device, before, error, logs: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
  }

  /** No partition table at either end, as blkid and wipefs see the device. */
  function expectNoPartitionTable(device: string): void {
    expect(readAt(device, 0, MiB).every((b) => b === 0)).toBe(true);
    expect(readAt(device, DISK_SIZE - MiB, MiB).every((b) => b === 0)).toBe(true);
    // blkid: exit status 2 when it finds nothing at all.
    const blkid = spawnSync('blkid', ['-p', device], { encoding: 'utf8' });
    expect({ status: blkid.status, stdout: blkid.stdout }).toEqual({ status: 2, stdout: '' });
    expect(sh('wipefs', ['--no-act', '--noheadings', device]).trim()).toBe('');
  }

  for (const file of ['esp.raw', 'esp.qcow2', 'early-esp.raw']) {
    it(`${file} with efiBootloaderPath: written, then the entry made for that disk, partition and file`, async () => {
      const platform = uefi();
      const { device, error, logs } = await deployWith(file, platform, {
        efiBootloaderPath: '/EFI/debian/grubx64.efi',
      });
      expect(error).toBeUndefined();
      expect(platform.bootManager.created).toEqual([{ disk: device, partition: 1, label: 'byoi', loader: LOADER }]);
      const ours = platform.bootManager.entries_.filter((e) => e.label === 'byoi');
      expect(ours).toHaveLength(1); // the older byoi entry (0001) replaced
      expect(platform.bootManager.order.slice(0, 2)).toEqual(['0002', ours[0]!.number]);
      expect(
        logs.some((l) => l.phase === 'boot-entry' && l.loader === LOADER && l.entry === `Boot${ours[0]!.number}`),
      ).toBe(true);
      expect(sh('sgdisk', ['-v', device])).toContain('No problems found');
      // The loader the entry names is on the disk: read back by mtools from the deployed ESP.
      const start = file.startsWith('early') ? 1048 : 2048;
      const copy = join(dir, `copy-${randomBytes(3).toString('hex')}`);
      execFileSync('mcopy', ['-i', `${device}@@${start * 512}`, '::/EFI/debian/grubx64.efi', copy], {
        env: MTOOLS,
        stdio: 'pipe', // mtools complains that a loop device has no geometry
      });
      expect(readFileSync(copy).equals(loader)).toBe(true);
    });
  }

  for (const file of ['esp.raw', 'esp.qcow2', 'early-esp.raw']) {
    it(`${file} without the loader: refused once the body is written, the head never written, no entry`, async () => {
      const platform = uefi();
      const { device, error, logs } = await deployWith(file, platform);
      expect(error).toBeInstanceOf(ByoiError);
      expect((error as ByoiError).message).toBe(
        `${NO_FALLBACK} Streaming mode: ${device} was left with no partition table.`,
      );
      expectNoPartitionTable(device);
      expect(platform.bootManager.created).toEqual([]);
      // Nothing after the refusal: no head written, no partitions, no config drive.
      const phases = logs.map((l) => l.phase).filter((p) => p !== undefined);
      expect(phases).not.toContain('partitions');
      expect(logs.some((l) => l.msg === `Writing the first MiB on ${device}`)).toBe(false);
    });
  }

  it('a raw image without an ESP: refused from its first MiB, before anything is written', async () => {
    const platform = uefi();
    const { device, before, error } = await deployWith('noesp.raw', platform, { efiBootloaderPath: LOADER });
    expect((error as ByoiError).message).toMatch(/^image provided has no EFI system partition \(GPT type EF00/);
    expect((error as ByoiError).message).not.toMatch(/Streaming mode/);
    expect(await sha256Of(device)).toBe(before);
    expect(platform.bootManager.created).toEqual([]);
  });

  it('a qcow2 image without an ESP: refused once its first clusters came, no partition table left', async () => {
    const platform = uefi();
    // Cut before its end: refused from its table, not for the download's failure.
    const { device, error } = await deployWith('noesp-cut.qcow2', platform, { efiBootloaderPath: LOADER });
    expect((error as ByoiError).message).toMatch(
      new RegExp(
        `^image provided has no EFI system partition .* Streaming mode: ${device} was left with no partition table\\.$`,
      ),
    );
    expectNoPartitionTable(device);
  });

  // With skipEfiCheck too: whether an entry will be made is known only once the body is written.
  for (const [how, options] of [
    ['', { efiBootloaderPath: LOADER }],
    ['skipEfiCheck, ', { skipEfiCheck: true }],
  ] as const) {
    it(`${how}a boot manager that cannot list its entries: refused before anything is written`, async () => {
      const platform = uefi();
      platform.bootManager.entries = async () => {
        throw new Error('EFI variables are not supported on this system.');
      };
      const { device, before, error } = await deployWith('esp.raw', platform, options);
      expect((error as ByoiError).message).toMatch(/^Could not read the UEFI boot entries/);
      expect(await sha256Of(device)).toBe(before);
    });
  }

  for (const file of ['esp.qcow2', 'noesp.raw']) {
    it(`skipEfiCheck: ${file} without its loader deployed, no entry, and the log warns`, async () => {
      const platform = uefi();
      const { device, error, logs } = await deployWith(file, platform, { skipEfiCheck: true });
      expect(error).toBeUndefined();
      expect(platform.bootManager.created).toEqual([]);
      expect(
        logs.some(
          (l) =>
            l.level === 40 &&
            l.msg ===
              'UEFI boot, but the image has no EFI system partition or bootloader: no boot entry will be made (--no-efi-check)',
        ),
      ).toBe(true);
      expect(sh('sgdisk', ['-v', device])).toContain('No problems found');
    });
  }

  it('legacy BIOS: deployed, no entry, and the log says why', async () => {
    const platform: Fake = { uefi: false, bootManager: new FakeBootManager() };
    const { error, logs } = await deployWith('noesp.qcow2', platform);
    expect(error).toBeUndefined();
    expect(platform.bootManager.created).toEqual([]);
    expect(logs.some((l) => l.msg === 'legacy BIOS boot: no UEFI boot entry will be made')).toBe(true);
  });
});
