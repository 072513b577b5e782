// VMDK decoding: qemu-img's streamOptimized and monolithicSparse, and the stream in VMware's
// layout (directory at the end, through the footer), each compared byte for byte with
// `qemu-img convert -O raw`; refusals of altered files, with their sentences.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { ByoiError } from '../../lib/errors.ts';
import { openImage } from '../../lib/formats/open.ts';
import { openVmdk } from '../../lib/formats/vmdk.ts';
import type { DataExtent } from '../../lib/formats/types.ts';
import { FileSource } from '../../lib/source/file-source.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import { makeSmallDisk, makeVmdk, qemuRaw, toFooterLayout } from '../helpers/vmdk-fixtures.ts';

let dir: string;
const files: Record<string, string> = {};

function sourceOf(bytes: Buffer): ChunkedBuffer {
  const source = new ChunkedBuffer(64 * 1024);
  source.append(bytes);
  return source;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function refusal(bytes: Buffer): string {
  try {
    openVmdk(sourceOf(bytes));
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).kind).toBe('refused-image');
    return (error as Error).message;
  }
  throw new Error('the image was not refused');
}

async function drain(shapes: AsyncIterable<unknown>): Promise<void> {
  for await (const _shape of shapes);
}

async function refusalWhileDecoding(image: ReturnType<typeof openVmdk>): Promise<ByoiError> {
  const error = await decodeToSha256(image).then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(ByoiError);
  expect((error as ByoiError).kind).toBe('refused-image');
  return error as ByoiError;
}

