// Decodes a DiskImage the way a writer consumes it, checking the extent contract on the way:
// guest order, no gaps or overlaps, exact lengths, and coverage of exactly [0, virtualSize).
import { createHash } from 'node:crypto';
import { isZero, type DataExtent, type DiskImage } from '../../lib/formats/types.ts';

const ZEROS = Buffer.alloc(1024 * 1024);

export interface Decoded {
  sha256: string;
  extents: number;
}

/** `eachData`: shown every data extent as the writer would get it. */
export async function decodeToSha256(image: DiskImage, eachData?: (extent: DataExtent) => void): Promise<Decoded> {
  const hash = createHash('sha256');
  let position = 0;
  let extents = 0;
  for await (const extent of image.extents()) {
    if (extent.offset !== position) throw new Error(`extent at ${extent.offset}, expected ${position}`);
    if (!Number.isSafeInteger(extent.length) || extent.length <= 0)
      throw new Error(`extent of length ${extent.length}`);
    if (isZero(extent)) {
      for (let left = extent.length; left > 0; left -= ZEROS.length)
        hash.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
    } else {
      if (extent.data.length !== extent.length)
        throw new Error(`extent of ${extent.length} bytes carries ${extent.data.length}`);
      hash.update(extent.data);
      eachData?.(extent);
    }
    position += extent.length;
    extents++;
  }
  if (position !== image.info.virtualSize)
    throw new Error(`extents end at ${position}, virtual size is ${image.info.virtualSize}`);
  return { sha256: hash.digest('hex'), extents };
}
