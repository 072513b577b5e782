// A raw image: the disk is the file's bytes as they are. All-zero blocks are reported as zero
// extents so a file target gets holes and a block device can be zeroed without copying zeros.
import type { DiskImage, Extent, ImageInfo, ImageSource } from './types.ts';

/** Zero detection granularity: small enough to find holes, large enough to scan at memory speed. */
const BLOCK = 64 * 1024;
/**
 * Data extents never cross a multiple of this, so a read stays inside one chunk of a ChunkedBuffer
 * (whose chunk size is a multiple of it) and comes back as a view, not a copy.
 */
const MAX_DATA_EXTENT = 4 * 1024 * 1024;

const ZEROS = Buffer.alloc(BLOCK);

function isAllZero(block: Buffer): boolean {
  return block.length === BLOCK ? block.equals(ZEROS) : block.equals(ZEROS.subarray(0, block.length));
}

export function openRaw(source: ImageSource): DiskImage {
  let info: ImageInfo | undefined;
  return {
    get info(): ImageInfo {
      info ??= {
        format: 'raw',
        virtualSize: source.size,
        fileSize: source.size,
        allocatedBytes: countDataBytes(source),
        features: {},
      };
      return info;
    },
    extents: () => rawExtents(source),
  };
}

function countDataBytes(source: ImageSource): number {
  let total = 0;
  for (let offset = 0; offset < source.size; offset += BLOCK) {
    const length = Math.min(BLOCK, source.size - offset);
    if (!isAllZero(source.read(offset, length))) total += length;
  }
  return total;
}

async function* rawExtents(source: ImageSource): AsyncGenerator<Extent> {
  let runStart = 0;
  let runIsZero = false;
  for (let offset = 0; offset < source.size; offset += BLOCK) {
    const length = Math.min(BLOCK, source.size - offset);
    const zero = isAllZero(source.read(offset, length));
    const boundary = !zero && offset % MAX_DATA_EXTENT === 0;
    if (offset > runStart && (zero !== runIsZero || boundary)) {
      yield extent(source, runStart, offset - runStart, runIsZero);
      runStart = offset;
    }
    runIsZero = zero;
  }
  if (source.size > runStart) yield extent(source, runStart, source.size - runStart, runIsZero);
}

function extent(source: ImageSource, offset: number, length: number, zero: boolean): Extent {
  return zero ? { offset, length, zero: true } : { offset, length, data: source.read(offset, length) };
}
