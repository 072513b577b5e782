// A raw image: the disk is the file's bytes as they are. All-zero blocks are reported as zero
// extents so a file target gets holes and a block device can be zeroed without copying zeros.
import type { DiskImage, Extent, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';

/** Zero detection granularity: small enough to find holes, large enough to scan at memory speed. */
const BLOCK = 64 * 1024;
/**
 * Data extents never cross a multiple of this, and the image is scanned a window of this size at a
 * time: one read per window (a view into RAM, or one pread from a file), its blocks checked in place.
 * A ChunkedBuffer's chunk size is a multiple of it, so the window is a view, not a copy.
 */
const WINDOW = 4 * 1024 * 1024;

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

/** Each window of the image with whether each of its blocks is all zeros. */
function* windows(source: ImageSource): Generator<{ offset: number; bytes: Buffer; zero: boolean[] }> {
  for (let offset = 0; offset < source.size; offset += WINDOW) {
    const bytes = lendOrRead(source, offset, Math.min(WINDOW, source.size - offset));
    const zero: boolean[] = [];
    for (let at = 0; at < bytes.length; at += BLOCK) zero.push(isAllZero(bytes.subarray(at, at + BLOCK)));
    yield { offset, bytes, zero };
  }
}

function countDataBytes(source: ImageSource): number {
  let total = 0;
  for (const window of windows(source)) {
    window.zero.forEach((zero, i) => {
      if (!zero) total += Math.min(BLOCK, window.bytes.length - i * BLOCK);
    });
    source.recycle?.(window.bytes);
  }
  return total;
}

/**
 * Gives a window's buffer back to the source once the scan and every data extent cut from it are
 * done with it. The scan holds one reference until it leaves the window.
 */
class WindowLease {
  private holders = 1;
  private readonly source: ImageSource;
  private readonly bytes: Buffer;

  constructor(source: ImageSource, bytes: Buffer) {
    this.source = source;
    this.bytes = bytes;
  }

  /** A release for one more holder, callable once. */
  hold(): () => void {
    this.holders++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.drop();
    };
  }

  drop(): void {
    if (--this.holders === 0) this.source.recycle?.(this.bytes);
  }
}

/** Runs of zero and data blocks; a data run also ends with its window, a zero run only at data. */
async function* rawExtents(source: ImageSource): AsyncGenerator<Extent> {
  let zeroStart = -1;
  for (const window of windows(source)) {
    const lease = new WindowLease(source, window.bytes);
    try {
      let dataStart = -1;
      for (let i = 0; i < window.zero.length; i++) {
        const at = i * BLOCK;
        if (window.zero[i]) {
          if (dataStart >= 0) yield dataExtent(window, dataStart, at, lease);
          dataStart = -1;
          if (zeroStart < 0) zeroStart = window.offset + at;
        } else {
          if (zeroStart >= 0) yield { offset: zeroStart, length: window.offset + at - zeroStart, zero: true };
          zeroStart = -1;
          if (dataStart < 0) dataStart = at;
        }
      }
      if (dataStart >= 0) yield dataExtent(window, dataStart, window.bytes.length, lease);
    } finally {
      lease.drop(); // also when the consumer stops early
    }
  }
  if (zeroStart >= 0) yield { offset: zeroStart, length: source.size - zeroStart, zero: true };
}

function dataExtent(window: { offset: number; bytes: Buffer }, start: number, end: number, lease: WindowLease): Extent {
  return {
    offset: window.offset + start,
    length: end - start,
    data: window.bytes.subarray(start, end),
    release: lease.hold(),
  };
}
