// Steps both deployment pipelines share (agent/deploy.ts, which holds the image in RAM, and
// agent/deploy-stream.ts, which writes it as it arrives): the disk choice, the config drive's
// network, the UEFI plan's log, and what follows the write (read-back, partitions, config drive,
// boot entry).
import { writeConfigDrive } from '../lib/configdrive/index.ts';
import { nicLinks, nicsToConfigure, physicalNics } from '../lib/configdrive/network.ts';
import { withLinks, type NetworkConfig } from '../lib/configdrive/network-config.ts';
import type { Disk } from '../lib/disk/discover.ts';
import { installBootEntry, type EfiBootPlan, type Platform } from '../lib/disk/efi.ts';
import { fixGpt, rereadPartitionTable } from '../lib/disk/gpt.ts';
import { verifyReadBack, type ReadBackRecord, type WrittenRecord } from '../lib/disk/read-back.ts';
import { DeploymentCancelled } from '../lib/errors.ts';
import type { DiskChoice, Job } from '../lib/job.ts';
import { exec } from '../lib/system/exec.ts';
import { reboot } from '../lib/system/reboot.ts';
import type { Reporter } from './reporter.ts';

/** OVH: disk group 0 means automatic, and the default group is 1. */
export function diskChoice(target: DiskChoice): DiskChoice {
  return 'diskGroupId' in target && target.diskGroupId === 0 ? { diskGroupId: 1 } : target;
}

/** A loop or network block device holds a disk for another machine; any other disk is this server's own. */
function isOwnDisk(disk: Disk): boolean {
  return !/^(loop|nbd)\d/.test(disk.name);
}

/**
 * The network for the config drive, its NICs known: given with their MACs, or, on this server's own
 * disk only, this server's NICs. Refused here, before the download, when it cannot be known.
 */
export function networkFor(job: Job, disk: Disk): NetworkConfig | undefined {
  if (!job.configDrive || !job.network) return undefined;
  return withLinks(job.network, isOwnDisk(disk) ? nicLinks(nicsToConfigure(physicalNics())) : undefined);
}

/** After the write: the partition table re-read, the GPT's backup moved to the disk's end, the config drive. */
export async function partitionsAndConfigDrive(
  disk: Disk,
  job: Job,
  report: Reporter,
  network: NetworkConfig | undefined,
): Promise<void> {
  report.phase('partitions', 'Checking the partition table');
  // The table as it will stay, then one re-read: fixGpt reads the device itself, not the kernel's view.
  const gpt = await fixGpt(disk.path, disk.logicalSectorSize, disk.size);
  await rereadPartitionTable(disk.path);
  report.endPhase({ gpt });

  if (job.configDrive) {
    report.phase('configdrive', 'Creating the config drive');
    const drive = await writeConfigDrive(disk.path, job.configDrive, network ? { network } : {});
    report.endPhase({ instanceId: drive.uuid, partition: drive.partition.number, action: drive.partition.action });
  }
}

/** What the UEFI plan means, in the log: legacy BIOS, an entry planned, or none (--no-efi-check). */
export function logEfiPlan(log: Reporter['logger'], platform: Platform, efi: EfiBootPlan | undefined): void {
  if (!platform.uefi) log.info({ phase: 'inspect' }, 'legacy BIOS boot: no UEFI boot entry will be made');
  else if (efi) log.info({ phase: 'inspect', efi }, 'UEFI boot entry planned');
  else
    log.warn(
      { phase: 'inspect' },
      'UEFI boot, but the image has no EFI system partition or bootloader: no boot entry will be made (--no-efi-check)',
    );
}

/** Once the image is written: cancelled during `step`, the disk is left with no partition table, as when cancelled during the write. */
export async function noTableIfCancelled(disk: Disk, step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (error) {
    if (error instanceof DeploymentCancelled) await exec('wipefs', ['--all', '--force', disk.path], { reject: false });
    throw error;
  }
}

/** After the final flush: the written image read back around the page cache (`size`: the image's). */
export async function readBack(
  disk: Disk,
  size: number,
  record: WrittenRecord | ReadBackRecord,
  report: Reporter,
): Promise<void> {
  report.phase('read-back', `Reading ${disk.path} back`);
  const read = await verifyReadBack(disk.path, size, record);
  report.endPhase({ sha256: read.digest, dataBytes: record.dataBytes, direct: read.direct });
}

/** Once the disk holds the image: the UEFI boot entry, when one was planned. */
export async function bootEntry(
  platform: Platform,
  disk: Disk,
  efi: EfiBootPlan | undefined,
  report: Reporter,
): Promise<void> {
  if (!efi) return;
  report.phase('boot-entry', 'Creating the UEFI boot entry');
  const entry = await installBootEntry(platform.bootManager, disk.path, efi);
  report.endPhase({ entry: `Boot${entry}`, partition: efi.partition, loader: efi.loader });
}

/** The outcome, then the reboot onto the disk unless the job says not to. */
export async function doneAndReboot(disk: Disk, job: Job, report: Reporter): Promise<void> {
  report.done(`Image deployed on ${disk.path}`);
  if (job.noReboot) return;
  report.logger.info({ phase: 'reboot' }, 'Rebooting');
  await reboot();
}
