// Raw disks compressed by the real tools (gzip, xz, zstd, bzip2; several streams end to end, as
// pigz/pbzip2/`cat` make them), decoded by byoi and compared byte for byte with what
// `qemu-img convert -O raw` makes of the uncompressed disk. Corrupt, truncated and oversized
// ("bomb") streams are refused with a sentence, before a single extent is handed on.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';
import { FileSource } from '../../lib/source/file-source.ts';
import { openCompressedRaw } from '../../lib/formats/compressed-raw.ts';
import { openAnyImage } from '../../lib/formats/open.ts';
import { isZero } from '../../lib/formats/types.ts';
import { decompressedChunks } from '../../lib/formats/decompress.ts';
import { nativeDecoders } from '../../lib/formats/native-decoders.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { makeRawImage } from '../helpers/convert.ts';
import { compressedByTool, toolFormats, type ToolFormat } from '../helpers/compress-tools.ts';
import { decodeToSha256 } from '../helpers/decode.ts';

const MiB = 1024 * 1024;
let dir: string;
let raw: string;
let referenceSha: string;

const formats = toolFormats;

function compress(format: ToolFormat, input: string, output: string, extra: string[] = []): string {
  writeFileSync(output, compressedByTool(format, input, extra));
  return output;
}

async function open(path: string, limit?: number) {
  const source = new FileSource(path);
  try {
    const image = await openAnyImage(source, 'raw', limit === undefined ? {} : { limit });
    return { image, decoded: await decodeToSha256(image) };
  } finally {
    source.close();
  }
}

async function refusal(path: string, limit?: number): Promise<string> {
  const error = await open(path, limit).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ByoiError);
  expect((error as ByoiError).kind).toBe('refused-image');
  return (error as ByoiError).message;
}

