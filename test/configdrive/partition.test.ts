// The config drive partition on loop devices with 512- and 4096-byte logical sectors: GPT disks laid
// out like cloud images (BIOS boot, ESP, root, free space at the end) and MBR disks, built by sgdisk
// and sfdisk; read back by blkid, sgdisk -v and cloud-init's reader.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';

/** OVH's sentence for any failure to add the config drive partition. */
const COULD_NOT_CREATE_CONFIGDRIVE = 'Could not create configdrive on disk.';
import { configDriveContent } from '../../lib/configdrive/content.ts';
import { dhcpOn, nicLinks } from '../../lib/configdrive/network.ts';
import { writeConfigDrive } from '../../lib/configdrive/index.ts';
import { addConfigDrivePartition } from '../../lib/configdrive/partition.ts';
import { buildVfatImage } from '../../lib/configdrive/vfat.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { probe, readConfigDrive } from '../helpers/cloud-init.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MIB = 1024 * 1024;
const NETWORK = dhcpOn(nicLinks([{ name: 'eth0', mac: '52:54:00:12:34:56', mtu: 1500 }]));
const OPTIONS = {
  hostname: 'node-01.example.net',
  sshKeys: [],
  metadata: { role: 'db' },
  userData: '#cloud-config\n{}\n',
};

interface Part {
  number: number;
  start: number;
  size: number;
  type: string;
  name?: string;
}

function table(device: string): { label: string; lastlba?: number; sectorsize: number; partitions: Part[] } {
  const json = JSON.parse(execFileSync('sfdisk', ['--json', device], { encoding: 'utf8' })).partitiontable;
  for (const p of json.partitions) p.number = Number(/(\d+)$/.exec(p.node.slice(device.length))![1]);
  return json;
}

function sha256(device: string, offset: number, length: number): string {
  const hash = createHash('sha256');
  const fd = openSync(device, 'r');
  const buffer = Buffer.alloc(4 * MIB);
  try {
    for (let at = 0; at < length;) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - at), offset + at);
      if (n === 0) throw new Error('short read');
      hash.update(buffer.subarray(0, n));
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Random bytes at the start, middle and end of each partition, so "unchanged" means something. */
function scribble(device: string, sectorSize: number, parts: Part[]): void {
  const fd = openSync(device, 'r+');
  try {
    for (const p of parts) {
      const bytes = p.size * sectorSize;
      for (const at of [0, Math.floor(bytes / 2 / 4096) * 4096, bytes - 4096])
        writeSync(fd, randomBytes(4096), 0, 4096, p.start * sectorSize + at);
    }
  } finally {
    closeSync(fd);
  }
}

function partitionHashes(device: string, sectorSize: number, parts: Part[]): string[] {
  return parts.map((p) => sha256(device, p.start * sectorSize, p.size * sectorSize));
}

function diskBytes(device: string): number {
  return Number(execFileSync('blockdev', ['--getsize64', device], { encoding: 'utf8' }).trim());
}

async function refusal(device: string): Promise<ByoiError> {
  try {
    await writeConfigDrive(device, OPTIONS, { network: NETWORK });
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).message).toBe(COULD_NOT_CREATE_CONFIGDRIVE);
    return error as ByoiError;
  }
  throw new Error('the config drive was written');
}

