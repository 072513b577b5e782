// The dry pass: every extent decoded without writing, so that a refusal found only while decoding
// (a compressed cluster that does not inflate) comes before a destination written in place is touched.
import type { DiskImage } from '../formats/types.ts';
import { alignedPart, ZeroRuns, type Ranges } from './zero-runs.ts';

export interface WriteProgress {
  /** Guest bytes handled so far (written, zeroed or left as holes), in guest order. */
  readonly done: number;
  readonly total: number;
}

/** An image whose extents all decoded without error, and where its long zero runs lie. */
export interface VerifiedImage {
  readonly image: DiskImage;
  /** MiB-aligned [start, end) ranges of at least OFFLOAD_MIN bytes past the first MiB that read as zeros. */
  readonly longZeroRuns: Ranges;
}

/** Decodes every extent without writing (the image's dry pass if it has one): rejects as decoding would. */
export async function verifyImage(
  image: DiskImage,
  onProgress?: (progress: WriteProgress) => void,
): Promise<VerifiedImage> {
  const total = image.info.virtualSize;
  const longZeroRuns: [number, number][] = [];
  const runs = new ZeroRuns((start, end) => {
    const aligned = alignedPart(start, end);
    if (aligned) longZeroRuns.push(aligned);
  });
  for await (const extent of image.check?.() ?? image.extents()) {
    if ('zero' in extent && extent.zero) runs.add(extent.offset, extent.offset + extent.length);
    else runs.flush();
    if ('release' in extent) extent.release?.();
    onProgress?.({ done: extent.offset + extent.length, total });
  }
  runs.flush();
  return { image, longZeroRuns };
}
