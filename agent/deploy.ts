// The deployment pipeline: plan -> download -> verify -> inspect -> release -> write -> GPT ->
// config drive -> done -> reboot. Invariant: nothing writes to any disk (not even the release's signature wipe)
// until the image is fully downloaded, its checksum verified and its structure decoded end to end.
import { verifyChecksum } from '../lib/checksum.ts';
import { discoverDisks } from '../lib/disk/discover.ts';
import { fixGpt, rereadPartitionTable } from '../lib/disk/gpt.ts';
import { releaseDisk } from '../lib/disk/release.ts';
import { chooseDisk } from '../lib/disk/select.ts';
import { writeConfigDrive } from '../lib/configdrive/index.ts';
import { verifyImage, writeImage } from '../lib/disk/writer.ts';
import { download, type DownloadEvent, type DownloadSettings } from '../lib/download.ts';
import { DeploymentCancelled } from '../lib/errors.ts';
import { exec, withToolHelper } from '../lib/exec.ts';
import { checkImage } from '../lib/formats/check.ts';
import type { Job, Target } from '../lib/job.ts';
import { ramBudget } from '../lib/memory.ts';
import { redactUrl } from '../lib/redact.ts';
import { reboot } from '../lib/reboot.ts';
import type { Reporter } from './reporter.ts';

/** OVH: disk group 0 means automatic, and the default group is 1. */
function diskChoice(target: Target): Target {
  return 'diskGroupId' in target && target.diskGroupId === 0 ? { diskGroupId: 1 } : target;
}

function logDownloadEvent(log: Reporter['logger'], event: DownloadEvent): void {
  if (event.kind === 'retry') log.warn({ phase: 'download', attempt: event.attempt, delayMs: event.delayMs, resumeFrom: event.resumeFrom, cause: event.cause }, 'download interrupted: retrying');
  else log.warn({ phase: 'download', reason: event.reason }, 'download starting over');
}

/** `settings`: how to download (timeouts, retries, extra CA), not what: that is the job. */
export function deploy(job: Job, report: Reporter, settings: DownloadSettings = {}): Promise<void> {
  // The tools are started by a helper forked now, before the image fills RAM (lib/exec.ts).
  return withToolHelper(() => pipeline(job, report, settings));
}

async function pipeline(job: Job, report: Reporter, settings: DownloadSettings): Promise<void> {
  const log = report.logger;

  report.phase('plan', 'Choosing the disk');
  const budget = ramBudget(job.ramSize);
  const disk = await chooseDisk(await discoverDisks(), diskChoice(job.target));
  log.info({ disk: disk.path, diskSize: disk.size, sectorSize: disk.logicalSectorSize, ramBudget: budget, type: job.type, url: redactUrl(job.url), description: job.description }, 'plan');

  report.phase('download', 'Downloading image', null);
  const { image: source, digest } = await download({
    ...settings,
    url: job.url,
    headers: job.httpHeaders,
    type: job.type,
    budget,
    ...(job.checksum && { checksumType: job.checksum.type }),
    onProgress: (done, total) => report.progress(done, total),
    onEvent: (event) => logDownloadEvent(log, event),
  });
  report.endPhase({ bytes: source.size });

  if (job.checksum && digest !== undefined) {
    report.phase('verify', `Verifying ${job.checksum.type} checksum`);
    verifyChecksum(job.checksum, digest);
    report.setChecksum(digest);
  }

  report.phase('inspect', 'Inspecting image');
  // The image stays in RAM through the write: decompression runs lean to keep the peak down.
  const image = await checkImage(source, job.type, disk, { lean: true });
  // Every extent decoded once, so a refusal found only while decoding comes before any write.
  report.phaseTotal(image.info.virtualSize);
  const verified = await verifyImage(image, ({ done, total }) => {
    report.checkpoint();
    report.progress(done, total);
  });
  report.endPhase({ format: image.info.format, virtualSize: image.info.virtualSize, ...(image.info.compression && { compression: image.info.compression }) });

  report.phase('release', `Releasing ${disk.path}`);
  await releaseDisk(disk, (message) => log.info({ disk: disk.path }, message));
  report.endPhase();

  report.phase('write', `Writing image on ${disk.path}`, image.info.virtualSize);
  await writeImage(image, disk.path, {
    verified,
    onProgress: ({ done, total }) => {
      report.checkpoint(); // cancelled: the writer stops, the first MiB (written last) never lands
      report.progress(done, total);
    },
  });
  report.endPhase();

  try {
    report.phase('partitions', 'Checking the partition table');
    await rereadPartitionTable(disk.path);
    const gpt = await fixGpt(disk.path, disk.logicalSectorSize);
    report.endPhase({ gpt });

    if (job.configDrive) {
      report.phase('configdrive', 'Creating the config drive');
      const drive = await writeConfigDrive(disk.path, job.configDrive);
      report.endPhase({ instanceId: drive.uuid, partition: drive.partition.number, action: drive.partition.action });
    }
  } catch (error) {
    // Cancelled once the image is written: no partition table either, as when cancelled during the write.
    if (error instanceof DeploymentCancelled) await exec('wipefs', ['--all', '--force', disk.path], { reject: false });
    throw error;
  }

  report.done(`Image deployed on ${disk.path}`);
  if (job.noReboot) return;
  log.info({ phase: 'reboot' }, 'Rebooting');
  await reboot();
}
