// The deployment pipeline: plan -> download -> verify -> inspect -> release -> write -> GPT ->
// config drive -> done -> reboot. Invariant: nothing writes to any disk (not even the release's signature wipe)
// until the image is fully downloaded, its checksum verified and its structure decoded end to end.
import { verifyChecksum } from '../lib/download/checksum.ts';
import { discoverDisks } from '../lib/disk/discover.ts';
import { releaseDisk, surveyDisk } from '../lib/disk/release.ts';
import { chooseDisk } from '../lib/disk/select.ts';
import { planConfigDriveBeforeWrite } from '../lib/configdrive/image-plan.ts';
import { WrittenRecord } from '../lib/disk/read-back.ts';
import { verifyImage } from '../lib/write/verify.ts';
import { writeImage } from '../lib/write/write-image.ts';
import { download, type DownloadEvent, type DownloadSettings } from '../lib/download/download.ts';
import { EarlyCheck } from '../lib/formats/early-check.ts';
import { withToolHelper } from '../lib/system/exec.ts';
import { checkImage } from '../lib/formats/check.ts';
import { planEfiBoot, thisPlatform, type EfiBootPlan, type Platform } from '../lib/disk/efi.ts';
import type { Job } from '../lib/job.ts';
import type { Disk } from '../lib/disk/discover.ts';
import { collectGarbage } from '../lib/system/collect.ts';
import { ramBudget, roomForDecoded } from '../lib/system/memory.ts';
import { redactUrl } from '../lib/report/redact.ts';
import {
  bootEntry,
  diskChoice,
  doneAndReboot,
  logEfiPlan,
  networkFor,
  noTableIfCancelled,
  partitionsAndConfigDrive,
  readBack,
} from './deploy-steps.ts';
import { deployStreaming } from './deploy-stream.ts';
import type { Reporter } from './reporter.ts';

function logDownloadEvent(log: Reporter['logger'], event: DownloadEvent): void {
  if (event.kind === 'retry')
    log.warn(
      {
        phase: 'download',
        attempt: event.attempt,
        delayMs: event.delayMs,
        resumeFrom: event.resumeFrom,
        cause: event.cause,
      },
      'download interrupted: retrying',
    );
  else log.warn({ phase: 'download', reason: event.reason }, 'download starting over');
}

/** `settings`: how to download (timeouts, retries, extra CA), not what: that is the job. */
/** `platform`: the firmware and its boot manager (this system's by default; tests give their own). */
export function deploy(
  job: Job,
  report: Reporter,
  settings: DownloadSettings = {},
  platform: Platform = thisPlatform(),
): Promise<void> {
  // The tools are started by a helper forked now, before the image fills RAM (lib/system/exec.ts).
  return withToolHelper(() =>
    job.stream ? deployStreaming(job, report, settings, platform) : pipeline(job, report, settings, platform),
  );
}

async function pipeline(job: Job, report: Reporter, settings: DownloadSettings, platform: Platform): Promise<void> {
  const log = report.logger;

  report.phase('plan', 'Choosing the disk');
  const budget = ramBudget(job.ramSize);
  const disk = await chooseDisk(await discoverDisks(), diskChoice(job.target));
  const network = networkFor(job, disk);
  log.info(
    {
      disk: disk.path,
      diskSize: disk.size,
      sectorSize: disk.logicalSectorSize,
      ramBudget: budget,
      type: job.type,
      url: redactUrl(job.url),
      description: job.description,
      networkData: network !== undefined,
    },
    'plan',
  );

  // The image, its decoders and workers live only in writeFromRam: once it returns, nothing refers to them.
  const { virtualSize, record, efi } = await writeFromRam(job, report, settings, platform, disk, budget);
  // Its chunks are SharedArrayBuffers, freed only once no isolate refers to them (the digest worker,
  // the early pass's and the decompression pools have ended by now) and this one has collected them,
  // which V8 would do late (measured: not before the deployment ends): collected now, so that the
  // read-back and the config drive do not add to a peak that holds the image. Without either, what
  // follows (the partition table, the boot entry) holds next to nothing: the ~15 ms are not spent.
  if (record || job.configDrive) collectGarbage();

  await noTableIfCancelled(disk, async () => {
    if (record) await readBack(disk, virtualSize, record, report);
    await partitionsAndConfigDrive(disk, job, report, network);
  });

  await bootEntry(platform, disk, efi, report);

  await doneAndReboot(disk, job, report);
}

/** What the steps after the write need of it: nothing that holds the image. */
interface Written {
  virtualSize: number;
  record: WrittenRecord | undefined;
  efi: EfiBootPlan | undefined;
}

