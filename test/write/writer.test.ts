// The writer's contract with decoders, with hand-made DiskImages standing in for a decoder: a
// refusal found only while decoding (as a compressed cluster that fails to inflate) must leave
// the target untouched, and a decoder that breaks the extent contract must not produce output.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  truncateSync,
  openSync,
  readSync,
  closeSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destinationAt } from '../../lib/write/destination.ts';
import { verifyImage } from '../../lib/write/verify.ts';
import { writeImage } from '../../lib/write/write-image.ts';
import { qcow2BadCompressedCluster } from '../../lib/errors.ts';
import type { DiskImage, Extent } from '../../lib/formats/types.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';
import { cachedBytes } from '../helpers/page-cache.ts';

const MiB = 1024 * 1024;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'byoi-writer-'));
});
afterAll(() => {
  detachAllLoops();
  rmSync(dir, { recursive: true, force: true });
});

/** An image of `extents`; if `failAt` is given, decoding rejects when it reaches that extent. */
function image(extents: Extent[], failAt?: number): DiskImage {
  const virtualSize = extents.reduce((sum, e) => sum + e.length, 0);
  return {
    info: { format: 'qcow2', virtualSize, fileSize: virtualSize, allocatedBytes: 0, features: {} },
    async *extents() {
      for (const [index, extent] of extents.entries()) {
        if (index === failAt) throw qcow2BadCompressedCluster(123, 'zlib', 65536, 'it does not inflate');
        yield extent;
      }
    },
  };
}

const data = (offset: number, length: number): Extent => ({ offset, length, data: randomBytes(length) });
const zero = (offset: number, length: number): Extent => ({ offset, length, zero: true });

function sha256(path: string, length: number): string {
  const fd = openSync(path, 'r');
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) done += readSync(fd, buffer, done, length - done, done);
  closeSync(fd);
  return createHash('sha256').update(buffer).digest('hex');
}

describe('writeImage into a regular file', () => {
  it('leaves an existing target untouched and no temporary file when decoding fails midway', async () => {
    const target = join(dir, 'kept.raw');
    const before = randomBytes(MiB);
    writeFileSync(target, before);
    const failing = image([data(0, 2 * MiB), zero(2 * MiB, 4 * MiB), data(6 * MiB, MiB)], 2);
    await expect(writeImage(failing, target)).rejects.toThrow('does not inflate');
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((name) => name.includes('byoi-'))).toEqual([]);
  });

  it('writes extents in guest order, zeros as holes, and reports progress up to the virtual size', async () => {
    const extents = [data(0, 4096), zero(4096, 3 * MiB - 4096), data(3 * MiB, 5 * MiB + 11), zero(8 * MiB + 11, 100)];
    const target = join(dir, 'ordered.raw');
    const seen: number[] = [];
    const written = await writeImage(image(extents), target, { onProgress: ({ done }) => seen.push(done) });
    expect(written).toBe(4096 + 5 * MiB + 11);
    expect((await destinationAt(target)).size).toBe(8 * MiB + 111);
    const bytes = readFileSync(target);
    for (const extent of extents) {
      const got = bytes.subarray(extent.offset, extent.offset + extent.length);
      expect('data' in extent ? got.equals(extent.data) : got.every((b) => b === 0)).toBe(true);
    }
    expect(seen.at(-1)).toBe(8 * MiB + 111);
  });

  it('rejects a decoder that leaves a gap between extents', async () => {
    const target = join(dir, 'gap.raw');
    const broken: DiskImage = {
      ...image([data(0, MiB), data(2 * MiB, MiB)]),
      info: { ...image([]).info, virtualSize: 3 * MiB },
    };
    await expect(writeImage(broken, target)).rejects.toThrow();
  });
});

