// The destination written in place, over a regular file instead of a loop device: old contents
// give way to the image (zero runs read as zeros, whether the destination zeroed them itself, as
// xfs_io's fpunch does on a file, or they were written), its ends are zeroed again when a write
// fails midway, and an image larger than the device is refused before anything is written.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';
import type { DiskImage } from '../../lib/formats/types.ts';
import { BlockDevice } from '../../lib/write/block-device.ts';
import { writeImageTo } from '../../lib/write/write-image.ts';
import { bytesOf, data, imageOf, zero } from '../helpers/extents.ts';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'byoi-block-device-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A "device": a file of `size` random bytes. */
function device(name: string, size: number): { path: string; before: Buffer } {
  const path = join(dir, name);
  const before = randomBytes(size);
  writeFileSync(path, before);
  return { path, before };
}

describe('BlockDevice over a regular file', () => {
  it('writes the image over old contents: data, zero runs as zeros, the rest of the device as it was but its last MiB', async () => {
    const { path, before } = device('written', 24 * MiB);
    const extents = [
      data(0, MiB + 4096),
      zero(MiB + 4096, 6 * MiB),
      data(7 * MiB + 4096, MiB - 4096),
      zero(8 * MiB, 512),
      data(8 * MiB + 512, 4 * MiB - 512),
      zero(12 * MiB, 4 * MiB),
    ];
    const written = await writeImageTo(imageOf(extents, 'qcow2'), new BlockDevice(path, 24 * MiB));
    expect(written).toBe(MiB + 4096 + MiB - 4096 + 4 * MiB - 512);
    const after = readFileSync(path);
    expect(sha256(after.subarray(0, 16 * MiB))).toBe(sha256(bytesOf(extents)));
    expect(after.subarray(16 * MiB, 23 * MiB).equals(before.subarray(16 * MiB, 23 * MiB))).toBe(true);
    expect(after.subarray(23 * MiB).every((b) => b === 0)).toBe(true);
  });

  it('zeroes both ends again when the write fails midway, after data reached the last MiB', async () => {
    const { path } = device('failed', 12 * MiB);
    // The decoder stops short of the virtual size: 8.5 MiB of data (one batch, written) reach into the last MiB first.
    const extents = [data(0, MiB), zero(MiB, 2 * MiB), data(3 * MiB, 8 * MiB + 512 * 1024)];
    const short: DiskImage = {
      ...imageOf(extents, 'qcow2'),
      info: { ...imageOf(extents, 'qcow2').info, virtualSize: 12 * MiB },
    };
    const error = await writeImageTo(short, new BlockDevice(path, 12 * MiB)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).detail).toBe(`decoder stopped at ${11 * MiB + 512 * 1024} of ${12 * MiB} bytes`);
    const after = readFileSync(path);
    expect(after.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    expect(after.subarray(11 * MiB).every((b) => b === 0)).toBe(true);
    expect(after.subarray(3 * MiB, 11 * MiB).equals((extents[2] as { data: Buffer }).data.subarray(0, 8 * MiB))).toBe(
      true,
    );
  });

  it('refuses an image larger than the device before writing anything', async () => {
    const { path, before } = device('small', 4 * MiB);
    const error = await writeImageTo(
      imageOf([data(0, 4 * MiB), zero(4 * MiB, 4096)], 'qcow2'),
      new BlockDevice(path, 4 * MiB),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as ByoiError).message).toBe(
      `image provided has a size of ${4 * MiB + 4096} bytes which is larger than device of ${4 * MiB} bytes`,
    );
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});