/** Download, verify, inspect, release and write: the part of the deployment that holds the image in RAM. */
async function writeFromRam(
  job: Job,
  report: Reporter,
  settings: DownloadSettings,
  platform: Platform,
  disk: Disk,
  budget: number,
): Promise<Written> {
  const log = report.logger;
  report.phase('download', 'Downloading image', null);
  // The dry decoding pass follows the bytes as they arrive; it only reads (lib/formats/early-check.ts).
  const early = new EarlyCheck(job.type, {
    room: (total, held) => roomForDecoded(budget, total, total - held),
    limit: disk.size,
  });
  // While the inspection waits for the pass: its progress, and a cancel seen at once (the pass called off).
  const progressOfThePass = (done: number, total: number) => {
    report.checkpoint();
    report.progress(done, total);
  };
  // Download, checksum, inspection and plans, up to the early pass's result: a failure among them
  // calls the pass off, which would otherwise decode on, holding what it keeps, while it is reported.
  const downloadAndInspect = async () => {
    const { image: source, digest } = await download({
      ...settings,
      url: job.url,
      headers: job.httpHeaders,
      type: job.type,
      budget,
      ...(job.checksum && { checksumType: job.checksum.type }),
      onProgress: (done, total) => report.progress(done, total),
      onData: (image, total) => early.follow(image, total),
      onEvent: (event) => logDownloadEvent(log, event),
      ...(report.cancelled && { stop: report.cancelled }),
    });
    report.endPhase({ bytes: source.size });

    if (job.checksum && digest !== undefined) {
      report.phase('verify', `Verifying ${job.checksum.type} checksum`);
      verifyChecksum(job.checksum, digest);
      report.setChecksum(digest);
    }

    report.phase('inspect', 'Inspecting image');
    // What the release will wipe, read while the inspection runs (it only reads); a failure is the
    // release's to report, if the deployment gets that far.
    const survey = surveyDisk(disk);
    survey.catch(() => undefined);
    // The image stays in RAM through the write: decompression runs lean to keep the peak down, and
    // keeps decoded clusters for the write only where the RAM budget and available RAM leave room.
    const { image, guest, table } = await checkImage(source, job.type, disk, {
      lean: true,
      keepDecoded: roomForDecoded(budget, source.size, 0),
      onDecodeProgress: (done, total) => report.progress(done, total),
      firstPass: (format) => early.firstPass(source, format, progressOfThePass),
    });
    if (job.configDrive) {
      // Refused here rather than after the write: no room, four primaries, two config-2 partitions.
      const plan = await planConfigDriveBeforeWrite(guest, table, disk, disk.path);
      log.info(
        {
          phase: 'inspect',
          configDrive: { action: plan.action, partition: plan.number, start: plan.start, sectors: plan.sectors },
        },
        'config drive planned',
      );
    }
    // UEFI: the image's ESP and bootloader, found before the write (refused without, unless told not to check).
    const efi = await planEfiBoot(platform, table, guest, disk.logicalSectorSize, {
      ...(job.efiBootloaderPath && { loaderPath: job.efiBootloaderPath }),
      check: !job.skipEfiCheck,
    });
    logEfiPlan(log, platform, efi);
    // Every extent decoded once, so a refusal found only while decoding comes before any write.
    report.phaseTotal(image.info.virtualSize);
    // A cancel while the early pass finishes calls it off, before anything is written.
    const decodedEarly = await early.result(source, image, progressOfThePass);
    if (decodedEarly) report.progress(image.info.virtualSize, image.info.virtualSize);
    const verified =
      decodedEarly ??
      (await verifyImage(image, ({ done, total }) => {
        report.checkpoint();
        report.progress(done, total);
      }));
    report.endPhase({
      format: image.info.format,
      virtualSize: image.info.virtualSize,
      ...(image.info.compression && { compression: image.info.compression }),
      decodedWhileDownloading: early.outcome,
      ...(early.waitedMs !== undefined && { decodingLeftMs: early.waitedMs }),
      ...(early.keptBytes > 0 && { decodedKeptBytes: early.keptBytes }),
    });
    return { image, verified, efi, survey };
  };
  const { image, verified, efi, survey } = await downloadAndInspect().catch((error: unknown) => {
    early.callOff();
    throw error;
  });

  report.phase('release', `Releasing ${disk.path}`);
  await releaseDisk(disk, { survey, log: (message) => log.info({ disk: disk.path }, message) });
  report.endPhase();

  report.phase('write', `Writing image on ${disk.path}`, image.info.virtualSize);
  const record = job.verifyWrite ? new WrittenRecord() : undefined;
  await writeImage(image, disk.path, {
    verified,
    onProgress: ({ done, total }) => {
      report.checkpoint(); // cancelled: the writer stops, the first MiB (written last) never lands
      report.progress(done, total);
    },
    ...(record && { onData: (offset: number, data: Buffer) => record.add(offset, data) }),
  });
  report.endPhase();
  return { virtualSize: image.info.virtualSize, record, efi };
}
