// The check of one mutation run, whatever the format: shared by the qcow2 and VMDK/OVA mutation
// tests (test/formats/*-mutation.test.ts) and the long qcow2 campaign (via test/helpers/qcow2-mutate.ts).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { ByoiError } from '../../lib/errors.ts';
import { isZero, type DiskImage } from '../../lib/formats/types.ts';

/** A run stops reading after this much data: a mutated map may legally describe a huge disk. */
export const DATA_CAP = 64 * 1024 * 1024;
/** Above this virtual size, zero extents are not hashed and qemu is not asked. */
export const HASHED_SIZE = 16 * 1024 * 1024;

/** mulberry32: small, seedable, good enough to pick mutations. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Outcome = { kind: 'refused' } | { kind: 'capped' } | { kind: 'decoded'; sha256: string | undefined };

/**
 * Opens a mutated image with `open` and walks its extents, checking the extent contract (contiguous,
 * non-empty, data as long as the extent, ending at the virtual size) and hashing the disk when it is
 * small. `decoded` runs after a complete walk, inside the refusal catch, with the image, the data
 * bytes read and the source (for checks of its own). A refused-image ByoiError is a clean outcome;
 * anything else is thrown.
 */
export async function decodeMutant(
  bytes: Buffer,
  open: (source: ChunkedBuffer) => DiskImage,
  decoded?: (image: DiskImage, data: number, source: ChunkedBuffer) => Promise<void>,
): Promise<Outcome> {
  const source = new ChunkedBuffer(64 * 1024);
  source.append(bytes);
  try {
    const image = open(source);
    const hashed = image.info.virtualSize <= HASHED_SIZE;
    const hash = createHash('sha256');
    let position = 0;
    let data = 0;
    for await (const extent of image.extents()) {
      if (extent.offset !== position || !(extent.length > 0))
        throw new Error(`extent [${extent.offset}, +${extent.length}) after ${position}`);
      if (isZero(extent)) {
        if (hashed) hash.update(Buffer.alloc(extent.length));
      } else {
        if (extent.data.length !== extent.length)
          throw new Error(`extent of ${extent.length} bytes carries ${extent.data.length}`);
        if (hashed) hash.update(extent.data);
        data += extent.length;
        if (data > DATA_CAP) return { kind: 'capped' };
      }
      position += extent.length;
    }
    if (position !== image.info.virtualSize)
      throw new Error(`extents end at ${position}, virtual size ${image.info.virtualSize}`);
    await decoded?.(image, data, source);
    return { kind: 'decoded', sha256: hashed ? hash.digest('hex') : undefined };
  } catch (error) {
    if (error instanceof ByoiError && error.kind === 'refused-image') return { kind: 'refused' };
    throw error;
  }
}

/** sha256 of `qemu-img convert -f <format> -O raw` of the mutated bytes, or undefined when qemu refuses the file too. */
export function qemuSha256(bytes: Buffer, dir: string, format: 'qcow2' | 'vmdk'): string | undefined {
  const image = join(dir, `mutant.${format}`);
  const raw = join(dir, 'mutant.raw');
  writeFileSync(image, bytes);
  try {
    execFileSync('qemu-img', ['convert', '-f', format, '-O', 'raw', image, raw], { stdio: 'ignore', timeout: 20_000 });
    return createHash('sha256').update(readFileSync(raw)).digest('hex');
  } catch {
    return undefined;
  } finally {
    rmSync(raw, { force: true });
  }
}
