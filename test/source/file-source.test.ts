// FileSource's recycled buffers: a reused buffer must never show one read's bytes to another
// consumer, and raw, plain qcow2 and VMDK (bare or in an OVA) extents hand theirs back only when
// the writer is done.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';
import { isPageAligned } from '../../lib/source/aligned-memory.ts';
import { FileSource } from '../../lib/source/file-source.ts';
import { openImage } from '../../lib/formats/open.ts';
import type { DataExtent } from '../../lib/formats/types.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { makeOva } from '../helpers/ova-fixtures.ts';

const MiB = 1024 * 1024;
const SPARSE_FORMAT = 'http://www.vmware.com/interfaces/specifications/vmdk.html#monolithicSparse';
let dir: string;
let bytes: Buffer;
let path: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'byoi-file-source-'));
  bytes = randomBytes(48 * MiB);
  path = join(dir, 'image');
  writeFileSync(path, bytes);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const at = (offset: number, length: number) => bytes.subarray(offset, offset + length);

describe('FileSource', () => {
  it('reuses a recycled buffer for the next lend, with that read’s bytes', () => {
    const source = new FileSource(path);
    try {
      const first = source.lend(0, 4 * MiB);
      expect(first.equals(at(0, 4 * MiB))).toBe(true);
      source.recycle(first);
      const second = source.lend(8 * MiB, 3 * MiB);
      expect(second.buffer).toBe(first.buffer);
      expect(second.byteOffset).toBe(first.byteOffset);
      expect(second.equals(at(8 * MiB, 3 * MiB))).toBe(true);
    } finally {
      source.close();
    }
  });

  it('never lends one buffer twice: not after a double recycle, nor when every buffer is out', () => {
    const source = new FileSource(path);
    try {
      const first = source.lend(0, 4 * MiB);
      source.recycle(first);
      source.recycle(first.subarray(MiB)); // a second recycle, through another view
      const held = Array.from({ length: 11 }, (_, i) => source.lend(i * 4 * MiB, 4 * MiB));
      held.forEach((buffer, i) => expect(buffer.equals(at(i * 4 * MiB, 4 * MiB)), `read ${i}`).toBe(true));
    } finally {
      source.close();
    }
  });

  it('lends short reads from one slot page by page, and that slot again only once every lend in it is back', () => {
    const source = new FileSource(path);
    try {
      const short = Array.from({ length: 64 }, (_, i) => source.lend(i * 64 * 1024, 64 * 1024));
      short.forEach((buffer, i) => {
        expect(isPageAligned(buffer), `lend ${i}`).toBe(true);
        expect(buffer.buffer).toBe(short[0]!.buffer);
        expect(buffer.byteOffset).toBe(short[0]!.byteOffset + i * 64 * 1024);
      });
      const held = short[10]!;
      for (const buffer of short) if (buffer !== held) source.recycle(buffer);
      // Seven other slots; the eighth lend finds none free: the held lend's slot is not lent again.
      const long = Array.from({ length: 8 }, (_, i) => source.lend(i * 4 * MiB, 4 * MiB));
      expect(long.slice(0, 7).every(isPageAligned)).toBe(true);
      expect(isPageAligned(long[7]!)).toBe(false);
      long.forEach((buffer, i) => expect(buffer.equals(at(i * 4 * MiB, 4 * MiB)), `long ${i}`).toBe(true));
      expect(held.equals(at(10 * 64 * 1024, 64 * 1024))).toBe(true);
      source.recycle(held);
      source.recycle(held); // a second recycle is ignored
      expect(isPageAligned(source.lend(0, 4 * MiB))).toBe(true);
      expect(isPageAligned(source.lend(4 * MiB, 4 * MiB))).toBe(false);
    } finally {
      source.close();
    }
  });

  it('gives back the slab memory of a raw scan stopped early, and of a lend that failed', async () => {
    /** Whether eight 4 MiB lends, all the slab holds, are all lent from it (then handed back). */
    const slabWhole = (source: FileSource) => {
      const lends = Array.from({ length: 8 }, () => source.lend(0, 4 * MiB));
      const whole = lends.every(isPageAligned);
      for (const lend of lends) source.recycle(lend);
      return whole;
    };
    const rawPath = join(dir, 'stopped.raw');
    const raw = Buffer.alloc(12 * MiB); // raw windows of 4 MiB: data in the first and the last
    bytes.copy(raw, 0, 0, MiB);
    bytes.copy(raw, 11 * MiB, MiB, 2 * MiB);
    writeFileSync(rawPath, raw);
    const scanned = new FileSource(rawPath);
    try {
      for await (const extent of openImage(scanned, 'raw').extents()) {
        if ('data' in extent) extent.release?.();
        break; // the consumer stops inside the first window
      }
      expect(slabWhole(scanned)).toBe(true);
    } finally {
      scanned.close();
    }

    const shrinking = join(dir, 'shrinking-lend');
    copyFileSync(path, shrinking);
    const source = new FileSource(shrinking);
    try {
      truncateSync(shrinking, 5 * MiB);
      expect(() => source.lend(4 * MiB, 2 * MiB)).toThrow('The image file changed while it was read');
      expect(slabWhole(source)).toBe(true);
    } finally {
      source.close();
    }
  });

  it('refuses, in its own sentence, to read past the end of a file that shrank after it was opened', () => {
    const shrinking = join(dir, 'shrinking');
    copyFileSync(path, shrinking);
    const source = new FileSource(shrinking);
    try {
      truncateSync(shrinking, 5 * MiB);
      expect(source.read(MiB, MiB).equals(at(MiB, MiB))).toBe(true);
      let error: unknown;
      try {
        source.read(4 * MiB, 2 * MiB);
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(ByoiError);
      expect((error as ByoiError).code).toBe('image-file-changed');
      expect((error as ByoiError).message).toBe(
        `The image file changed while it was read: it now ends at byte ${5 * MiB}.`,
      );
    } finally {
      source.close();
    }
  });

  it('lends short reads page-aligned too, and never what `read` returned: a table may be kept for good', () => {
    const source = new FileSource(path);
    try {
      const table = source.read(0, 4 * MiB);
      source.recycle(table);
      const short = source.lend(4 * MiB, 64 * 1024);
      expect(isPageAligned(short)).toBe(true);
      expect(short.equals(at(4 * MiB, 64 * 1024))).toBe(true);
      const next = source.lend(8 * MiB, 4 * MiB);
      expect(next.buffer).not.toBe(table.buffer);
      expect(table.equals(at(0, 4 * MiB))).toBe(true);
    } finally {
      source.close();
    }
  });
});

/** A source that counts what comes back to it. */
function countingSource(image: Buffer): ImageSource & { recycled: Buffer[] } {
  const recycled: Buffer[] = [];
  return {
    size: image.length,
    chunkSize: 4 * MiB,
    read: (offset, length) => Buffer.from(image.subarray(offset, offset + length)),
    recycle: (b) => recycled.push(b),
    recycled,
  };
}

describe('extent releases', () => {
  it('raw: a window goes back once the scan and all its data extents are done with it', async () => {
    const image = Buffer.alloc(4 * MiB);
    image[0x1fe] = 0x55;
    image[0x1ff] = 0xaa;
    randomBytes(MiB).copy(image, 2 * MiB); // data, a zero run, data: two extents from one window
    const source = countingSource(image);
    const data: DataExtent[] = [];
    for await (const extent of openImage(source, 'raw').extents()) if ('data' in extent) data.push(extent);
    expect(data.length).toBe(2);
    data[0]!.release!();
    data[0]!.release!(); // twice: still one holder less, not two
    expect(source.recycled.length).toBe(0);
    data[1]!.release!();
    expect(source.recycled.length).toBe(1);
  });

  it('qcow2: a plain cluster run goes back when released', async () => {
    const qcow2 = join(dir, 'plain.qcow2');
    writeFileSync(join(dir, 'raw'), bytes.subarray(0, 8 * MiB));
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'raw'), qcow2]);
    const source = new FileSource(qcow2);
    try {
      const image = openImage(source, 'qcow2');
      let guest = 0;
      for await (const extent of image.extents()) {
        expect('data' in extent).toBe(true);
        if (!('data' in extent)) continue;
        expect(extent.data.equals(at(extent.offset, extent.length))).toBe(true);
        guest += extent.length;
        extent.release!(); // the next run may now be read into the same memory
      }
      expect(guest).toBe(8 * MiB);
    } finally {
      source.close();
    }
  });

  it('qcow2: short plain runs reach the writer page-aligned, so a direct write takes them as they are', async () => {
    // 1 MiB of data, a 1 MiB hole, 40 times: more than the slab holds, unless each run is handed back.
    const raw = Buffer.alloc(80 * MiB);
    for (let run = 0; run < 40; run++) bytes.copy(raw, run * 2 * MiB, run * MiB, (run + 1) * MiB);
    const qcow2 = join(dir, 'short-runs.qcow2');
    writeFileSync(join(dir, 'short-runs'), raw);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'short-runs'), qcow2]);
    const source = new FileSource(qcow2);
    try {
      const runs: number[] = [];
      for await (const extent of openImage(source, 'qcow2').extents()) {
        if (!('data' in extent)) continue;
        expect(extent.data.equals(raw.subarray(extent.offset, extent.offset + extent.length))).toBe(true);
        expect(isPageAligned(extent.data), `run at ${extent.offset}`).toBe(true);
        runs.push(extent.length);
        extent.release!();
      }
      // Runs are also cut where the file crosses a multiple of its chunk size.
      expect(runs.reduce((sum, length) => sum + length, 0)).toBe(40 * MiB);
      expect(Math.max(...runs)).toBe(MiB);
    } finally {
      source.close();
    }
  });

  it.each([
    ['vmdk', 'as it is'],
    ['ova', 'inside an OVA (a tar member: offsets 512-byte aligned only)'],
  ] as const)(
    '%s: stored runs are cut at the file’s lending size, so each reaches the writer page-aligned (%s)',
    async (type, _where) => {
      const vmdk = join(dir, 'plain.vmdk');
      writeFileSync(join(dir, 'raw12'), bytes.subarray(0, 12 * MiB));
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', join(dir, 'raw12'), vmdk]);
      const file =
        type === 'vmdk'
          ? vmdk
          : makeOva(dir, 'plain', [{ path: vmdk, capacity: 12 * MiB, address: '0', format: SPARSE_FORMAT }]);
      const source = new FileSource(file);
      try {
        let guest = 0;
        for await (const extent of openImage(source, type).extents()) {
          if (!('data' in extent)) continue;
          expect(extent.data.equals(at(extent.offset, extent.length))).toBe(true);
          expect(isPageAligned(extent.data), `run at ${extent.offset}`).toBe(true);
          guest += extent.length;
          extent.release!();
        }
        expect(guest).toBe(12 * MiB);
      } finally {
        source.close();
      }
    },
  );
});
