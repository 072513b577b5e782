// Adds the config drive to a disk that holds a written image (after the GPT backup header has been
// moved to the disk's end): plans from the partition table, builds the filesystem for the chosen
// partition, creates the partition (sfdisk) unless one is reused, then
// writes the filesystem at its byte offset on the whole-disk device. Partition device nodes are
// never needed. Every refusal happens before the first write. A filesystem in a file is copied in
// pieces, never held whole in memory (a deployment's RAM is the image's).
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec } from '../system/exec.ts';
import {
  configDriveImageSectorSize,
  configDriveImageTooBig,
  configDriveNoPartitionTable,
  configDriveToolFailed,
  configDrivePartitionNotMade,
} from '../errors.ts';
import { CONFIG_DRIVE_MAX_BYTES } from './options.ts';
import { readPartitionTable } from './partition-table.ts';
import { planConfigDrivePartition, type ConfigDrivePlan } from './plan.ts';
import type { VfatGeometry } from './vfat.ts';

/**
 * The filesystem to put in the partition: its bytes, a file holding them, or a builder that makes
 * it, for the partition's geometry, in the (new) file it is given.
 */
export type ConfigDriveImage = Uint8Array | string | ((geometry: VfatGeometry, file: string) => Promise<void>);

export interface ConfigDrivePartition {
  action: 'reuse' | 'create';
  number: number;
  /** Byte offset and length of the partition on the disk. */
  offset: number;
  bytes: number;
}

const MIB = 1024 * 1024;
/** GPT type "Microsoft basic data", what a vfat data partition is tagged with. */
const GPT_TYPE_BASIC_DATA = 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7';
/** MBR type 0x0c, FAT32 (LBA), as parted and Ironic tag a config drive. */
const MBR_TYPE_FAT_LBA = 'c';

