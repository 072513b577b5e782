// Disk discovery and groups from lsblk outputs shaped like real servers' (fixtures/lsblk/).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { disksFromLsblk } from '../../lib/disk/discover.ts';
import type { LsblkDevice } from '../../lib/disk/lsblk.ts';
import { diskGroups } from '../../lib/disk/groups.ts';
import { chooseDisk } from '../../lib/disk/select.ts';

function server(name: string, swaps: string[] = []) {
  const { blockdevices } = JSON.parse(
    readFileSync(new URL(`../../fixtures/lsblk/${name}.json`, import.meta.url), 'utf8'),
  ) as { blockdevices: LsblkDevice[] };
  const disks = disksFromLsblk(blockdevices, {
    swaps: new Set(swaps),
    byId: new Map([['nvme0n1', '/dev/disk/by-id/nvme-eui.3445']]),
  });
  return { disks, groups: diskGroups(disks) };
}

const summary = (groups: ReturnType<typeof diskGroups>) =>
  groups.map((g) => `${g.id}: ${g.description} [${g.disks.map((d) => d.name).join(' ')}]`);

describe('disk groups', () => {
  it('puts NVMe before HDD and picks nvme0n1 first whatever order lsblk lists them in', async () => {
    const { disks, groups } = server('2nvme-2hdd-md');
    expect(summary(groups)).toEqual(['1: 2 X Disk NVME 512 GB [nvme0n1 nvme1n1]', '2: 2 X Disk HDD 4001 GB [sda sdb]']);
    expect((await chooseDisk(disks, { diskGroupId: 1 })).path).toBe('/dev/nvme0n1');
    expect((await chooseDisk(disks, { diskGroupId: 2 })).path).toBe('/dev/sda');
    const nvme0 = disks.find((d) => d.name === 'nvme0n1')!;
    expect(nvme0.byId).toBe('/dev/disk/by-id/nvme-eui.3445');
    expect(nvme0.holders).toEqual([{ kind: 'md', device: '/dev/md127', system: false, depth: 2 }]);
    expect(nvme0.transport).toBe('nvme');
  });

  it('offers a hardware-RAID virtual disk as the single group and never the virtual CD', () => {
    const { disks, groups } = server('hwraid-1vd');
    expect(summary(groups)).toEqual(['1: 1 X Disk SSD 1920 GB [sda]']);
    expect(disks.find((d) => d.name === 'sda')!.holders).toEqual([
      { kind: 'lvm', device: '/dev/mapper/vg0-root', system: false, depth: 2 },
    ]);
    expect(disks.find((d) => d.name === 'sr0')!.excluded).toMatch(/rom/);
  });

  it('groups four identical SSDs and sees active swap as a holder', () => {
    const { disks, groups } = server('4ssd', ['/dev/sda1']);
    expect(summary(groups)).toEqual(['1: 4 X Disk SSD 480 GB [sda sdb sdc sdd]']);
    expect(disks.find((d) => d.name === 'sda')!.holders).toEqual([
      { kind: 'swap', device: '/dev/sda1', system: false, depth: 1 },
    ]);
    expect(disks.find((d) => d.name === 'sda')!.logicalSectorSize).toBe(512);
    expect(disks.find((d) => d.name === 'sda')!.physicalSectorSize).toBe(4096);
  });

  it('orders mixed sizes by media then size, with natural name order inside a group', () => {
    const { groups } = server('mixed-sizes');
    expect(summary(groups)).toEqual([
      '1: 2 X Disk NVME 480 GB [nvme2n1 nvme10n1]',
      '2: 2 X Disk SSD 960 GB [sda sdb]',
      '3: 1 X Disk HDD 4001 GB [sdc]',
    ]);
  });

  it('never offers USB sticks, the rescue media, loop or zram devices; a data mount is releasable', () => {
    const { disks, groups } = server('usb-and-rescue-media');
    expect(summary(groups)).toEqual(['1: 2 X Disk HDD 2000 GB [sda sdb]']);
    const excluded = Object.fromEntries(disks.filter((d) => d.excluded).map((d) => [d.name, d.excluded]));
    expect(Object.keys(excluded).sort()).toEqual(['loop0', 'sdc', 'sdd', 'zram0']);
    expect(excluded.sdc).toMatch(/removable or USB/);
    expect(disks.find((d) => d.name === 'sdb')!.holders).toEqual([
      { kind: 'mount', device: '/dev/sdb1', mountpoint: '/mnt/old', system: false, depth: 1 },
    ]);
  });

  it('names the groups that exist when asked for one that does not', async () => {
    const { disks } = server('mixed-sizes');
    await expect(chooseDisk(disks, { diskGroupId: 4 })).rejects.toThrow(
      'Disk group 4 does not exist on this server: the disk groups here are: 1 (2 X Disk NVME 480 GB: nvme2n1, nvme10n1); 2 (2 X Disk SSD 960 GB: sda, sdb); 3 (1 X Disk HDD 4001 GB: sdc).',
    );
  });

  it('refuses an explicit disk that holds a filesystem the running system needs', async () => {
    const { disks } = server('usb-and-rescue-media');
    await expect(chooseDisk(disks, { disk: '/dev/sdd' })).rejects.toThrow(
      'Refusing to write to /dev/sdd: it holds /run/live/medium, a filesystem of the running system.',
    );
    await expect(chooseDisk(disks, { disk: '/dev/nope' })).rejects.toThrow('/dev/nope is not a disk of this server.');
    expect((await chooseDisk(disks, { disk: '/dev/sdb' })).name).toBe('sdb');
  });
});
