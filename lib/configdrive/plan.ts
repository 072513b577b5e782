// Where the config drive goes, decided from the partition table alone, before anything is written:
// an existing config-2 partition is reused; otherwise a new one takes the last 64 MiB of the disk
// (MBR: of its first 2 TiB), starting and ending on 1 MiB boundaries, after every existing partition.
import {
  configDriveFourPrimaries,
  configDriveGptBackupNotAtEnd,
  configDriveNoFreeGptEntry,
  configDriveNoRoomAtEnd,
  configDrivePartitionTooSmall,
  configDriveTwoConfigDrives,
} from '../errors.ts';
import { CONFIG_DRIVE_MAX_BYTES, CONFIG_DRIVE_MIN_BYTES } from './options.ts';
import type { PartitionTable } from './partition-table.ts';

export interface ConfigDrivePlan {
  /** Reuse the image's own config-2 partition, or create one. */
  action: 'reuse' | 'create';
  label: 'gpt' | 'dos';
  /** The partition number (for create: the lowest free GPT entry or MBR primary slot). */
  number: number;
  start: number;
  sectors: number;
  sectorSize: number;
}

const MIB = 1024 * 1024;
/** MBR sector addresses are 32-bit; like Ironic, keep the partition below 2 TiB whatever the sector size. */
const MBR_LIMIT_BYTES = 2 * 1024 * 1024 * MIB;
const GPT_ENTRIES = 128;
const MBR_PRIMARIES = 4;

/** Decides, or throws OVH's "Could not create configdrive on disk." with the reason; the disk is not touched either way. */
export function planConfigDrivePartition(table: PartitionTable): ConfigDrivePlan {
  const { label, sectorSize } = table;
  const existing = table.partitions.filter(
    (p) => p.name?.toLowerCase() === 'config-2' || p.fsLabel?.toLowerCase() === 'config-2',
  );
  if (existing.length > 1) throw configDriveTwoConfigDrives(existing.map((p) => p.number));
  if (existing.length === 1) {
    const p = existing[0]!;
    if (p.sectors * sectorSize < CONFIG_DRIVE_MIN_BYTES) {
      throw configDrivePartitionTooSmall(p.number, p.sectors * sectorSize, CONFIG_DRIVE_MIN_BYTES);
    }
    return { action: 'reuse', label, number: p.number, start: p.start, sectors: p.sectors, sectorSize };
  }

  if (label === 'gpt' && table.backupLba !== table.totalSectors - 1) {
    throw configDriveGptBackupNotAtEnd(table.backupLba ?? 0, table.totalSectors - 1);
  }
  const used = new Set(table.partitions.map((p) => p.number));
  const slots = label === 'gpt' ? GPT_ENTRIES : MBR_PRIMARIES;
  const number = Array.from({ length: slots }, (_, i) => i + 1).find((n) => !used.has(n));
  if (number === undefined) throw label === 'gpt' ? configDriveNoFreeGptEntry() : configDriveFourPrimaries();

  const end =
    label === 'gpt' ? table.lastUsable : Math.min(table.totalSectors, Math.floor(MBR_LIMIT_BYTES / sectorSize)) - 1;
  const lastUsed = Math.max(table.firstUsable - 1, ...table.partitions.map((p) => p.start + p.sectors - 1));
  const align = MIB / sectorSize;
  const windowStart = end + 1 - CONFIG_DRIVE_MAX_BYTES / sectorSize;
  const start = Math.ceil(Math.max(windowStart, lastUsed + 1) / align) * align;
  // It ends on a 1 MiB boundary too, so sgdisk -v finds nothing to say about it.
  const sectors = Math.floor((end + 1 - start) / align) * align;
  if (sectors * sectorSize < CONFIG_DRIVE_MIN_BYTES) {
    throw configDriveNoRoomAtEnd(Math.max(0, end - lastUsed) * sectorSize, CONFIG_DRIVE_MIN_BYTES);
  }
  return { action: 'create', label, number, start, sectors, sectorSize };
}
