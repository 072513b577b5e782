// EarlyCheck: the dry decoding pass on a worker, following a ChunkedBuffer as it fills. Its result
// equals the pass run after the download (the same long zero runs) when it followed the final
// bytes from the start; otherwise (a restart, a refused cluster) it gives none and the caller
// decodes again. Images made by qemu-img.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { verifyImage } from '../../lib/write/verify.ts';
import { EarlyCheck } from '../../lib/formats/early-check.ts';
import { openImage } from '../../lib/formats/open.ts';
import { makeRawImage } from '../helpers/convert.ts';
import { skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { isPageAligned } from '../../lib/source/aligned-memory.ts';
import type { DataExtent } from '../../lib/formats/types.ts';

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
    makeRawImage(raw);
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
      const early = new EarlyCheck(type);
      const image = new ChunkedBuffer(256 * KiB);
      await arrive(early, image, files[name]!);
      const opened = openImage(image, type);
      const verified = await early.result(image, opened);
      expect(early.outcome).toBe('used');
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
    const early = new EarlyCheck('qcow2', () => 64 * 1024 * KiB);
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

  it('keeps nothing without room', async () => {
    const early = new EarlyCheck('qcow2');
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, files.zstd!);
    expect(await early.result(image, openImage(image, 'qcow2'))).toBeDefined();
    expect(early.keptBytes).toBe(0);
  });

  it('gives nothing for bytes it did not follow from the start (a download that started over)', async () => {
    const early = new EarlyCheck('qcow2');
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
    const early = new EarlyCheck('qcow2');
    const image = new ChunkedBuffer(256 * KiB);
    await arrive(early, image, bytes);
    const opened = openImage(image, 'qcow2');
    expect(await early.result(image, opened)).toBeUndefined();
    expect(early.outcome).toMatch(/^not used: Bad qcow2 image/);
    await expect(verifyImage(opened)).rejects.toThrow(/^Bad qcow2 image/);
  });

  it('gives nothing once called off mid-way (a failed download)', async () => {
    const early = new EarlyCheck('qcow2');
    const image = new ChunkedBuffer(256 * KiB);
    image.append(files.zstd!.subarray(0, 100 * KiB));
    early.follow(image, files.zstd!.length);
    early.callOff();
    expect(await early.result(image, openImage(image, 'raw'))).toBeUndefined();
  });
});
