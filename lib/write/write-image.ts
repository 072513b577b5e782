// Writes a DiskImage onto a destination (destination.ts): a regular file or a block device. Knows
// nothing of image formats, nor, past the choices below, of the destination's kind: a destination
// written in place must hold the image and gets it decoded end to end before its first byte.
import { ByoiError, cannotWriteImage, imageLargerThanDevice, internalWriteError } from '../errors.ts';
import type { DiskImage } from '../formats/types.ts';
import { destinationAt, type Destination } from './destination.ts';
import { ExtentWriter, type ExtentCallbacks } from './extent-writer.ts';
import { verifyImage, type VerifiedImage } from './verify.ts';

export interface WriteOptions extends ExtentCallbacks {
  /**
   * The result of `verifyImage(image)` when the caller has already decoded the image end to end.
   * Otherwise a destination written in place (a block device) gets that dry decoding pass before
   * its first byte is written, so that a refusal found only while decoding (a compressed cluster
   * that does not inflate) leaves it untouched. A regular file never needs it: it is written to a
   * temporary sibling and renamed into place only on success.
   */
  verified?: VerifiedImage;
}

/** Writes `image` onto `path`; returns the guest bytes written as data. */
export async function writeImage(image: DiskImage, path: string, options: WriteOptions = {}): Promise<number> {
  return writeImageTo(image, await destinationAt(path), options);
}

/** Writes `image` onto `destination`; returns the guest bytes written as data. */
export async function writeImageTo(
  image: DiskImage,
  destination: Destination,
  options: WriteOptions = {},
): Promise<number> {
  const { virtualSize } = image.info;
  if (destination.capacity !== undefined && virtualSize > destination.capacity)
    throw imageLargerThanDevice(virtualSize, destination.capacity);
  let verified: VerifiedImage | undefined;
  if (destination.inPlace) {
    if (options.verified && options.verified.image !== image)
      throw new Error('verified is the verification of another image');
    verified = options.verified ?? (await verifyImage(image));
  }
  const opened = await destination.open(virtualSize).catch((error: unknown) => {
    throw asWriteError(error, image);
  });
  try {
    await opened.prepare();
    const written = await new ExtentWriter(opened, verified?.longZeroRuns ?? []).write(image, options);
    await opened.finish();
    return written;
  } catch (error) {
    await opened.abort();
    throw asWriteError(error, image);
  }
}

/** A failed system call (EIO, ENOSPC, EFBIG...) is the destination's failure; anything else is byoi's own. */
function asWriteError(error: unknown, image: DiskImage): ByoiError {
  if (error instanceof ByoiError) return error;
  const cause = error instanceof Error ? error.message : String(error);
  const systemCall = error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string';
  return systemCall ? cannotWriteImage(image.info.format, cause) : internalWriteError(cause);
}
