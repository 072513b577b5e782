// Hand-made DiskImages standing in for a decoder, for the writer's tests.
import { randomBytes } from 'node:crypto';
import type { DiskImage, Extent } from '../../lib/formats/types.ts';

/** An image of `extents` (which cover it in guest order), with a dry pass. */
export function imageOf(extents: Extent[], format: 'raw' | 'qcow2' = 'raw'): DiskImage {
  const virtualSize = extents.reduce((sum, e) => sum + e.length, 0);
  return {
    info: { format, virtualSize, fileSize: virtualSize, allocatedBytes: 0, features: {} },
    async *extents() {
      yield* extents;
    },
    async *check() {
      for (const extent of extents) yield { offset: extent.offset, length: extent.length, zero: 'zero' in extent };
    },
  };
}

export const data = (offset: number, length: number): Extent => ({ offset, length, data: randomBytes(length) });
export const zero = (offset: number, length: number): Extent => ({ offset, length, zero: true });

/** The bytes an image of `extents` describes. */
export function bytesOf(extents: Extent[]): Buffer {
  const bytes = Buffer.alloc(extents.reduce((sum, e) => sum + e.length, 0));
  for (const extent of extents) if ('data' in extent) extent.data.copy(bytes, extent.offset);
  return bytes;
}