describe.skipIf(skipWithout('root', 'loop'))('writeImage onto a block device', () => {
  beforeAll(() => assertCapable('root', 'loop'));

  it('decodes the whole image before its first write: a late refusal leaves the device byte-identical', async () => {
    const backing = join(dir, 'device');
    writeFileSync(backing, '');
    truncateSync(backing, 16 * MiB);
    const device = attachLoop(backing);
    try {
      const fd = openSync(device, 'r+');
      writeSync(fd, randomBytes(16 * MiB), 0, 16 * MiB, 0);
      closeSync(fd);
      const before = sha256(device, 16 * MiB);
      const failing = image([data(0, 2 * MiB), zero(2 * MiB, 8 * MiB), data(10 * MiB, MiB), data(11 * MiB, MiB)], 3);
      await expect(writeImage(failing, device)).rejects.toThrow('does not inflate');
      expect(sha256(device, 16 * MiB)).toBe(before);
    } finally {
      detachLoop(device);
    }
  });

  it('accepts a verification done beforehand, and refuses one of another image', async () => {
    const backing = join(dir, 'device2');
    writeFileSync(backing, '');
    truncateSync(backing, 16 * MiB);
    const device = attachLoop(backing);
    try {
      const fd0 = openSync(device, 'r+');
      writeSync(fd0, randomBytes(16 * MiB), 0, 16 * MiB, 0); // old data the zero run must not show
      closeSync(fd0);
      const extents = [data(0, MiB), zero(MiB, 6 * MiB), data(7 * MiB, MiB)];
      const first = image(extents);
      const verified = await verifyImage(first);
      expect(verified.longZeroRuns).toEqual([[MiB, 7 * MiB]]);
      await expect(writeImage(image(extents), device, { verified })).rejects.toThrow();
      await writeImage(first, device, { verified });
      const bytes = Buffer.alloc(8 * MiB);
      const fd = openSync(device, 'r');
      readSync(fd, bytes, 0, bytes.length, 0);
      closeSync(fd);
      expect(bytes.subarray(7 * MiB).equals((extents[2] as { data: Buffer }).data)).toBe(true);
      expect(bytes.subarray(MiB, 7 * MiB).every((b) => b === 0)).toBe(true);
    } finally {
      detachLoop(device);
    }
  });

  it('writes around the page cache where it can, and through it where offsets are not page-aligned', async () => {
    const backing = join(dir, 'device3');
    writeFileSync(backing, '');
    truncateSync(backing, 64 * MiB);
    const device = attachLoop(backing);
    // The device's page cache lives while one descriptor is open: the last close drops it.
    const holder = openSync(device, 'r');
    try {
      const fd = openSync(device, 'r+');
      writeSync(fd, randomBytes(64 * MiB), 0, 64 * MiB, 0); // old data, cached: the probe sees it
      closeSync(fd);
      expect(cachedBytes(device, 64 * MiB)).toBeGreaterThanOrEqual(60 * MiB);
      truncateSync(backing, 64 * MiB); // leaves the cache as it is, but the writes below must drop it
      execFileSync('blockdev', ['--flushbufs', device]);
      expect(cachedBytes(device, 64 * MiB)).toBe(0);
      // Mostly page-aligned data (direct), plus a 512-byte zero run and data at 512-byte offsets.
      const extents = [
        data(0, 40 * MiB),
        zero(40 * MiB, 512),
        data(40 * MiB + 512, 4 * MiB - 512),
        zero(44 * MiB, 20 * MiB - 4096),
        data(64 * MiB - 4096, 4096),
      ];
      await writeImage(image(extents), device);
      // The head (first MiB, written last) and the unaligned run may be cached; the rest is not.
      expect(cachedBytes(device, 64 * MiB)).toBeLessThan(8 * MiB);
      const expected = Buffer.alloc(64 * MiB);
      for (const extent of extents) if ('data' in extent) extent.data.copy(expected, extent.offset);
      expect(sha256(device, 64 * MiB)).toBe(createHash('sha256').update(expected).digest('hex'));
    } finally {
      closeSync(holder);
      detachLoop(device);
    }
  });
});
