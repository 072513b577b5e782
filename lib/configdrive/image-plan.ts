// The config drive planned from the decoded image, before the first write: the partition table the
// disk will have once the image is written and its GPT backup moved to the disk's end, given to the
// same planner the config drive step uses afterwards. A refusal here leaves the disk unchanged.
import { configDriveNoPartitionTable } from '../errors.ts';
import type { GuestReader } from '../formats/guest.ts';
import { filesystemLabel, type ImageTable } from '../formats/image-partitions.ts';
import type { PartitionEntry, PartitionTable } from './partition-table.ts';
import { planConfigDrivePartition, type ConfigDrivePlan } from './plan.ts';

/** Where a FAT or ISO 9660 label lies: ISO 9660's primary volume descriptor ends here. */
const LABEL_BYTES = 0x8800;

export interface DiskGeometryFacts {
  readonly size: number;
  readonly logicalSectorSize: number;
}

/** The disk's table after the write, as readPartitionTable would read it then. */
export async function tableAfterWrite(
  guest: GuestReader,
  table: ImageTable,
  disk: DiskGeometryFacts,
): Promise<PartitionTable> {
  const sectorSize = disk.logicalSectorSize;
  const totalSectors = Math.floor(disk.size / sectorSize);
  const heads = await guest.read(table.partitions.map((p) => ({ offset: p.start * sectorSize, length: LABEL_BYTES })));
  const partitions = table.partitions.map((p, i): PartitionEntry => {
    const fsLabel = filesystemLabel(heads[i]!);
    return {
      number: p.number,
      start: p.start,
      sectors: p.sectors,
      ...(p.name && { name: p.name }),
      ...(fsLabel && { fsLabel }),
    };
  });
  if (table.label === 'dos')
    return { label: 'dos', sectorSize, totalSectors, firstUsable: 1, lastUsable: totalSectors - 1, partitions };
  const gpt = table.gpt ?? { firstUsable: 34, entryCount: 128, entrySize: 128 };
  // sgdisk -e puts the backup header on the last sector and the backup array just before it.
  const arraySectors = Math.ceil((gpt.entryCount * gpt.entrySize) / sectorSize);
  return {
    label: 'gpt',
    sectorSize,
    totalSectors,
    firstUsable: gpt.firstUsable,
    lastUsable: totalSectors - 2 - arraySectors,
    backupLba: totalSectors - 1,
    partitions,
  };
}

/** Plans the config drive for the image on the disk, or throws OVH's "Could not create configdrive on disk."; writes nothing. */
export async function planConfigDriveBeforeWrite(
  guest: GuestReader,
  table: ImageTable | undefined,
  disk: DiskGeometryFacts,
  device: string,
): Promise<ConfigDrivePlan> {
  if (!table) throw configDriveNoPartitionTable(device);
  return planConfigDrivePartition(await tableAfterWrite(guest, table, disk));
}
