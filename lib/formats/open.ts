// Picks the decoder for an image: by content for `auto`, as told otherwise. Formats byoi
// recognises but cannot convert are refused here, before anything is written.
import { emptyImage, imageFormatMismatch, unsupportedImageFormat, vmdkUnsupported } from '../errors.ts';
import { openCompressedRaw } from './compressed-raw.ts';
import { compressions, type Compression } from './decompress.ts';
import { detectFormat } from './detect.ts';
import { openQcow2, type Qcow2Options } from './qcow2.ts';
import { openOva } from './ova.ts';
import { openRaw } from './raw.ts';
import { openVmdk } from './vmdk.ts';
import type { DetectedFormat, DiskImage, ImageFormat } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';

/** Containers and streams whose bytes are not a disk: writing them raw would give an unbootable disk. */
const notConvertible: ReadonlySet<DetectedFormat> = new Set(['vmdk', 'tar', 'gzip', 'xz', 'zstd', 'bzip2']);

/** A descriptor without its extents, or an ESX extent: what byoi reads instead. */
const vmdkNotOneFile = (description: string) =>
  vmdkUnsupported(`${description}; byoi reads monolithicSparse and streamOptimized VMDKs, one file each`);

/** A VMDK byoi decodes: a hosted sparse extent (KDMV), not a descriptor alone nor an ESX COWD extent. */
function isSparseVmdk(source: ImageSource): boolean {
  return source.size >= 4 && source.read(0, 4).toString('latin1') === 'KDMV';
}

/**
 * `options` apply to a qcow2 image (threads, decoded clusters kept between passes) and to a VMDK,
 * bare or in an OVA (all but `progressive`).
 */
export function openImage(source: ImageSource, type: ImageFormat, options: Qcow2Options = {}): DiskImage {
  if (source.size === 0) throw emptyImage();
  const detected = detectFormat(source);
  switch (type) {
    case 'qcow2':
      if (detected.format !== 'qcow2')
        throw imageFormatMismatch(formatName(detected.format), 'qcow2', detected.description);
      return openQcow2(source, options);
    case 'raw':
      return openRaw(source);
    case 'vmdk':
      if (detected.format !== 'vmdk')
        throw imageFormatMismatch(formatName(detected.format), 'vmdk', detected.description);
      if (!isSparseVmdk(source)) throw vmdkNotOneFile(detected.description);
      return openVmdk(source, options);
    case 'ova':
      if (detected.format !== 'tar')
        throw imageFormatMismatch(formatName(detected.format), 'ova', detected.description);
      return openOva(source, options);
    case 'auto':
      if (detected.format === 'qcow2') return openQcow2(source, options);
      if (isSparseVmdk(source)) return openVmdk(source, options);
      if (detected.format === 'vmdk') throw vmdkNotOneFile(detected.description);
      if (detected.format === 'tar') return openOva(source, options);
      if (notConvertible.has(detected.format)) throw unsupportedImageFormat(detected.format, detected.description);
      return openRaw(source);
  }
}

/** Disks, filesystems and unknown bytes are all "raw" to OVH's vocabulary. */
function formatName(format: DetectedFormat): string {
  if (format === 'tar') return 'ova';
  return format === 'qcow2' || notConvertible.has(format) ? format : 'raw';
}

export interface OpenOptions extends Qcow2Options {
  /** A compressed raw image may not decode to more than this many bytes (the target's size). */
  readonly limit?: number;
  /**
   * Bytes of decoded data a dry pass may keep for the write: qcow2's and a VMDK's batches, spread
   * over the image; a compressed raw image's windows of data, all of them or none (compressed-raw.ts).
   */
  readonly keepDecoded?: number;
}

/**
 * openImage, and a raw image that arrives compressed (gzip, xz, zstd, bzip2): that one is decoded
 * once to learn its size and refuse a corrupt stream (lib/formats/compressed-raw.ts). With `auto`,
 * a compressed file that holds an image format rather than a disk is refused.
 */
export async function openAnyImage(
  source: ImageSource,
  type: ImageFormat,
  options: OpenOptions = {},
): Promise<DiskImage> {
  if (source.size === 0) throw emptyImage();
  const detected = detectFormat(source);
  if ((type !== 'raw' && type !== 'auto') || !compressions.has(detected.format))
    return openImage(source, type, options);
  const image = await openCompressedRaw(source, detected.format as Compression, {
    ...(options.limit !== undefined && { limit: options.limit }),
    ...(options.keepDecoded !== undefined && { keepDecoded: options.keepDecoded }),
  });
  if (type === 'auto') {
    const inside = detectFormat({
      size: image.head.length,
      read: (offset, length) => image.head.subarray(offset, offset + length),
    });
    if (inside.format === 'qcow2' || notConvertible.has(inside.format))
      throw unsupportedImageFormat(
        `${detected.format}-compressed ${inside.format}`,
        `${inside.description}, inside ${detected.description}`,
      );
  }
  return image;
}
