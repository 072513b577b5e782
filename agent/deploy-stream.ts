// The streaming mode (opt-in: `--stream`, job field `stream`): for images larger than the RAM
// budget. plan -> release -> download, decode and write at once, the first MiB held back ->
// verify the checksum, the partition table and (UEFI) the bootloader -> write the first MiB ->
// read-back (verifyWrite) -> GPT -> config drive -> UEFI boot entry.
//
// What it keeps of the normal mode's promise: the disk's old partition tables are gone before the
// first byte is written, and the image's own first MiB goes on only after the whole image arrived,
// its checksum matched and its stream decoded cleanly. What it gives up: the rest of the disk is
// overwritten before that is known, so a bad checksum or a broken stream leaves a disk with no
// partition table (never a half image that boots), and says so, instead of leaving it as it was.
import { verifyChecksum } from '../lib/download/checksum.ts';
import { discoverDisks } from '../lib/disk/discover.ts';
import {
  checkBootManager,
  espOf,
  planEfiBoot,
  thisPlatform,
  type EfiBootPlan,
  type Platform,
} from '../lib/disk/efi.ts';
import { releaseDisk } from '../lib/disk/release.ts';
import { chooseDisk } from '../lib/disk/select.ts';
import type { DownloadSettings } from '../lib/download/settings.ts';
import {
  ByoiError,
  cannotWriteImage,
  imageLargerThanDevice,
  noEsp,
  streamingAborted,
  streamingUnsupported,
} from '../lib/errors.ts';
import { checkPartitionTable, checkSectorSize } from '../lib/formats/check.ts';
import { bufferSource } from '../lib/formats/guest.ts';
import { readImageTable, TABLE_BYTES } from '../lib/formats/image-partitions.ts';
import type { Job } from '../lib/job.ts';
import { redactUrl } from '../lib/report/redact.ts';
import { BlockRecord, MAX_BLOCK } from '../lib/stream/block-record.ts';
import { decodeStream } from '../lib/stream/decode-stream.ts';
import { streamImage } from '../lib/stream/fetch.ts';
import { qcow2StreamPieces } from '../lib/stream/qcow2-stream.ts';
import { tableFromHead, writtenImage } from '../lib/stream/held-head.ts';
import { StreamWriter } from '../lib/stream/stream-writer.ts';
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
import type { Reporter } from './reporter.ts';

/** The first MiB: partition tables and boot code, held back until the image is verified. */
const HEAD = 1024 * 1024;

/** A disk piece at its guest offset. */
interface Piece {
  readonly offset: number;
  readonly data: Buffer;
}

/** The disk's first `length` bytes (fewer if it is shorter), and the disk again from its start. */
async function headOf(
  disk: AsyncIterable<Buffer>,
  length: number,
): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const iterator = disk[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let held = 0;
  while (held < length) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
    held += next.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* seen;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { head: Buffer.concat(seen).subarray(0, length), all: all() };
}

async function* inOrder(disk: AsyncIterable<Buffer>): AsyncGenerator<Piece> {
  let offset = 0;
  for await (const data of disk) {
    yield { offset, data };
    offset += data.length;
  }
}

/** Refuses an image whose table, read whole from `head` (its first bytes), has no EFI system partition. */
async function refuseWithoutEsp(head: Buffer, size: number): Promise<void> {
  const { table, whole } = await tableFromHead(head, size);
  if (whole && !espOf(table)) throw noEsp();
}