describe.skipIf(skipWithout('qemu-img'))('compressed raw images', () => {
  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-compressed-'));
    raw = join(dir, 'disk.raw');
    const { size } = makeRawImage(raw);
    // qemu-img rounds a raw image up to whole sectors: so does this disk, for a like comparison.
    execFileSync('truncate', ['-s', String(Math.ceil(size / 512) * 512), raw]);
    const reference = join(dir, 'reference.raw');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', raw, reference]);
    referenceSha = createHash('sha256').update(readFileSync(reference)).digest('hex');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(formats)('%s: decodes to the disk byte for byte, zero runs as zero extents', async (format) => {
    const file = compress(format, raw, join(dir, `disk.raw.${format}`));
    const { image, decoded } = await open(file);
    expect(decoded.sha256).toBe(referenceSha);
    expect(image.info).toMatchObject({
      format: 'raw',
      virtualSize: readFileSync(raw).length,
      compression: format,
      fileSize: readFileSync(file).length,
    });
    // The disk is mostly zeros: far fewer data bytes than its size.
    expect(image.info.allocatedBytes).toBeLessThan(image.info.virtualSize / 2);
    // The dry pass replays the shapes the first pass found: the same coverage as the extents.
    let end = 0;
    for await (const shape of image.check!()) {
      expect(shape.offset).toBe(end);
      end += shape.length;
    }
    expect(end).toBe(image.info.virtualSize);
  });

  // Outside CI, xz only where its native decoder is built.
  const followed = formats.filter((format) => format !== 'xz' || nativeDecoders() || process.env.CI);
  it.each(followed)('%s: decoding starts with the first bytes, before the last have arrived', async (format) => {
    // As the deployment's early pass reads a download (lib/formats/early-check.ts): the bundled xz
    // decoder finds its streams from the file's end first, liblzma's does not.
    const bytes = readFileSync(compress(format, raw, join(dir, `early.raw.${format}`)));
    const arrived = Math.floor(bytes.length / 2);
    const notYet = new Error('not arrived yet');
    const source: ImageSource = {
      size: bytes.length,
      read: (offset, length) => {
        if (offset + length > arrived) throw notYet;
        return bytes.subarray(offset, offset + length);
      },
    };
    let decoded = 0;
    const decoding = (async () => {
      for await (const chunk of decompressedChunks(source, format)) decoded += chunk.length;
    })();
    // The read's own error, not a refusal of the image (the early pass then decodes nothing of it).
    await expect(decoding).rejects.toBe(notYet);
    expect(decoded).toBeGreaterThan(MiB);
  });

  it.each(formats)('%s: several streams end to end are one disk', async (format) => {
    const half = readFileSync(raw).length / 2;
    const a = join(dir, `a-${format}.raw`);
    const b = join(dir, `b-${format}.raw`);
    const bytes = readFileSync(raw);
    writeFileSync(a, bytes.subarray(0, Math.floor(half)));
    writeFileSync(b, bytes.subarray(Math.floor(half)));
    const joined = Buffer.concat([
      readFileSync(compress(format, a, `${a}.${format}`)),
      readFileSync(compress(format, b, `${b}.${format}`)),
    ]);
    const file = join(dir, `joined.raw.${format}`);
    writeFileSync(file, joined);
    expect((await open(file)).decoded.sha256).toBe(referenceSha);
  });

  it.each(formats)(
    '%s: with room for every window of data, the write decodes nothing again; with less, it decodes again',
    async (format) => {
      const file = compress(format, raw, join(dir, `kept.raw.${format}`));
      // The disk's data lies in 6 of its 11 windows of 4 MiB.
      for (const [keepDecoded, decodesAgain] of [
        [24 * MiB, false],
        [20 * MiB, true],
        [0, true],
      ] as const) {
        const source = new FileSource(file);
        let reads = 0;
        const counted: ImageSource = { size: source.size, read: (at, length) => (reads++, source.read(at, length)) };
        try {
          const image = await openAnyImage(counted, 'raw', { keepDecoded });
          const opened = reads;
          expect((await decodeToSha256(image)).sha256).toBe(referenceSha);
          // Kept windows serve every pass (the inspection's reads, then the write).
          expect((await decodeToSha256(image)).sha256).toBe(referenceSha);
          expect(reads > opened).toBe(decodesAgain);
        } finally {
          source.close();
        }
      }
    },
  );

  it.each(formats)("%s: the write's windows are used again once released, and only then", async (format) => {
    const file = compress(format, raw, join(dir, `reused.raw.${format}`));
    const source = new FileSource(file);
    try {
      const image = await openAnyImage(source, 'raw');
      for (const release of [true, false]) {
        // A window's memory: its buffer and where the window starts in it.
        const windows = new Map<ArrayBufferLike, Set<number>>();
        for await (const extent of image.extents()) {
          if (isZero(extent)) continue;
          const start = extent.data.byteOffset - (extent.offset % (4 * MiB));
          windows.set(extent.data.buffer, (windows.get(extent.data.buffer) ?? new Set()).add(start));
          if (release) extent.release?.();
        }
        const distinct = [...windows.values()].reduce((n, starts) => n + starts.size, 0);
        expect(distinct).toBe(release ? 1 : 6);
      }
    } finally {
      source.close();
    }
  });

  it('a window released twice is used again once, not for two windows at once', async () => {
    const file = compress('gzip', raw, join(dir, 'twice.raw.gzip'));
    const source = new FileSource(file);
    try {
      const image = await openAnyImage(source, 'raw');
      const starts = new Map<ArrayBufferLike, Set<number>>();
      let windows = 0;
      let released = false;
      for await (const extent of image.extents()) {
        if (isZero(extent) || !extent.release) continue;
        windows++; // the last data extent of each window carries its release
        const start = extent.data.byteOffset - (extent.offset % (4 * MiB));
        starts.set(extent.data.buffer, (starts.get(extent.data.buffer) ?? new Set()).add(start));
        if (released) continue; // held: its window must not be filled again
        extent.release();
        extent.release();
        released = true;
      }
      // The first window is used again by the second; the other four each have their own.
      expect(windows).toBe(6);
      expect([...starts.values()].reduce((n, set) => n + set.size, 0)).toBe(5);
    } finally {
      source.close();
    }
  });

  it('xz: many blocks (xz -T2 --block-size) decode as one stream', async () => {
    const file = compress('xz', raw, join(dir, 'blocks.raw.xz'), ['-T2', '--block-size=1MiB']);
    expect((await open(file)).decoded.sha256).toBe(referenceSha);
  });

  it.each(formats)('%s: a truncated stream is refused', async (format) => {
    const whole = readFileSync(join(dir, `disk.raw.${format}`));
    const file = join(dir, `truncated.raw.${format}`);
    writeFileSync(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
    expect(await refusal(file)).toMatch(new RegExp(`^Bad ${format} image: `));
  });

  it.each(formats)('%s: a corrupt byte inside the stream is refused', async (format) => {
    const bytes = readFileSync(join(dir, `disk.raw.${format}`));
    bytes[Math.floor(bytes.length / 2)]! ^= 0x5a;
    const file = join(dir, `corrupt.raw.${format}`);
    writeFileSync(file, bytes);
    expect(await refusal(file)).toMatch(new RegExp(`^Bad ${format} image: `));
  });

  it.each(formats)('%s: a bomb is refused as soon as it decodes past the limit', async (format) => {
    // 256 MiB of zeros compress to a few KiB; the limit is the device's size.
    const zeros = join(dir, 'zeros.raw');
    execFileSync('truncate', ['-s', '256M', zeros]);
    const file = compress(format, zeros, join(dir, `bomb.${format}`));
    const source = new FileSource(file);
    try {
      const error = await openCompressedRaw(source, format, { limit: 32 * 1024 * 1024 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as ByoiError).message).toBe(
        `image provided decompresses (${format}) to more than ${32 * 1024 * 1024} bytes which is larger than device of ${32 * 1024 * 1024} bytes`,
      );
    } finally {
      source.close();
    }
  });

  it('zstd: skippable frames are passed over; bytes that are no frame are refused, not skipped', async () => {
    const frame = readFileSync(compress('zstd', raw, join(dir, 'framed.raw.zstd')));
    const skippable = Buffer.alloc(8 + 5, 0x5a);
    skippable.writeUInt32LE(0x184d2a53, 0);
    skippable.writeUInt32LE(5, 4);
    const passed = join(dir, 'skippable.raw.zstd');
    writeFileSync(passed, Buffer.concat([skippable, frame, skippable]));
    expect((await open(passed)).decoded.sha256).toBe(referenceSha);
    const junk = join(dir, 'junk-after.raw.zstd');
    writeFileSync(junk, Buffer.concat([frame, Buffer.from('junk')]));
    expect(await refusal(junk)).toBe(`Bad zstd image: bad zstd data (no frame at offset ${frame.length}).`);
  });

  it('xz: bytes that are no stream between two streams are refused, not skipped', async () => {
    const bytes = readFileSync(join(dir, 'disk.raw.xz'));
    const file = join(dir, 'junk-between.raw.xz');
    writeFileSync(file, Buffer.concat([bytes, Buffer.from('junk'), bytes]));
    expect(await refusal(file)).toMatch(/^Bad xz image: bad xz data/);
  });
});