describe.skipIf(skipWithout('qemu-img'))('VMDK', () => {
  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-vmdk-'));
    const raw = join(dir, 'disk.raw');
    makeSmallDisk(raw);
    files.stream = makeVmdk(raw, join(dir, 'stream.vmdk'), 'streamOptimized');
    files.sparse = makeVmdk(raw, join(dir, 'sparse.vmdk'), 'monolithicSparse');
    files.footer = toFooterLayout(files.stream, join(dir, 'footer.vmdk'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['stream', 'sparse', 'footer'])('%s: decodes byte for byte as qemu-img convert -O raw', async (name) => {
    const file = files[name]!;
    const image = openImage(sourceOf(readFileSync(file)), 'auto');
    expect(image.info.format).toBe('vmdk');
    expect(image.info.virtualSize).toBe(5 * 1024 * 1024 + 1536);
    const reference = qemuRaw(file, join(dir, `${name}.reference.raw`));
    expect((await decodeToSha256(image)).sha256).toBe(sha256(reference));
  });

  it.each(['stream', 'sparse', 'footer'])(
    '%s on worker threads, from RAM and from the file: byte for byte as qemu-img, the dry pass too',
    async (name) => {
      const file = files[name]!;
      const reference = sha256(qemuRaw(file, join(dir, `${name}.threads.raw`)));
      const fromFile = new FileSource(file);
      try {
        for (const source of [sourceOf(readFileSync(file)), fromFile]) {
          const image = openVmdk(source, { threads: 2 });
          const lengths: number[] = [];
          const decoded = await decodeToSha256(image, (extent) => {
            lengths.push(extent.length);
            extent.release?.(); // a batch's slot goes back to be filled again
          });
          expect(decoded.sha256).toBe(reference);
          // Grains inflated here come one per extent; a worker's batch of them as one.
          if (image.info.compression) expect(Math.max(...lengths)).toBeGreaterThan(65536);
          let shaped = 0;
          for await (const shape of image.check!()) shaped += shape.length;
          expect(shaped).toBe(image.info.virtualSize);
        }
      } finally {
        fromFile.close();
      }
    },
  );

  it('writes what the dry pass kept without reading or inflating it again', async () => {
    const bytes = readFileSync(files.stream!);
    const reference = sha256(qemuRaw(files.stream!, join(dir, 'kept.reference.raw')));
    for (const keepDecoded of [0, 64 * 1024 * 1024]) {
      const inner = sourceOf(bytes);
      let largestRead = 0;
      const source: ImageSource = {
        size: inner.size,
        read: (offset, length) => {
          largestRead = Math.max(largestRead, length);
          return inner.read(offset, length);
        },
      };
      const image = openVmdk(source, { threads: 2, keepDecoded });
      await drain(image.check!());
      largestRead = 0;
      expect((await decodeToSha256(image)).sha256).toBe(reference);
      // Markers and tables are read again (12 and 2048 bytes); a grain's deflate data only if not kept.
      if (keepDecoded) expect(largestRead).toBeLessThanOrEqual(2048);
      else expect(largestRead).toBeGreaterThan(2048);
    }
  });

  it('refuses a grain that does not inflate on worker threads with the sentence it has here, in both passes', async () => {
    const bytes = Buffer.from(readFileSync(files.stream!));
    const gd = Number(bytes.readBigUInt64LE(56)) * 512;
    const gt = bytes.readUInt32LE(gd) * 512;
    // The second grain of the run of grains from 100 KiB: inside a batch, not its first.
    const grain = bytes.readUInt32LE(gt + 4 * 2) * 512;
    expect(grain).toBeGreaterThan(0);
    bytes.fill(0x41, grain + 14, grain + 40);
    const sentence = (await refusalWhileDecoding(openVmdk(sourceOf(bytes), { threads: 0 }))).message;
    expect(sentence).toMatch(
      /^Bad VMDK image: the deflate data of guest offset 0x20000 does not inflate to one grain \(65536 bytes\): /,
    );
    const image = openVmdk(sourceOf(bytes), { threads: 2 });
    expect((await refusalWhileDecoding(image)).message).toBe(sentence);
    await expect(drain(image.check!())).rejects.toThrow(sentence);
  });

  it("gives compressed grains' memory back once released, in order, and only then", async () => {
    // Every grain inflated on this thread: the main thread's buffers are the ones freed.
    const image = openVmdk(sourceOf(readFileSync(files.stream!)), { threads: 0 });
    const detached = (data: Buffer) => data.buffer instanceof ArrayBuffer && data.buffer.detached;
    const extents: DataExtent[] = [];
    for await (const extent of image.extents()) if ('data' in extent) extents.push(extent);
    // The first half released in order, as a writer does; the second half held.
    const half = Math.floor(extents.length / 2);
    for (const extent of extents.slice(0, half)) extent.release?.();
    expect(extents.slice(0, half).filter((extent) => detached(extent.data)).length).toBeGreaterThan(0);
    // What was not released still holds its bytes.
    expect(extents.slice(half).filter(({ data }) => detached(data) || data.length === 0)).toEqual([]);
  });

  it('names what it read in inspect', () => {
    const stream = openVmdk(sourceOf(readFileSync(files.stream!))).info;
    expect(stream).toMatchObject({
      compression: 'zlib',
      clusterSize: 65536,
      features: { createType: 'streamOptimized', version: 3 },
    });
    expect(openVmdk(sourceOf(readFileSync(files.sparse!))).info.features).toMatchObject({
      createType: 'monolithicSparse',
      compressedGrains: 0,
    });
  });

  it('refuses a VMDK given as qcow2 with the "does not match" sentence', () => {
    expect(() => openImage(sourceOf(readFileSync(files.stream!)), 'qcow2')).toThrow(
      'image provided format is vmdk which does not match expected qcow2 format',
    );
  });

  it('refuses a truncated stream: grains past the end of the file', () => {
    const bytes = readFileSync(files.stream!);
    expect(refusal(bytes.subarray(0, bytes.length - 300 * 1024))).toMatch(
      /^Bad VMDK image: the grain (marker )?of guest offset 0x[0-9a-f]+ .*beyond the end of the file|runs past the end of the file/,
    );
  });

  it('refuses a footer layout cut short (no footer at the end)', () => {
    const bytes = readFileSync(files.footer!);
    expect(refusal(bytes.subarray(0, bytes.length - 1024))).toBe(
      'Bad VMDK image: the grain directory is "at the end" but the stream does not end with a footer (truncated?).',
    );
  });

  it('refuses a grain marker that names another sector', () => {
    const bytes = Buffer.from(readFileSync(files.stream!));
    const source = sourceOf(bytes);
    const gd = Number(bytes.readBigUInt64LE(56)) * 512;
    const gt = source.read(gd, 4).readUInt32LE(0) * 512;
    const firstGrain = bytes.readUInt32LE(gt) * 512;
    bytes.writeBigUInt64LE(12345n, firstGrain);
    expect(refusal(bytes)).toMatch(
      /^Bad VMDK image: the grain marker at file offset 0x[0-9a-f]+ is for sector 12345, not for guest offset 0x0 \(sector 0\)\.$/,
    );
  });

  it('refuses deflate data that does not inflate to a grain, while decoding', async () => {
    const bytes = Buffer.from(readFileSync(files.stream!));
    const gd = Number(bytes.readBigUInt64LE(56)) * 512;
    const gt = bytes.readUInt32LE(gd) * 512;
    const firstGrain = bytes.readUInt32LE(gt) * 512;
    bytes.fill(0x41, firstGrain + 14, firstGrain + 40);
    const image = openVmdk(sourceOf(bytes));
    await expect(decodeToSha256(image)).rejects.toThrow(/^Bad VMDK image: the deflate data of guest offset 0x0 /);
  });

  it('refuses a grain that inflates to more than a grain, on either thread', async () => {
    const bytes = Buffer.from(readFileSync(files.stream!));
    const gd = Number(bytes.readBigUInt64LE(56)) * 512;
    const gt = bytes.readUInt32LE(gd) * 512;
    const marker = bytes.readUInt32LE(gt + 4 * 2) * 512; // the grain of guest offset 0x20000
    const more = zlib.deflateSync(Buffer.alloc(2 * 65536, 7));
    more.copy(bytes, marker + 12);
    bytes.writeUInt32LE(more.length, marker + 8);
    for (const threads of [0, 2])
      expect((await refusalWhileDecoding(openVmdk(sourceOf(bytes), { threads }))).message).toBe(
        'Bad VMDK image: the deflate data of guest offset 0x20000 does not inflate to one grain (65536 bytes): it inflates to more.',
      );
  });

  it('refuses a grain table outside the file', () => {
    const bytes = Buffer.from(readFileSync(files.sparse!));
    const gd = Number(bytes.readBigUInt64LE(56)) * 512;
    const outside = Buffer.from(bytes);
    outside.writeUInt32LE(0x7fffffff, gd);
    expect(refusal(outside)).toMatch(
      /^Bad VMDK image: grain table 0 at offset 0x[0-9a-f]+ is beyond the end of the file/,
    );
  });

  it('refuses a capacity above 2^53 bytes, a bad grain size and text-mode newlines', () => {
    const bytes = readFileSync(files.sparse!);
    const huge = Buffer.from(bytes);
    huge.writeBigUInt64LE(1n << 60n, 12);
    expect(refusal(huge)).toBe('Bad VMDK image: its capacity is above 2^53 bytes.');
    const grain = Buffer.from(bytes);
    grain.writeBigUInt64LE(100n, 20);
    expect(refusal(grain)).toBe('Bad VMDK image: its grain size of 100 sectors is not a power of two from 1 to 4096.');
    const newlines = Buffer.from(bytes);
    newlines[75] = 0x0a;
    expect(refusal(newlines)).toBe('Bad VMDK image: its newline test characters are altered (copied in text mode?).');
  });

  it('refuses a delta disk and a split disk type', () => {
    const bytes = readFileSync(files.sparse!);
    const text = bytes.subarray(512, 1024).toString('latin1');
    const delta = Buffer.from(bytes);
    delta.write(text.replace('parentCID=ffffffff', 'parentCID=12345678'), 512, 'latin1');
    expect(refusal(delta)).toBe(
      'Unsupported VMDK image: a delta disk that needs its parent disk; deploy a self-contained image.',
    );
    const split = Buffer.from(bytes);
    split.write(text.replace('createType="monolithicSparse"', 'createType="twoGbMaxExtentSparse"'), 512, 'latin1');
    expect(refusal(split)).toBe(
      'Unsupported VMDK image: the disk type "twoGbMaxExtentSparse" (byoi reads monolithicSparse and streamOptimized, one file each).',
    );
  });
});