/** `platform`: the firmware and its boot manager, as for agent/deploy.ts. */
export async function deployStreaming(
  job: Job,
  report: Reporter,
  settings: DownloadSettings,
  platform: Platform = thisPlatform(),
): Promise<void> {
  const log = report.logger;
  if (job.type === 'ova') throw streamingUnsupported('an OVA (its disk is read through the whole archive)');

  report.phase('plan', 'Choosing the disk');
  const disk = await chooseDisk(await discoverDisks(), diskChoice(job.target));
  const network = networkFor(job, disk);
  const efiCheck = platform.uefi && !job.skipEfiCheck;
  // UEFI: the entry is made after the write; a boot manager that cannot list entries fails now. With
  // skipEfiCheck too: whether an entry will be made is known only once the body is written.
  if (platform.uefi) await checkBootManager(platform.bootManager);
  log.info(
    {
      disk: disk.path,
      diskSize: disk.size,
      sectorSize: disk.logicalSectorSize,
      type: job.type,
      mode: 'streaming',
      url: redactUrl(job.url),
      description: job.description,
    },
    'plan',
  );

  report.phase('download', 'Connecting to the image server');
  const image = await streamImage({
    ...settings,
    url: job.url,
    headers: job.httpHeaders,
    ...(job.checksum && { checksumType: job.checksum.type }),
    onResume: (from, cause) => log.warn({ phase: 'write', resumeFrom: from, cause }, 'download interrupted: resuming'),
    ...(report.cancelled && { stop: report.cancelled }),
  });
  // The first bytes say what the file is: refusals that need no write come before the release.
  let pieces: AsyncIterable<Piece>;
  let format: string;
  /** Read-back blocks: each one's bytes come in order (a qcow2 cluster's, or a raw stream's). */
  let block = MAX_BLOCK;
  if (job.type === 'qcow2') {
    const decoded = await qcow2StreamPieces(image.body, image.length);
    pieces = decoded.pieces;
    format = 'qcow2';
    block = Math.min(MAX_BLOCK, decoded.clusterSize);
    if (decoded.virtualSize > disk.size) throw imageLargerThanDevice(decoded.virtualSize, disk.size);
  } else {
    const decoded = await decodeStream(image.body);
    if (decoded.format === 'raw' && image.length !== null && image.length > disk.size)
      throw imageLargerThanDevice(image.length, disk.size);
    // The disk's first MiB, decoded before anything is written: a file that is no disk is refused
    // with the disk untouched (it is checked again, with the checksum, before it is written).
    const { head, all } = await headOf(decoded.disk, HEAD);
    checkPartitionTable(
      bufferSource(head),
      decoded.format === 'raw' ? undefined : `a ${decoded.format}-compressed file`,
    );
    checkSectorSize(bufferSource(head), disk.logicalSectorSize);
    // An image with no EFI system partition at all is known from its table (its loader only once written).
    if (efiCheck) await refuseWithoutEsp(head, disk.size);
    pieces = inOrder(all);
    format = decoded.format === 'raw' ? 'raw' : `${decoded.format}-compressed raw`;
  }

  report.phase('release', `Releasing ${disk.path}`);
  await releaseDisk(disk, { log: (message) => log.info({ disk: disk.path }, message) });
  report.endPhase();

  report.phase(
    'write',
    `Downloading and writing ${format} image on ${disk.path} (streaming; the first MiB is written last)`,
    image.length,
  );
  const writer = await StreamWriter.open(disk.path, disk.size).catch((error: unknown) => {
    throw error instanceof ByoiError ? error : cannotWriteImage(format, (error as Error).message);
  });
  const record = job.verifyWrite ? new BlockRecord(block) : undefined;
  let efi: EfiBootPlan | undefined;
  // A qcow2's table is known once its first clusters have come (pieces never overlap): an image
  // without an ESP is refused then rather than once it is all downloaded.
  let tableBytes = efiCheck && job.type === 'qcow2' ? 0 : TABLE_BYTES;
  try {
    for await (const piece of pieces) {
      report.checkpoint(); // cancelled: the writer stops and zeroes the ends, the first MiB never lands
      try {
        await writer.write(piece.offset, piece.data);
        record?.add(piece.offset, piece.data);
      } catch (error) {
        throw error instanceof ByoiError ? error : cannotWriteImage(format, (error as Error).message);
      }
      if (tableBytes < TABLE_BYTES && piece.offset < TABLE_BYTES) {
        tableBytes += Math.min(piece.data.length, TABLE_BYTES - piece.offset);
        if (tableBytes >= TABLE_BYTES) await refuseWithoutEsp(writer.head.subarray(0, TABLE_BYTES), disk.size);
      }
      report.progress(image.received(), image.length);
    }
    report.endPhase({ bytes: image.received(), written: writer.written });

    const digest = image.digest();
    if (job.checksum && digest !== undefined) {
      report.phase('verify', `Verifying ${job.checksum.type} checksum`);
      verifyChecksum(job.checksum, digest);
      report.setChecksum(digest);
    }
    report.phase('inspect', 'Checking the partition table held back');
    const head = bufferSource(writer.head);
    if (job.type === 'raw') checkPartitionTable(head);
    checkSectorSize(head, disk.logicalSectorSize);
    if (platform.uefi) {
      // The ESP's bytes are on the disk once the body is flushed; its table, in the head.
      await writer.flushBody();
      const written = writtenImage(disk.path, writer.head, writer.written);
      efi = await planEfiBoot(platform, await readImageTable(written), written, disk.logicalSectorSize, {
        ...(job.efiBootloaderPath && { loaderPath: job.efiBootloaderPath }),
        check: !job.skipEfiCheck,
      });
    }
    logEfiPlan(log, platform, efi);
    report.phase('write', `Writing the first MiB on ${disk.path}`);
    await writer.finish().catch((error: unknown) => {
      throw cannotWriteImage(format, (error as Error).message);
    });
  } catch (error) {
    await writer.abort();
    const failure = error instanceof ByoiError ? error : cannotWriteImage(format, (error as Error).message);
    throw streamingAborted(failure, disk.path);
  }

  await noTableIfCancelled(disk, async () => {
    if (record) await readBack(disk, writer.written, record, report);
    await partitionsAndConfigDrive(disk, job, report, network);
  });
  await bootEntry(platform, disk, efi, report);
  await doneAndReboot(disk, job, report);
}
