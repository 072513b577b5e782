// Which disk a job deploys onto: the first disk of its disk group, or a disk named explicitly
// (for manual use and tests; the only way a loop device is ever chosen).
import { realpath } from 'node:fs/promises';
import type { Disk } from './discover.ts';
import { diskGroups } from './groups.ts';
import { notADisk, systemDisk, unknownDiskGroup } from '../errors.ts';

export type DiskChoice = { disk: string } | { diskGroupId: number };

export async function chooseDisk(disks: readonly Disk[], choice: DiskChoice): Promise<Disk> {
  if ('disk' in choice) {
    const path = await realpath(choice.disk).catch(() => choice.disk);
    const disk = disks.find((d) => d.path === path);
    if (!disk) throw notADisk(choice.disk);
    const system = disk.holders.find((h) => h.system);
    if (system) throw systemDisk(choice.disk, `it holds ${system.mountpoint}, a filesystem of the running system`);
    return disk;
  }
  const groups = diskGroups(disks);
  const group = groups.find((g) => g.id === choice.diskGroupId);
  if (!group)
    throw unknownDiskGroup(
      choice.diskGroupId,
      groups.map((g) => `${g.id} (${g.description}: ${g.disks.map((d) => d.name).join(', ')})`),
    );
  return group.disks[0]!;
}
