// The inspect step of a deployment: is the downloaded file what the job says, does it fit the
// disk, is it laid out for the disk's sector size? Reads only the image; nothing is written.
import { imageLargerThanDevice, messages, refusedImage } from '../errors.ts';
import { detectFormat, gptSectorSize } from './detect.ts';
import { bufferSource, guestReader, type GuestReader } from './guest.ts';
import { PROBE_BYTES, readImageTable, type ImageTable } from './image-partitions.ts';
import { openImage } from './open.ts';
import type { Qcow2Options } from './qcow2.ts';
import type { DiskImage, ImageSource } from './types.ts';

export interface DiskFacts {
  readonly size: number;
  readonly logicalSectorSize: number;
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
 * than the disk, and a GPT or an MBR made for another sector size than the disk's.
 */
export async function checkImage(source: ImageSource, type: 'qcow2' | 'raw', disk: DiskFacts, options: Qcow2Options = {}): Promise<CheckedImage> {
  if (type === 'raw') refuseUnpartitioned(source, type);
  const image = openImage(source, type, options);
  const guest = guestReader(image, source);
  const { virtualSize } = image.info;
  if (virtualSize > disk.size) throw imageLargerThanDevice(virtualSize, disk.size);
  if (type !== 'raw') {
    const [head] = await guest.read([{ offset: 0, length: Math.min(PROBE_BYTES, virtualSize) }]);
    refuseUnpartitioned(bufferSource(head!), type);
  }
  const table = await readImageTable(guest);
  if (table?.sectorSize !== undefined && table.sectorSize !== disk.logicalSectorSize) {
    const message = table.label === 'gpt' ? messages.sectorSizeMismatch : messages.mbrSectorSizeMismatch;
    throw refusedImage(message(table.sectorSize, disk.logicalSectorSize));
  }
  return { image, guest, table };
}

/** OVH refuses a raw image without a partition table; byoi refuses any image whose disk has none. */
function refuseUnpartitioned(guest: ImageSource, type: string): void {
  const detection = detectFormat(guest);
  const partitioned = detection.format === 'gpt' || detection.format === 'mbr' || gptSectorSize(guest) !== undefined || (detection.format === 'iso9660' && hasMbrSignature(guest));
  if (partitioned) return;
  throw refusedImage(type === 'raw' ? messages.noPartitionTable(detection.description) : messages.noPartitionTableInDisk(type, detection.description));
}
