// EarlyCheck: the dry decoding pass on a worker, following a ChunkedBuffer as it fills. Its result
// equals the pass run after the download (the same long zero runs) when it followed the final
// bytes from the start; otherwise (a restart, a refused cluster) it gives none and the caller
// decodes again. Images made by qemu-img; compressed raw disks by gzip, xz, zstd and bzip2.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { verifyImage } from '../../lib/write/verify.ts';
import { EarlyCheck } from '../../lib/formats/early-check.ts';
import { openImage } from '../../lib/formats/open.ts';
import { makeRawImage } from '../helpers/convert.ts';
import { compressedByTool, toolFormats, type ToolFormat } from '../helpers/compress-tools.ts';
import { skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { isPageAligned } from '../../lib/source/aligned-memory.ts';
import type { DataExtent } from '../../lib/formats/types.ts';
import { openCompressedRaw } from '../../lib/formats/compressed-raw.ts';
import type { ByoiError } from '../../lib/errors.ts';

const KiB = 1024;

/** Appends `bytes` to `image` in uneven pieces, telling `early` as a download does, with pauses. */
async function arrive(early: EarlyCheck, image: ChunkedBuffer, bytes: Buffer): Promise<void> {
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(bytes.length - at, [64 * KiB, 1000, 700 * KiB][i % 3]!);
    image.append(bytes.subarray(at, at + n));
    at += n;
    early.follow(image, bytes.length);
    if (i % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe.skipIf(skipWithout('qemu-img'))('EarlyCheck', () => {
  let dir: string;
  const files: Record<string, Buffer> = {};

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'byoi-early-'));
    const raw = join(dir, 'disk.raw');
    makeRawImage(raw); // also compressed by the tools below
    files.raw = readFileSync(raw);
    for (const [name, options] of [
      ['zstd', ['-c', '-o', 'compression_type=zstd']],
      ['plain', []],
    ] as const) {
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, raw, join(dir, `${name}.qcow2`)]);
      files[name] = readFileSync(join(dir, `${name}.qcow2`));
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['zstd', 'plain', 'raw'] as const)(
    '%s: decodes as the bytes arrive, with the result of the pass after',
    async (name) => {
      const type = name === 'raw' ? 'raw' : 'qcow2';
      const early = new EarlyCheck(type, { limit: Infinity });
      const image = new ChunkedBuffer(256 * KiB);
      await arrive(early, image, files[name]!);
      const opened = openImage(image, type);
      const progress: [number, number][] = [];
      const verified = await early.result(image, opened, (done, total) => progress.push([done, total]));
      expect(early.outcome).toBe('used');
      // How far the pass is, told while waiting for it: in guest bytes, to the end.
      expect(progress.at(-1)).toEqual([opened.info.virtualSize, opened.info.virtualSize]);
      expect(progress.every(([done], i) => i === 0 || done >= progress[i - 1]![0])).toBe(true);
      expect(verified?.image).toBe(opened);
      expect(verified?.longZeroRuns).toEqual((await verifyImage(opened)).longZeroRuns);
      expect(verified!.longZeroRuns.length).toBeGreaterThan(0);
    },
  );

  it('keeps what it decodes where the RAM budget allows: the write decodes none of it again', async () => {
    // 32 MiB of distinct lines, every cluster compressed (zlib), in 32 batches of the pass.
    const raw = join(dir, 'lines.raw');
    const lines = Array.from({ length: 32 * 16 * KiB }, (_, i) => `line ${i} of the kept image\n`.padEnd(64, '.'));
    writeFileSync(raw, lines.join(''));
    const path = join(dir, 'lines.qcow2');
    execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, path]);
    const bytes = readFileSync(path);
    const early = new EarlyCheck('qcow2', { room: () => 64 * 1024 * KiB, limit: Infinity });
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, bytes);
    let bytesRead = 0;
    const counted: ImageSource = {
      size: image.size,
      chunkSize: image.chunkSize,
      read: (offset, length) => {
        bytesRead += length;
        return image.read(offset, length);
      },
    };
    const opened = openImage(counted, 'qcow2');
    expect(await early.result(image, opened)).toBeDefined();
    if (availableParallelism() === 1) return expect(early.keptBytes).toBe(0); // kept only from threads' memory
    expect(early.keptBytes).toBe(32 * 1024 * KiB);
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    // The worker's memory is page-aligned and known so on this thread: written directly, no staging copy.
    let unaligned = 0;
    const countUnaligned = (extent: DataExtent) => void (isPageAligned(extent.data) || unaligned++);
    expect((await decodeToSha256(opened, countUnaligned)).sha256).toBe(sha256(readFileSync(raw)));
    expect(unaligned).toBe(0);
    // The write read the header and tables only; kept batches are handed out once, so a second
    // pass reads and decodes every compressed cluster itself.
    const readByTheWrite = bytesRead;
    bytesRead = 0;
    expect((await decodeToSha256(opened)).sha256).toBe(sha256(readFileSync(raw)));
    expect(bytes.length).toBeGreaterThan(1024 * KiB); // the compressed clusters: most of the file
    expect(readByTheWrite).toBeLessThan(4 * 64 * KiB); // a header, tables: a few clusters
    expect(bytesRead - readByTheWrite).toBeGreaterThan(bytes.length / 2);
  });

  it('fails, once the pass has ended, where telling its progress fails on its timer (a status file that cannot be written)', async () => {
    const early = new EarlyCheck('qcow2', { limit: Infinity });
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, files.zstd!);
    // A small image: its pass has ended meanwhile, its progress written, its reply not yet taken.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const opened = openImage(image, 'qcow2');
    const failure = new Error('no room for the status file');
    let calls = 0;
    const tell = () => {
      if (++calls > 1) throw failure;
    };
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const waiting = early.result(image, opened, tell);
      // The first report is made at once; the second, on the timer, fails: thrown from a timer, the
      // failure would escape here (and end the process).
      vi.advanceTimersByTime(250);
      expect(calls).toBe(2);
      await expect(waiting).rejects.toBe(failure);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps nothing without room', async () => {
    const early = new EarlyCheck('qcow2', { limit: Infinity });
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, files.zstd!);
    expect(await early.result(image, openImage(image, 'qcow2'))).toBeDefined();
    expect(early.keptBytes).toBe(0);
  });

  it('gives nothing for bytes it did not follow from the start (a download that started over)', async () => {
    const early = new EarlyCheck('qcow2', { limit: Infinity });
    const first = new ChunkedBuffer(256 * KiB);
    first.append(files.zstd!.subarray(0, 300 * KiB));
    early.follow(first, files.zstd!.length);
    const again = new ChunkedBuffer(256 * KiB);
    await arrive(early, again, files.zstd!);
    expect(await early.result(again, openImage(again, 'qcow2'))).toBeUndefined();
    expect(early.outcome).toMatch(/^not used/);
  });

  it('gives nothing when decoding refuses a cluster: the pass after finds and reports it', async () => {
    const bytes = Buffer.from(files.zstd!);
    // Garbage over the last quarter of the file: compressed clusters that do not decompress.
    bytes.fill(0xff, Math.floor(bytes.length * 0.75), bytes.length - 4096);
    const early = new EarlyCheck('qcow2', { limit: Infinity });
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, bytes);
    const opened = openImage(image, 'qcow2');
    expect(await early.result(image, opened)).toBeUndefined();
    expect(early.outcome).toMatch(/^not used: Bad qcow2 image/);
    await expect(verifyImage(opened)).rejects.toThrow(/^Bad qcow2 image/);
  });

  it('gives nothing once called off mid-way (a failed download)', async () => {
    const early = new EarlyCheck('qcow2', { limit: Infinity });
    const image = new ChunkedBuffer(256 * KiB);
    image.append(files.zstd!.subarray(0, 100 * KiB));
    early.follow(image, files.zstd!.length);
    early.callOff();
    expect(await early.result(image, openImage(image, 'raw'))).toBeUndefined();
  });

  describe('a raw disk that arrives compressed', () => {
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    const compressed = (format: ToolFormat) => compressedByTool(format, join(dir, 'disk.raw'));
    /** Counts the bytes read of `image`, as the write reads them. */
    const counting = (image: ChunkedBuffer) => {
      const counted = { bytesRead: 0, source: undefined as unknown as ImageSource };
      counted.source = {
        size: image.size,
        read: (offset, length) => ((counted.bytesRead += length), image.read(offset, length)),
      };
      return counted;
    };

    it.each(toolFormats)(
      '%s: its first pass runs as the bytes arrive; where room allows, the write decodes nothing',
      async (format) => {
        const bytes = compressed(format);
        const early = new EarlyCheck('raw', { room: () => 64 * 1024 * KiB, limit: files.raw!.length });
        const image = new ChunkedBuffer(256 * KiB);
        await arrive(early, image, bytes);
        const progress: [number, number][] = [];
        const pass = await early.firstPass(image, format, (done, total) => progress.push([done, total]));
        expect(early.outcome).toBe('used');
        expect(pass?.size).toBe(files.raw!.length);
        // How far the pass is, told while waiting for it: in bytes of the file read, to its end.
        expect(progress.at(-1)).toEqual([bytes.length, bytes.length]);
        expect(early.keptBytes).toBeGreaterThan(0);
        const counted = counting(image);
        const opened = await openCompressedRaw(counted.source, format, { firstPass: pass! });
        expect(counted.bytesRead).toBe(0);
        // Its dry pass replays the first; the write hands out the kept windows, read nowhere else.
        expect(await early.result(image, opened)).toBeUndefined();
        expect(early.outcome).toBe('used');
        const runs = (await verifyImage(opened)).longZeroRuns;
        expect(runs.length).toBeGreaterThan(0);
        expect((await decodeToSha256(opened)).sha256).toBe(sha256(files.raw!));
        expect(counted.bytesRead).toBe(0);
        // The same as a first pass run after the download.
        const after = await openCompressedRaw(image, format);
        expect((await verifyImage(after)).longZeroRuns).toEqual(runs);
        expect(after.info).toEqual(opened.info);
      },
    );

    it('keeps nothing without room: the write decodes the stream again', async () => {
      const early = new EarlyCheck('raw', { limit: Infinity });
      const image = new ChunkedBuffer(256 * KiB);
      const bytes = compressed('xz');
      await arrive(early, image, bytes);
      const pass = await early.firstPass(image, 'xz');
      expect(pass?.kept).toBeUndefined();
      expect(early.keptBytes).toBe(0);
      const counted = counting(image);
      const opened = await openCompressedRaw(counted.source, 'xz', { firstPass: pass! });
      expect((await decodeToSha256(opened)).sha256).toBe(sha256(files.raw!));
      expect(counted.bytesRead).toBeGreaterThanOrEqual(bytes.length); // the whole stream (the bundled decoder reads its end twice)
    });

    it('refuses a stream that does not decode, or that grows past the limit, as decoding it again would', async () => {
      const corrupt = compressed('xz');
      corrupt[corrupt.length - 4096]! ^= 0x10;
      const broken = new EarlyCheck('raw', { limit: files.raw!.length });
      const image = new ChunkedBuffer(256 * KiB);
      await arrive(broken, image, corrupt);
      const again = (await openCompressedRaw(image, 'xz').then(
        () => expect.unreachable('decoded a corrupt stream'),
        (error: unknown) => error,
      )) as ByoiError;
      expect(again).toMatchObject({
        code: 'compressed-image-bad',
        message: expect.stringMatching(/^Bad xz image: corrupt xz data/),
      });
      await expect(broken.firstPass(image, 'xz')).rejects.toMatchObject({
        code: again.code,
        message: again.message,
        kind: 'refused-image',
      });
      expect(broken.outcome).toBe('used: it refused the image');

      const tooBig = new EarlyCheck('raw', { limit: files.raw!.length - 1 });
      const zstd = new ChunkedBuffer(256 * KiB);
      await arrive(tooBig, zstd, compressed('zstd'));
      await expect(tooBig.firstPass(zstd, 'zstd')).rejects.toMatchObject({
        code: 'compressed-image-too-big',
        message: `image provided decompresses (zstd) to more than ${files.raw!.length - 1} bytes which is larger than device of ${files.raw!.length - 1} bytes`,
      });
    });

    it('gives nothing when the file is not in the format asked for', async () => {
      const early = new EarlyCheck('raw', { limit: Infinity });
      const image = new ChunkedBuffer(256 * KiB);
      await arrive(early, image, files.raw!);
      expect(await early.firstPass(image, 'xz')).toBeUndefined();
      expect(early.outcome).toBe('not used: it decoded another kind of image');
      // The pass was asked for and settled: the dry pass's result leaves the reason as it is.
      expect(await early.result(image, openImage(image, 'raw'))).toBeUndefined();
      expect(early.outcome).toBe('not used: it decoded another kind of image');
    });
  });
});