describe.skipIf(skipWithout('root', 'loop', 'sgdisk', 'mtools', 'cloud-init'))(
  'config drive partition on loop devices',
  () => {
    let work: string;
    let n = 0;
    beforeAll(() => {
      assertCapable('root', 'loop', 'sgdisk', 'mtools', 'cloud-init');
      work = mkdtempSync(join(tmpdir(), 'byoi-cd-part-'));
    });
    // addConfigDrivePartition tells the kernel about the new partition (partx -u); this kernel keeps a
    // loop device's partitions after the detach, so drop them first for whoever attaches it next.
    const mine: string[] = [];
    afterEach(() => {
      for (const device of mine.splice(0)) spawnSync('partx', ['-d', device], { stdio: 'ignore' });
      detachAllLoops();
    });
    afterAll(() => rmSync(work, { recursive: true, force: true }));

    function disk(sizeMib: number, sectorSize: 512 | 4096): string {
      const file = join(work, `disk${n++}.img`);
      writeFileSync(file, '');
      truncateSync(file, sizeMib * MIB);
      const device = attachLoop(file, { sectorSize });
      mine.push(device);
      return device;
    }

    function gptDisk(sectorSize: 512 | 4096, sizeMib: number, layout: string[]): string {
      const device = disk(sizeMib, sectorSize);
      execFileSync('sgdisk', ['-o', ...layout, device], { stdio: 'ignore' });
      return device;
    }

    function mbrDisk(sectorSize: 512 | 4096, sizeMib: number, script: string): string {
      const device = disk(sizeMib, sectorSize);
      execFileSync('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', device], { input: `label: dos\n${script}` });
      return device;
    }

    const CLOUD_IMAGE = [
      '-n',
      '14:0:+4M',
      '-t',
      '14:ef02',
      '-n',
      '15:0:+20M',
      '-t',
      '15:ef00',
      '-n',
      '1:0:+40M',
      '-t',
      '1:8300',
      '-c',
      '1:root',
    ];

    async function deployAndCheck(device: string, expectNumber: number) {
      const before = table(device);
      const ss = before.sectorsize;
      scribble(device, ss, before.partitions);
      const hashes = partitionHashes(device, ss, before.partitions);

      const written = await writeConfigDrive(device, OPTIONS, { network: NETWORK });

      const after = table(device);
      const drive = after.partitions.find((p) => p.number === written.partition.number)!;
      expect(written.partition).toMatchObject({
        action: 'create',
        number: expectNumber,
        offset: drive.start * ss,
        bytes: drive.size * ss,
      });
      expect(after.partitions).toHaveLength(before.partitions.length + 1);
      expect(Math.max(...after.partitions.map((p) => p.start))).toBe(drive.start); // last on the disk
      const end = (drive.start + drive.size) * ss;
      expect(end).toBeLessThanOrEqual(diskBytes(device));
      expect(drive.start * ss).toBeGreaterThanOrEqual(diskBytes(device) - 64 * MIB); // in the last 64 MiB
      expect((drive.start * ss) % MIB).toBe(0);
      expect(partitionHashes(device, ss, before.partitions)).toEqual(hashes);
      expect(probe(device, drive.start * ss)).toMatchObject({
        LABEL: 'config-2',
        TYPE: 'vfat',
        BLOCK_SIZE: String(ss),
      });
      const seen = readConfigDrive(device, drive.start * ss);
      expect(seen).toMatchObject({
        instanceId: written.uuid,
        localHostname: 'node-01.example.net',
        meta: { role: 'db' },
      });
      return { drive, after, ss };
    }

    it.each([512, 4096] as const)(
      'GPT cloud image, %i-byte sectors: config-2 partition at the end, sgdisk -v clean',
      async (ss) => {
        const device = gptDisk(ss, 140, CLOUD_IMAGE);
        const { drive, after } = await deployAndCheck(device, 2);
        expect(drive.name).toBe('config-2');
        expect(drive.type).toBe('EBD0A0A2-B9E5-4433-87C0-68B6B72699C7');
        // Start and end on 1 MiB boundaries, the end the last one before the backup GPT.
        expect((drive.start * ss) % MIB).toBe(0);
        expect(((drive.start + drive.size) * ss) % MIB).toBe(0);
        expect(drive.start + drive.size - 1).toBeLessThanOrEqual(after.lastlba!);
        expect(after.lastlba! - (drive.start + drive.size - 1)).toBeLessThan(MIB / ss);
        expect(execFileSync('sgdisk', ['-v', device], { encoding: 'utf8' })).toContain('No problems found.');
      },
    );

    it.each([512, 4096] as const)('MBR image, %i-byte sectors: a primary partition at the end', async (ss) => {
      const device = mbrDisk(
        ss,
        160,
        `start=${MIB / ss}, size=${(20 * MIB) / ss}, type=83, bootable\nsize=${(80 * MIB) / ss}, type=83\n`,
      );
      const { drive } = await deployAndCheck(device, 3);
      expect(drive.type).toBe('c');
      expect((drive.start + drive.size) * ss).toBe(160 * MIB);
      execFileSync('sfdisk', ['--verify', device]);
    });

    it("reuses the image's own config-2 partition (GPT name) without touching the table", async () => {
      const device = gptDisk(512, 140, [...CLOUD_IMAGE, '-n', '2:0:+8M', '-t', '2:0700', '-c', '2:config-2']);
      const before = table(device);
      const others = before.partitions.filter((p) => p.number !== 2);
      scribble(device, 512, before.partitions);
      const hashes = partitionHashes(device, 512, others);
      const written = await writeConfigDrive(device, OPTIONS, { network: NETWORK });
      const own = before.partitions.find((p) => p.number === 2)!;
      expect(written.partition).toEqual({ action: 'reuse', number: 2, offset: own.start * 512, bytes: own.size * 512 });
      expect(table(device)).toEqual(before);
      expect(partitionHashes(device, 512, others)).toEqual(hashes);
      expect(readConfigDrive(device, own.start * 512).instanceId).toBe(written.uuid);
    });

    it('reuses a 4K MBR partition holding a CONFIG-2 filesystem', async () => {
      const device = mbrDisk(
        4096,
        160,
        `start=256, size=${(20 * MIB) / 4096}, type=83\nsize=${(4 * MIB) / 4096}, type=c\n`,
      );
      const before = table(device);
      const own = before.partitions[1]!;
      execFileSync(
        'mkfs.fat',
        ['-I', '-n', 'CONFIG-2', '-S', '4096', `--offset=${own.start}`, device, String((own.size * 4096) / 1024)],
        { stdio: 'ignore' },
      );
      expect(probe(device, own.start * 4096).LABEL).toBe('CONFIG-2');
      const written = await writeConfigDrive(device, OPTIONS, { network: NETWORK });
      expect(written.partition).toMatchObject({ action: 'reuse', number: 2 });
      expect(table(device)).toEqual(before);
      expect(probe(device, own.start * 4096)).toMatchObject({ LABEL: 'config-2', TYPE: 'vfat' });
      expect(readConfigDrive(device, own.start * 4096).instanceId).toBe(written.uuid);
    });

    it('MBR on a disk larger than 2 TiB (a sparse file): the partition ends at 2 TiB', async () => {
      const file = join(work, 'big.img');
      writeFileSync(file, '');
      truncateSync(file, 2560 * 1024 * MIB);
      execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=100000, type=83\n' });
      const written = await writeConfigDrive(file, OPTIONS, { network: NETWORK });
      const drive = table(file).partitions.find((p) => p.number === 2)!;
      expect(written.partition).toEqual({ action: 'create', number: 2, offset: drive.start * 512, bytes: 64 * MIB });
      expect((drive.start + drive.size) * 512).toBe(2 * 1024 * 1024 * MIB);
      expect(readConfigDrive(file, drive.start * 512).instanceId).toBe(written.uuid);
      rmSync(file);
    });

    it('takes a prebuilt image file; refuses one with 512-byte sectors for a 4K disk, before writing', async () => {
      const content = configDriveContent({ hostname: 'prebuilt', sshKeys: [], metadata: {} }, {});
      const image512 = join(work, 'prebuilt-512.vfat');
      writeFileSync(image512, await buildVfatImage(content.files, { bytes: 63 * MIB, sectorSize: 512 }));

      const disk512 = gptDisk(512, 140, CLOUD_IMAGE);
      const placed = await addConfigDrivePartition(disk512, image512);
      expect(placed.action).toBe('create');
      expect(readConfigDrive(disk512, placed.offset)).toMatchObject({
        instanceId: content.uuid,
        localHostname: 'prebuilt',
      });

      const disk4k = gptDisk(4096, 140, CLOUD_IMAGE);
      const before = sha256(disk4k, 0, diskBytes(disk4k));
      const error = await addConfigDrivePartition(disk4k, image512).catch((e: unknown) => e as ByoiError);
      expect(error).toMatchObject({
        message: COULD_NOT_CREATE_CONFIGDRIVE,
        detail: "the config drive filesystem uses 512-byte sectors, smaller than the disk's 4096-byte sectors.",
      });
      expect(sha256(disk4k, 0, diskBytes(disk4k))).toBe(before);
    });

    it('writes a filesystem file byte for byte, copied in pieces, and zeros over stale bytes after it', async () => {
      const content = configDriveContent({ hostname: 'pieces', sshKeys: [], metadata: {} }, {});
      // Not a whole number of MiB: the last piece of the copy is a short one.
      const bytes = 20 * MIB + 1024;
      const file = join(work, 'pieces.vfat');
      writeFileSync(file, await buildVfatImage(content.files, { bytes, sectorSize: 512 }));
      const device = gptDisk(512, 140, CLOUD_IMAGE);
      // Stale bytes where the config drive will go (after the image's partitions, before the backup GPT).
      const fd = openSync(device, 'r+');
      try {
        for (let at = 70 * MIB; at < diskBytes(device) - MIB; at += MIB) writeSync(fd, randomBytes(MIB), 0, MIB, at);
      } finally {
        closeSync(fd);
      }

      const placed = await addConfigDrivePartition(device, file);
      const region = Math.min(placed.bytes, 64 * MIB);
      expect(region).toBeGreaterThan(bytes);
      const expected = createHash('sha256')
        .update(readFileSync(file))
        .update(Buffer.alloc(region - bytes))
        .digest('hex');
      expect(sha256(device, placed.offset, region)).toBe(expected);
      expect(readConfigDrive(device, placed.offset)).toMatchObject({
        instanceId: content.uuid,
        localHostname: 'pieces',
      });
    });

    describe('refusals leave the disk unchanged', () => {
      async function refuses(device: string, detail: string | RegExp) {
        const before = sha256(device, 0, diskBytes(device));
        const error = await refusal(device);
        expect(error.detail).toMatch(detail);
        expect(sha256(device, 0, diskBytes(device))).toBe(before);
      }

      it('two config-2 partitions', async () => {
        const device = gptDisk(512, 100, [
          ...CLOUD_IMAGE,
          '-n',
          '2:0:+4M',
          '-c',
          '2:config-2',
          '-n',
          '3:0:+4M',
          '-c',
          '3:CONFIG-2',
        ]);
        await refuses(
          device,
          'the image already holds 2 config-2 partitions (2, 3); cloud-init would pick one at random.',
        );
      });

      it.each([512, 4096] as const)('four MBR primaries (%i-byte sectors)', async (ss) => {
        const mib = MIB / ss;
        const device = mbrDisk(
          ss,
          80,
          [1, 2, 3, 4].map((i) => `start=${i * mib}, size=${mib}, type=83`).join('\n') + '\n',
        );
        await refuses(
          device,
          'the MBR already has four primary partitions (an extended partition counts as one); no room for a fifth.',
        );
      });

      it('three primaries and an extended partition', async () => {
        const device = mbrDisk(
          512,
          80,
          'size=4MiB, type=83\nsize=4MiB, type=83\nsize=4MiB, type=83\nsize=8MiB, type=5\nsize=2MiB, type=83\n',
        );
        expect(table(device).partitions.map((p) => p.number)).toEqual([1, 2, 3, 4, 5]);
        await refuses(device, /four primary partitions/);
      });

      it.each([512, 4096] as const)('GPT with no free space at the end (%i-byte sectors)', async (ss) => {
        const device = gptDisk(ss, 60, ['-n', '15:0:+20M', '-t', '15:ef00', '-n', '1:0:0', '-c', '1:root']);
        await refuses(
          device,
          /^only 0 bytes are free at the end of the disk; the config drive partition needs at least 1048576\.$/,
        );
      });

      it('MBR with no free space at the end', async () => {
        const device = mbrDisk(512, 60, 'start=2048, type=83\n');
        await refuses(device, /^only 0 bytes are free at the end of the disk/);
      });

      it('a GPT image whose backup header was not moved to the end of the larger disk', async () => {
        const file = join(work, 'small-gpt.img');
        writeFileSync(file, '');
        truncateSync(file, 40 * MIB);
        execFileSync('sgdisk', ['-n', '1:0:0', file], { stdio: 'ignore' });
        truncateSync(file, 120 * MIB);
        const device = attachLoop(file);
        mine.push(device);
        await refuses(
          device,
          'the GPT backup header is at sector 81919, not at the last sector 245759; move it to the end of the disk first.',
        );
      });

      it('a disk with no partition table', async () => {
        const device = disk(16, 512);
        await refuses(device, /holds no partition table/);
      });
    });
  },
);
