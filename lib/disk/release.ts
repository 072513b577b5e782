// Frees the chosen disk of what a previous install left active on it (mounts, swap, LVM, dm-crypt,
// md arrays) and wipes every signature, so the image lands on a disk nothing else uses and no old
// RAID or LVM metadata (md 1.0 superblocks sit at the end of a partition) comes back at next boot.
// Runs only after the image is downloaded, verified and inspected; what it will wipe can be read
// (read only) before, while the inspection still runs (`surveyDisk`).
import { exec } from '../system/exec.ts';
import type { Disk, Holder } from './discover.ts';
import { discoverDisks } from './discover.ts';
import { couldNotReleaseDisk, systemDisk } from '../errors.ts';

// Within one depth of the stack: filesystems and swap go before the device that carries them.
const KIND_ORDER: Record<Holder['kind'], number> = { mount: 0, swap: 1, lvm: 2, crypt: 3, dm: 4, md: 5 };

function describe(holder: Holder): string {
  return holder.kind === 'mount'
    ? `${holder.device} mounted on ${holder.mountpoint}`
    : `${holder.kind} ${holder.device}`;
}

async function tool(command: string, args: string[]): Promise<void> {
  await exec(command, args);
}

/** The steps that free one holder; errors are collected by the caller, then the disk is checked again. */
async function releaseHolder(holder: Holder): Promise<void> {
  switch (holder.kind) {
    case 'mount':
      return tool('umount', [holder.mountpoint!]);
    case 'swap':
      return tool('swapoff', [holder.device]);
    case 'lvm': {
      const { stdout } = await exec('lvs', ['--noheadings', '-o', 'vg_name', holder.device]);
      return tool('vgchange', ['--activate', 'n', stdout.trim()]);
    }
    case 'crypt':
      return tool('cryptsetup', ['close', holder.device]);
    case 'dm':
      return tool('dmsetup', ['remove', holder.device]);
    case 'md':
      return tool('mdadm', ['--stop', holder.device]);
  }
}

/** Members of md arrays among `devices` (the disk and its partitions), whose superblocks must go. */
async function mdMembers(devices: string[]): Promise<string[]> {
  // blkid probes the device itself: lsblk's FSTYPE comes from udev's database, absent in some rescue systems.
  const types = await Promise.all(
    devices.map(async (path) => {
      const { stdout } = await exec('blkid', ['--probe', '--match-tag', 'TYPE', '--output', 'value', path], {
        reject: false,
      });
      return stdout.trim();
    }),
  );
  return devices.filter((_, i) => types[i] === 'linux_raid_member');
}

/** The disk's own partitions: not those of an array or a mapping built on it (md127p1), which its release stops. */
async function partitionsOf(disk: Disk): Promise<string[]> {
  const columns = 'PATH,TYPE,PKNAME';
  const { stdout } = await exec('lsblk', ['--list', '--noheadings', '--paths', '--output', columns, disk.path]);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([, type, parent]) => type === 'part' && parent === disk.path)
    .map(([path]) => path!);
}

/** The first thing that still holds the disk, as the kernel now says, once udev is done. */
async function stillHolding(disk: Disk): Promise<Holder | undefined> {
  await settle();
  return (await discoverDisks()).find((d) => d.path === disk.path)?.holders[0];
}

async function settle(): Promise<void> {
  await exec('udevadm', ['settle', '--timeout=10'], { reject: false });
}

export interface ReleaseReport {
  released: string[];
}

/** What the release wipes besides the disk itself: its partitions, and which of them (or it) are md members. */
export interface DiskSurvey {
  readonly partitions: readonly string[];
  readonly mdMembers: readonly string[];
}

/**
 * Reads what `releaseDisk` will wipe. It only reads, and what it reads does not change when the
 * holders are released (stopping an array, unmounting or closing a mapping over one of the disk's
 * own partitions leaves them and their superblocks as they are): a deployment takes it while the
 * image is still being inspected, saving the release two tool starts or more.
 */
export async function surveyDisk(disk: Disk): Promise<DiskSurvey> {
  const partitions = await partitionsOf(disk);
  return { partitions, mdMembers: await mdMembers([disk.path, ...partitions]) };
}

export interface ReleaseOptions {
  /** `surveyDisk(disk)`, started earlier; without it the release surveys the disk itself. */
  readonly survey?: Promise<DiskSurvey>;
  readonly log?: (message: string) => void;
}

/** Releases `disk` and wipes its signatures, or throws naming what still holds it. */
export async function releaseDisk(disk: Disk, { survey, log = () => {} }: ReleaseOptions = {}): Promise<ReleaseReport> {
  const system = disk.holders.find((h) => h.system);
  if (system) throw systemDisk(disk.path, `it holds ${system.mountpoint}, a filesystem of the running system`);

  const released: string[] = [];
  const failures: string[] = [];
  const ordered = [...disk.holders].sort((a, b) => b.depth - a.depth || KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
  const done = new Set<string>();
  for (const holder of ordered) {
    const key = `${holder.kind}:${holder.device}:${holder.mountpoint ?? ''}`;
    if (done.has(key)) continue; // an array over two partitions of this disk appears twice
    done.add(key);
    try {
      await releaseHolder(holder);
      released.push(describe(holder));
      log(`released ${describe(holder)}`);
    } catch (error) {
      failures.push(`${describe(holder)}: ${(error as Error).message}`);
    }
  }
  if (failures.length > 0) {
    // Nothing is wiped under what could not be released (a mounted filesystem, a running array
    // whose other disks a partition's wipe would write to), unless it is gone after all.
    const left = await stillHolding(disk);
    if (left) throw couldNotReleaseDisk(disk.path, describe(left), failures.join('\n'));
  } else if (done.size > 0) {
    // What was released leaves udev events (device removals) to be handled before the wipes.
    await settle();
  }
  // The probes and wipes of distinct devices run side by side (each tool start costs ~5 ms).
  // A survey that failed while the image was inspected is taken again.
  const { partitions, mdMembers: members } = await (survey?.catch(() => surveyDisk(disk)) ?? surveyDisk(disk));
  for (const member of members) {
    await exec('mdadm', ['--zero-superblock', member], { reject: false });
  }
  // Partitions first (filesystem, md, LVM and swap signatures inside them), then the disk
  // (both GPT headers and the protective MBR).
  await Promise.all(partitions.map((partition) => exec('wipefs', ['--all', '--force', partition], { reject: false })));
  await tool('wipefs', ['--all', '--force', disk.path]);
  await exec('blockdev', ['--rereadpt', disk.path], { reject: false });

  const left = await stillHolding(disk);
  if (left) throw couldNotReleaseDisk(disk.path, describe(left), failures.join('\n') || undefined);
  return { released };
}
