// The inspect step of a deployment: is the downloaded file what the job says, does it fit the
// disk, is it laid out for the disk's sector size? Reads only the image; nothing is written.
import {
  imageLargerThanDevice,
  mbrSectorSizeMismatch,
  noPartitionTable,
  noPartitionTableInDisk,
  sectorSizeMismatch,
} from '../errors.ts';
import { openCompressedRaw, type FirstPass } from './compressed-raw.ts';
import { compressions, type Compression } from './decompress.ts';
import { detectFormat, gptSectorSize } from './detect.ts';
import { bufferSource, guestReader, type GuestReader } from './guest.ts';
import { PROBE_BYTES, readImageTable, type ImageTable } from './image-partitions.ts';
import { openImage } from './open.ts';
import type { Qcow2Options } from './qcow2.ts';
import type { DiskImage } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';

export interface DiskFacts {
  readonly size: number;
  readonly logicalSectorSize: number;
}

export interface CheckOptions extends Qcow2Options {
  /** A compressed raw image's first decoding pass: compressed bytes read of the file's. */
  readonly onDecodeProgress?: (done: number, total: number) => void;
  /**
   * A compressed raw image's first pass, if one already ran over these bytes (while they arrived:
   * lib/formats/early-check.ts): taken instead of decoding. Undefined: decoded here.
   */
  readonly firstPass?: (format: Compression) => Promise<FirstPass | undefined>;
}

/** A hybrid ISO (or anything else) may carry an MBR that detection names otherwise. */
function hasMbrSignature(source: ImageSource): boolean {
  return source.size >= 512 && source.read(510, 2).equals(Buffer.from([0x55, 0xaa]));
}

/** An image that passed inspection, with what later steps plan from before the first write. */
export interface CheckedImage {
  readonly image: DiskImage;
  /** Its guest bytes, read without writing anything. */
  readonly guest: GuestReader;
  /** Its partition table; undefined when byoi reads none in it (a hybrid ISO's MBR, a protective MBR alone). */
  readonly table: ImageTable | undefined;
}

/**
 * Opens the image as the job's type and refuses, with OVH's sentences, a qcow2 that is not one,
 * an image whose disk holds no partition table (raw or not, in the same words), an image larger
 * than the disk, and a GPT or an MBR made for another sector size than the disk's. A raw image that
 * arrives compressed is decoded once here (lib/formats/compressed-raw.ts): its partition table is
 * looked for in the decoded disk.
 */
export async function checkImage(
  source: ImageSource,
  type: 'qcow2' | 'raw' | 'ova',
  disk: DiskFacts,
  options: CheckOptions = {},
): Promise<CheckedImage> {
  const detection = detectFormat(source);
  const compression =
    type === 'raw' && compressions.has(detection.format) ? (detection.format as Compression) : undefined;
  const firstPass = compression && (await options.firstPass?.(compression));
  const decoding = {
    limit: disk.size,
    ...(options.keepDecoded !== undefined && { keepDecoded: options.keepDecoded }),
    ...(options.onDecodeProgress && { onProgress: options.onDecodeProgress }),
    ...(firstPass && { firstPass }),
  };
  const compressed = compression && (await openCompressedRaw(source, compression, decoding));
  if (type === 'raw')
    checkPartitionTable(
      compressed ? bufferSource(compressed.head) : source,
      compressed ? detection.description : undefined,
    );
  const image = compressed ?? openImage(source, type, options);
  // A compressed file's bytes are not its guest bytes: those are decoded.
  const guest = guestReader(image, compressed ? undefined : source);
  const { virtualSize } = image.info;
  if (virtualSize > disk.size) throw imageLargerThanDevice(virtualSize, disk.size);
  if (type !== 'raw') {
    const [head] = await guest.read([{ offset: 0, length: Math.min(PROBE_BYTES, virtualSize) }]);
    refuseUnpartitioned(bufferSource(head!), type);
  }
  const table = await readImageTable(guest);
  if (table?.sectorSize !== undefined && table.sectorSize !== disk.logicalSectorSize) {
    throw table.label === 'gpt'
      ? sectorSizeMismatch(table.sectorSize, disk.logicalSectorSize)
      : mbrSectorSizeMismatch(table.sectorSize, disk.logicalSectorSize);
  }
  return { image, guest, table };
}

function isPartitioned(head: ImageSource): { partitioned: boolean; description: string } {
  const detection = detectFormat(head);
  const partitioned =
    detection.format === 'gpt' ||
    detection.format === 'mbr' ||
    gptSectorSize(head) !== undefined ||
    (detection.format === 'iso9660' && hasMbrSignature(head));
  return { partitioned, description: detection.description };
}

/**
 * Refuses, with OVH's sentence, a raw disk whose first bytes (`head`) hold no partition table.
 * `container` names what the disk came in (a compressed file), for the message.
 */
export function checkPartitionTable(head: ImageSource, container?: string): void {
  const { partitioned, description } = isPartitioned(head);
  if (!partitioned) throw noPartitionTable(container ? `${description}, inside ${container}` : description);
}

/** Refuses a disk whose first bytes (`head`) hold a GPT made for another sector size than the disk's (the streaming mode's check). */
export function checkSectorSize(head: ImageSource, sectorSize: number): void {
  const imageSectors = gptSectorSize(head);
  if (imageSectors !== undefined && imageSectors !== sectorSize) throw sectorSizeMismatch(imageSectors, sectorSize);
}

/** OVH refuses a raw image without a partition table; byoi refuses any image whose disk has none. */
function refuseUnpartitioned(guest: ImageSource, type: string): void {
  const { partitioned, description } = isPartitioned(guest);
  if (!partitioned) throw noPartitionTableInDisk(type, description);
}