export async function addConfigDrivePartition(device: string, image: ConfigDriveImage): Promise<ConfigDrivePartition> {
  const table = await readPartitionTable(device);
  if (!table) throw configDriveNoPartitionTable(device);
  const plan = planConfigDrivePartition(table);
  // The region written: the whole partition up to 64 MiB, so no stale signature survives in it.
  const region = Math.min(plan.sectors * plan.sectorSize, CONFIG_DRIVE_MAX_BYTES);
  if (typeof image !== 'function') return put(device, plan, region, image);
  const work = await mkdtemp(join(tmpdir(), 'byoi-configdrive-'));
  try {
    const file = join(work, 'config-2.vfat');
    await image({ bytes: Math.floor(region / MIB) * MIB, sectorSize: plan.sectorSize }, file);
    return await put(device, plan, region, file);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Checks the filesystem against the plan, makes the partition if planned, writes the filesystem. */
async function put(
  device: string,
  plan: ConfigDrivePlan,
  region: number,
  image: Uint8Array | string,
): Promise<ConfigDrivePartition> {
  const partitionBytes = plan.sectors * plan.sectorSize;
  const size = typeof image === 'string' ? (await stat(image)).size : image.length;
  if (size > partitionBytes) throw configDriveImageTooBig(size, partitionBytes);
  const fatSectorSize = fatLogicalSectorSize(await bootSector(image));
  if (fatSectorSize !== undefined && fatSectorSize < plan.sectorSize) {
    throw configDriveImageSectorSize(fatSectorSize, plan.sectorSize);
  }

  const number = plan.action === 'create' ? await createPartition(device, plan) : plan.number;
  const offset = plan.start * plan.sectorSize;
  await writeAt(device, offset, image, size, Math.max(region, size));
  await rereadPartitionTable(device);
  return { action: plan.action, number, offset, bytes: partitionBytes };
}

/** The filesystem's first 512 bytes (fewer if it is shorter). */
async function bootSector(image: Uint8Array | string): Promise<Uint8Array> {
  if (typeof image !== 'string') return image.subarray(0, 512);
  const handle = await open(image, 'r');
  try {
    const head = new Uint8Array(512);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Bytes per sector from a FAT boot sector (BPB offset 11), or undefined if this is not one. */
function fatLogicalSectorSize(bytes: Uint8Array): number | undefined {
  if (bytes.length < 512 || bytes[510] !== 0x55 || bytes[511] !== 0xaa) return undefined;
  const size = bytes[11]! + bytes[12]! * 256;
  return size >= 512 && (size & (size - 1)) === 0 ? size : undefined;
}

/**
 * sfdisk adds the partition without touching anything else: no re-read, nothing told to the kernel
 * (the caller re-reads once), no signature wiped.
 */
const SFDISK_ADD_ONLY = ['--no-reread', '--no-tell-kernel', '--wipe', 'never', '--wipe-partitions', 'never'];

/** Creates the planned partition and returns its number. */
async function createPartition(device: string, plan: ConfigDrivePlan): Promise<number> {
  if (plan.label === 'gpt') {
    // sfdisk, not `sgdisk --new`, which sleeps a second after writing and syncs every filesystem
    // (1.67 s on a loop device here); sfdisk keeps the planned start and fsyncs the device.
    await tool(
      'sfdisk',
      ['--partno', String(plan.number), ...SFDISK_ADD_ONLY, device],
      `start=${plan.start}, size=${plan.sectors}, type=${GPT_TYPE_BASIC_DATA}, name="config-2"\n`,
    );
  } else {
    await tool(
      'sfdisk',
      ['--append', ...SFDISK_ADD_ONLY, device],
      `start=${plan.start}, size=${plan.sectors}, type=${MBR_TYPE_FAT_LBA}\n`,
    );
  }
  return checkCreated(device, plan);
}

/** The tools may align or renumber on their own; make sure the table now says what was planned. */
async function checkCreated(device: string, plan: ConfigDrivePlan): Promise<number> {
  const table = await readPartitionTable(device);
  const made = table?.partitions.find((p) => p.start === plan.start);
  const wrongNumber = made && (plan.label === 'gpt' ? made.number !== plan.number : made.number > 4);
  if (!made || made.sectors !== plan.sectors || wrongNumber) {
    const got = made ? `partition ${made.number} at ${made.start}+${made.sectors}` : 'no partition';
    throw configDrivePartitionNotMade(got, plan.number, plan.start, plan.sectors);
  }
  return made.number;
}

/** Writes the `size` bytes of `image` at `offset`, 1 MiB at a time from a file, and zeros after them up to `length`, then flushes. */
async function writeAt(
  device: string,
  offset: number,
  image: Uint8Array | string,
  size: number,
  length: number,
): Promise<void> {
  const handle = await open(device, 'r+');
  const file = typeof image === 'string' ? await open(image, 'r') : undefined;
  try {
    const piece = new Uint8Array(MIB);
    let at = 0;
    if (typeof image !== 'string') {
      await handle.write(image, 0, size, offset);
      at = size;
    }
    for (; at < size;) {
      const { bytesRead } = await file!.read(piece, 0, Math.min(piece.length, size - at), at);
      if (bytesRead === 0) throw new Error(`${image as string} ended at ${at} of ${size} bytes`);
      await handle.write(piece, 0, bytesRead, offset + at);
      at += bytesRead;
    }
    piece.fill(0);
    for (; at < length; at += piece.length) {
      await handle.write(piece, 0, Math.min(piece.length, length - at), offset + at);
    }
    await handle.sync();
  } finally {
    await file?.close();
    await handle.close();
  }
}

/** Tells the kernel about the new partition; best effort (a file, or partx missing, is fine). */
async function rereadPartitionTable(device: string): Promise<void> {
  if (!(await stat(device)).isBlockDevice()) return;
  const partx = await exec('partx', ['-u', device], { reject: false });
  if (partx.exitCode !== 0) await exec('blockdev', ['--rereadpt', device], { reject: false });
}

async function tool(command: string, args: string[], input?: string): Promise<void> {
  const result = await exec(command, args, { reject: false, ...(input === undefined ? {} : { input }) });
  if (result.failed) {
    throw configDriveToolFailed(`${command} ${args.join(' ')}`, result.all || result.message);
  }
}
