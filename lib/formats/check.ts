// The inspect step of a deployment: is the downloaded file what the job says, does it fit the
// disk, is it laid out for the disk's sector size? Reads only the image; nothing is written.
import { imageLargerThanDevice, messages, refusedImage } from '../errors.ts';
import { openCompressedRaw } from './compressed-raw.ts';
import { compressions, type Compression } from './decompress.ts';
import { detectFormat, gptSectorSize } from './detect.ts';
import { openImage } from './open.ts';
import type { Qcow2Options } from './qcow2.ts';
import type { DiskImage, ImageSource } from './types.ts';

export interface CheckOptions extends Qcow2Options {
  /** A compressed raw image's first decoding pass: compressed bytes read of the file's. */
  readonly onDecodeProgress?: (done: number, total: number) => void;
}

export interface DiskFacts {
  readonly size: number;
  readonly logicalSectorSize: number;
}

/** A hybrid ISO (or anything else) may carry an MBR that detection names otherwise. */
function hasMbrSignature(source: ImageSource): boolean {
  return source.size >= 512 && source.read(510, 2).equals(Buffer.from([0x55, 0xaa]));
}

/** The first `length` guest bytes of a decoded image (zeros where it has none). */
async function guestHead(image: DiskImage, length: number): Promise<Buffer> {
  const head = Buffer.alloc(Math.min(length, image.info.virtualSize));
  for await (const extent of image.extents()) {
    if (extent.offset >= head.length) break;
    if (!('zero' in extent)) extent.data.copy(head, extent.offset, 0, Math.min(extent.length, head.length - extent.offset));
  }
  return head;
}

export function bufferSource(bytes: Buffer): ImageSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/**
 * Refuses, with OVH's sentence, a raw disk whose first bytes (`head`) hold no partition table.
 * `container` names what the disk came in (a compressed file), for the message.
 */
export function checkPartitionTable(head: ImageSource, container?: string): void {
  const found = detectFormat(head);
  const partitioned = found.format === 'gpt' || found.format === 'mbr' || gptSectorSize(head) !== undefined || (found.format === 'iso9660' && hasMbrSignature(head));
  if (!partitioned) throw refusedImage(messages.noPartitionTable(container ? `${found.description}, inside ${container}` : found.description));
}

/** Refuses a disk whose first bytes (`head`) hold a GPT made for another sector size than the disk's. */
export function checkSectorSize(head: ImageSource, sectorSize: number): void {
  const imageSectors = gptSectorSize(head);
  if (imageSectors !== undefined && imageSectors !== sectorSize) throw refusedImage(messages.sectorSizeMismatch(imageSectors, sectorSize));
}

/**
 * Opens the image as the job's type and refuses, with OVH's sentences, a qcow2 that is not one,
 * a raw image without a partition table, an image larger than the disk, and a GPT made for
 * another sector size than the disk's. A raw image that arrives compressed is decoded once here
 * (lib/formats/compressed-raw.ts): its partition table is looked for in the decoded disk.
 */
export async function checkImage(source: ImageSource, type: 'qcow2' | 'raw' | 'ova', disk: DiskFacts, options: CheckOptions = {}): Promise<DiskImage> {
  const detection = detectFormat(source);
  const decoding = { limit: disk.size, ...(options.onDecodeProgress && { onProgress: options.onDecodeProgress }) };
  const compressed = type === 'raw' && compressions.has(detection.format) ? await openCompressedRaw(source, detection.format as Compression, decoding) : undefined;
  // The raw disk's first bytes: the file's, or the decoded stream's.
  const rawHead = compressed ? bufferSource(compressed.head) : source;
  if (type === 'raw') checkPartitionTable(rawHead, compressed ? detection.description : undefined);
  const image = compressed ?? openImage(source, type, options);
  const { virtualSize } = image.info;
  if (virtualSize > disk.size) throw imageLargerThanDevice(virtualSize, disk.size);
  checkSectorSize(type === 'raw' ? rawHead : bufferSource(await guestHead(image, 8192)), disk.logicalSectorSize);
  return image;
}
