// Steps both deployment pipelines share (agent/deploy.ts, which holds the image in RAM, and
// agent/deploy-stream.ts, which writes it as it arrives): the disk choice, the config drive's
// network, and what follows the write.
import { writeConfigDrive } from '../lib/configdrive/index.ts';
import { nicLinks, nicsToConfigure, physicalNics } from '../lib/configdrive/network.ts';
import { withLinks, type NetworkConfig } from '../lib/configdrive/network-config.ts';
import type { Disk } from '../lib/disk/discover.ts';
import { fixGpt, rereadPartitionTable } from '../lib/disk/gpt.ts';
import type { DiskChoice, Job } from '../lib/job.ts';
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
  const gpt = await fixGpt(disk.path, disk.logicalSectorSize);
  await rereadPartitionTable(disk.path);
  report.endPhase({ gpt });

  if (job.configDrive) {
    report.phase('configdrive', 'Creating the config drive');
    const drive = await writeConfigDrive(disk.path, job.configDrive, network ? { network } : {});
    report.endPhase({ instanceId: drive.uuid, partition: drive.partition.number, action: drive.partition.action });
  }
}

/** The outcome, then the reboot onto the disk unless the job says not to. */
export async function doneAndReboot(disk: Disk, job: Job, report: Reporter): Promise<void> {
  report.done(`Image deployed on ${disk.path}`);
  if (job.noReboot) return;
  report.logger.info({ phase: 'reboot' }, 'Rebooting');
  await reboot();
}
