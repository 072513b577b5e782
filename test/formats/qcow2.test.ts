// The qcow2 decoder against qemu: every variant qemu-img and qemu-io make decodes to the same bytes
// as `qemu-img convert -O raw`, on the calling thread and in the worker pool.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { FileSource } from '../../lib/source/file-source.ts';
import { openQcow2 } from '../../lib/formats/qcow2.ts';
import { SlotArena } from '../../lib/formats/slot-arena.ts';
import { isZero, type DataExtent } from '../../lib/formats/types.ts';
import {
  makeQcow2Fixtures,
  patchBytes,
  patchU64,
  qemuRawSha256,
  QCOW2_FIXTURE_NAMES,
  type Qcow2Fixture,
} from '../../scripts/fixtures/qcow2.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import { compressedExtent, isCompressed, layoutOf, OFFSET_MASK } from '../helpers/qcow2-layout.ts';

/** A qcow2 in `dir` of `mib` MiB of distinct, compressible 64-byte lines, every cluster compressed by qemu-img. */
function linesImage(dir: string, name: string, mib: number, compression: string): string {
  const raw = join(dir, `${name}-${compression}.raw`);
  const image = join(dir, `${name}-${compression}.qcow2`);
  const lines = Array.from({ length: mib * 1024 * 16 }, (_, i) => `line ${i} of the ${name} image\n`.padEnd(64, '.'));
  writeFileSync(raw, lines.join(''));
  execFileSync('qemu-img', [
    'convert',
    '-c',
    '-f',
    'raw',
    '-O',
    'qcow2',
    '-o',
    `compression_type=${compression}`,
    raw,
    image,
  ]);
  return image;
}
describe.skipIf(skipWithout('qemu-img'))('qcow2 decoder against qemu-img convert', () => {
  let dir: string;
  const fixtures = new Map<string, Qcow2Fixture>();

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-'));
    for (const fixture of makeQcow2Fixtures(dir)) fixtures.set(fixture.name, fixture);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function open(name: string, threads?: number) {
    // Small chunks, so data runs must split at chunk ends and tables straddle nothing by luck.
    const source = await ChunkedBuffer.fromFile(fixtures.get(name)!.path, 1024 * 1024);
    return openQcow2(source, threads === undefined ? {} : { threads });
  }

  it.each(QCOW2_FIXTURE_NAMES)('%s decodes to qemu-img convert output', async (name) => {
    const expected = qemuRawSha256(fixtures.get(name)!.path, dir);
    const here = await decodeToSha256(await open(name, 0));
    expect(here.sha256).toBe(expected);
    const pooled = await decodeToSha256(await open(name, 2));
    expect(pooled.sha256).toBe(expected);
  });

  it.each(QCOW2_FIXTURE_NAMES)(
    '%s: read from the file by the workers themselves, decodes as qemu-img does',
    async (name) => {
      const path = fixtures.get(name)!.path;
      const source = new FileSource(path);
      try {
        expect(source.descriptor).toBeTypeOf('number');
        const image = openQcow2(source, { threads: 2, keepDecoded: source.size / 2 });
        for await (const _ of image.check!()) continue;
        expect((await decodeToSha256(image)).sha256).toBe(qemuRawSha256(path, dir));
      } finally {
        source.close();
      }
    },
  );

  it.each(['zlib-64k', 'zstd-4k'])(
    '%s: a file cut short under the workers rejects, as the file source does',
    async (name) => {
      const path = join(dir, `cut-${name}.qcow2`);
      copyFileSync(fixtures.get(name)!.path, path);
      const source = new FileSource(path);
      try {
        const image = openQcow2(source, { threads: 2 });
        // The map was checked at open; the last compressed cluster is gone when a worker reads it (the
        // tables lie before it, so only a worker's read can find the file short).
        const layout = layoutOf(path);
        const last = compressedExtent(layout, layout.l2.filter(isCompressed).at(-1)!).offset;
        expect(layout.l2[0]!.at + layout.clusterSize).toBeLessThanOrEqual(last);
        truncateSync(path, last);
        await expect(decodeToSha256(image)).rejects.toThrow(
          /^The image file changed while it was read: it now ends at byte \d+\.$/,
        );
      } finally {
        source.close();
      }
    },
  );

  it.each(['zlib-64k', 'zstd-4k'])('%s: the dry pass yields the extents without their bytes', async (name) => {
    for (const threads of [0, 2]) {
      const image = await open(name, threads);
      const shapes = [];
      for await (const extent of image.extents())
        shapes.push({ offset: extent.offset, length: extent.length, zero: 'zero' in extent });
      const checked = [];
      for await (const shape of image.check!()) checked.push(shape);
      // Compressed runs may come as one shape per batch instead of one extent per cluster: compare
      // the guest bytes each kind covers.
      expect(coverage(checked)).toEqual(coverage(shapes));
      expect(shapes.some((s) => !s.zero) && shapes.some((s) => s.zero)).toBe(true);
    }
  });

  it.each(['zlib-64k', 'zstd-4k', 'zlib-512-odd'])(
    '%s: batches the dry pass keeps are written as decoded, whatever the budget',
    async (name) => {
      const expected = qemuRawSha256(fixtures.get(name)!.path, dir);
      const file = await ChunkedBuffer.fromFile(fixtures.get(name)!.path, 1024 * 1024);
      let bytesRead = 0;
      const source = {
        size: file.size,
        chunkSize: file.chunkSize,
        read: (offset: number, length: number) => ((bytesRead += length), file.read(offset, length)),
      };
      const compressed = openQcow2(source).info.allocatedBytes;
      for (const threads of [0, 2]) {
        // A budget smaller than one batch's memory (1 MiB) keeps nothing: the small image only gets the large one.
        const part = Math.max(compressed / 3, 1024 * 1024);
        for (const keepDecoded of name === 'zlib-512-odd' ? [10 * compressed] : [part, 10 * compressed]) {
          const image = openQcow2(source, { threads, keepDecoded });
          for await (const _ of image.check!()) continue;
          bytesRead = 0;
          expect((await decodeToSha256(image)).sha256).toBe(expected);
          const readWithKept = bytesRead;
          // Kept batches are handed out once: a second pass decodes everything itself.
          bytesRead = 0;
          expect((await decodeToSha256(image)).sha256).toBe(expected);
          expect(readWithKept).toBeLessThan(bytesRead); // the kept batches were not read again
        }
      }
    },
  );

  it.each(['zlib', 'zstd'])(
    '%s: a pass that starts its workers past its first 4 MiB of clusters decodes as qemu-img does',
    async (compression) => {
      // 12 MiB of compressible, distinct lines: three times the clusters decoded before workers start.
      const image = linesImage(dir, 'lazy', 12, compression);
      const expected = qemuRawSha256(image, dir);
      const source = await ChunkedBuffer.fromFile(image, 1024 * 1024);
      expect((await decodeToSha256(openQcow2(source))).sha256).toBe(expected);
      const checked = openQcow2(source);
      let covered = 0;
      for await (const shape of checked.check!()) covered = shape.offset + shape.length;
      expect(covered).toBe(12 * 1024 * 1024);
    },
  );

  it.each(['zlib', 'zstd'])(
    '%s: batches released as a writer releases them are filled again, and decode as qemu-img does',
    async (compression) => {
      // 32 MiB of distinct lines: 32 batches, four times the batches in flight at once.
      const image = linesImage(dir, 'reused', 32, compression);
      const source = new FileSource(image);
      try {
        for (const keepDecoded of [0, source.size / 2]) {
          const decoded = openQcow2(source, { threads: 2, keepDecoded });
          for await (const _ of decoded.check!()) continue;
          const hash = createHash('sha256');
          const places = new Set<string>();
          let batches = 0;
          for await (const extent of decoded.extents()) {
            if (isZero(extent)) throw new Error('no zeros in this image');
            hash.update(extent.data);
            if (extent.release) {
              batches++;
              places.add(`${extent.data.byteOffset}`);
            }
            extent.release?.(); // written: the memory may be filled again at once
          }
          expect(hash.digest('hex')).toBe(qemuRawSha256(image, dir));
          expect(batches).toBeGreaterThan(16);
          expect(places.size).toBeLessThan(batches);
        }
      } finally {
        source.close();
      }
    },
  );

  it.each(['zlib', 'zstd'])(
    '%s: batches decoded on this thread give their memory back once released, in order, and only then',
    async (compression) => {
      const image = openQcow2(await ChunkedBuffer.fromFile(linesImage(dir, 'here', 4, compression)), { threads: 0 });
      const detached = (data: Buffer) => data.buffer instanceof ArrayBuffer && data.buffer.detached;
      const extents: DataExtent[] = [];
      for await (const extent of image.extents()) if (!isZero(extent)) extents.push(extent);
      // The first half released in order, as a writer does; the second half held. A batch's release
      // rides on its last extent (one per cluster from Node's decoders, one per batch from the native).
      const half = Math.floor(extents.length / 2);
      for (const extent of extents.slice(0, half)) extent.release?.();
      const released = extents.slice(0, half).filter((extent) => extent.release);
      expect(released.length).toBeGreaterThan(0);
      expect(released.filter(({ data }) => !detached(data))).toEqual([]);
      expect(extents.slice(half).filter(({ data }) => detached(data) || data.length === 0)).toEqual([]);
    },
  );

  it('a budget for kept batches bounds the memory they hold, however few clusters each batch has', async () => {
    // 512-byte clusters, compressed ones between zero ones: every batch is a single 512-byte
    // cluster, while the memory a worker fills for a batch (a slot) is made for a full batch.
    const raw = join(dir, 'sparse-batches.raw');
    const image = join(dir, 'sparse-batches.qcow2');
    const pair = Buffer.concat([Buffer.alloc(512, 'A'), Buffer.alloc(512)]);
    writeFileSync(raw, Buffer.concat(Array.from({ length: 4096 }, () => pair)));
    execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', raw, image]);
    const source = new FileSource(image);
    const take = vi.spyOn(SlotArena.prototype, 'take');
    try {
      const keepDecoded = 3 * 1024 * 1024; // more than the 2 MiB of clusters
      const decoded = openQcow2(source, { threads: 2, keepDecoded });
      for await (const _ of decoded.check!()) continue;
      const slots = take.mock.calls.length;
      const slotSize = take.mock.results[0]?.value.bytes.length ?? 0;
      expect(slots * slotSize).toBeLessThanOrEqual(keepDecoded);
      expect((await decodeToSha256(decoded)).sha256).toBe(qemuRawSha256(image, dir));
    } finally {
      take.mockRestore();
      source.close();
    }
  });

  it('merges contiguous data clusters and zero runs into few extents', async () => {
    // 4 MiB of 4 KiB clusters: 1024 clusters, but only a handful of runs.
    const { extents } = await decodeToSha256(await open('v3-4k', 0));
    expect(extents).toBeLessThan(40);
  });

  it('reports what it read from the header', async () => {
    const dirty = await open('lazy-dirty');
    expect(dirty.info.features).toMatchObject({ dirty: true, lazyRefcounts: true, version: 3 });
    const snapshots = await open('snapshots');
    expect(snapshots.info.features).toMatchObject({ snapshots: 2 });
    const odd = await open('size-not-512');
    expect(odd.info.virtualSize).toBe(4 * 1024 * 1024);
    expect(odd.info.features).toMatchObject({ storedVirtualSize: 4 * 1024 * 1024 + 100 });
    const zstd = await open('zstd-4k');
    expect(zstd.info).toMatchObject({ compression: 'zstd', clusterSize: 4096 });
    expect(zstd.info.features).toMatchObject({ compressionType: 'zstd' });
    const v2 = await open('v2-64k');
    expect(v2.info.features).toMatchObject({ version: 2, refcountBits: 16 });
    const extended = await open('extl2-64k');
    expect(extended.info.features).toMatchObject({ extendedL2: true });
    const empty = await open('empty');
    expect(empty.info.allocatedBytes).toBe(0);
  });

  it('ignores unknown compatible and autoclear bits and unknown header extensions, as qemu does', async () => {
    const path = join(dir, 'unknown-optional.qcow2');
    copyFileSync(fixtures.get('v3-64k')!.path, path);
    patchU64(path, 80, 1n << 40n);
    patchU64(path, 88, 1n << 7n);
    // The first extension becomes one of an unknown type; its data is skipped.
    patchBytes(path, layoutOf(path).headerLength, Buffer.from([0x12, 0x34, 0x56, 0x78]));
    const image = openQcow2(await ChunkedBuffer.fromFile(path), { threads: 0 });
    expect((await decodeToSha256(image)).sha256).toBe(qemuRawSha256(path, dir));
  });

  it('decodes L2 tables shared by many L1 entries (each table is checked once)', async () => {
    // 64 MiB of 512-byte clusters: 2048 L1 entries, all pointed at the first L2 table.
    const path = join(dir, 'shared-l2.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', path, '64M']);
    execFileSync(
      'qemu-io',
      ['-f', 'qcow2', '-c', 'write -P 0x42 0 8k', '-c', 'write -z 8k 512', '-c', 'write -P 0x43 9k 1k', path],
      { stdio: 'ignore' },
    );
    const layout = layoutOf(path);
    const first = layout.file.readBigUInt64BE(layout.l1Offset);
    const l1Entries = layout.file.readUInt32BE(36);
    expect(l1Entries).toBe(2048);
    const l1 = Buffer.alloc(8 * l1Entries);
    for (let i = 0; i < l1Entries; i++) l1.writeBigUInt64BE(first & ~(1n << 63n), 8 * i);
    patchBytes(path, layout.l1Offset, l1);
    const image = openQcow2(await ChunkedBuffer.fromFile(path), { threads: 0 });
    expect(image.info.allocatedBytes).toBe(2048 * 9 * 1024);
    expect((await decodeToSha256(image)).sha256).toBe(qemuRawSha256(path, dir));
  });

  it('opens an empty disk whatever its unused L1 fields say', async () => {
    const path = join(dir, 'empty-odd-l1.qcow2');
    copyFileSync(fixtures.get('zero-size')!.path, path);
    patchBytes(path, 36, Buffer.alloc(4)); // l1_size 0
    patchU64(path, 40, 0xffff_ffff_ffff_fe00n); // l1_table_offset nowhere
    const image = openQcow2(await ChunkedBuffer.fromFile(path));
    expect(image.info.virtualSize).toBe(0);
    expect((await decodeToSha256(image)).extents).toBe(0);
  });

  it('decompresses in worker threads from a minified bundle too (the worker runs the same source)', async () => {
    const entry = join(dir, 'entry.ts');
    const lib = (path: string) => fileURLToPath(new URL(`../../lib/${path}`, import.meta.url));
    writeFileSync(
      entry,
      `import { ChunkedBuffer } from ${JSON.stringify(lib('source/chunked-buffer.ts'))};
import { openQcow2 } from ${JSON.stringify(lib('formats/qcow2.ts'))};
import { createHash } from 'node:crypto';
const hash = createHash('sha256');
for await (const e of openQcow2(await ChunkedBuffer.fromFile(process.argv[2]), { threads: 2 }).extents()) hash.update('zero' in e ? Buffer.alloc(e.length) : e.data);
console.log(hash.digest('hex'));`,
    );
    const bundle = join(dir, 'bundle.mjs');
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      minify: true,
      keepNames: true,
      outfile: bundle,
      logLevel: 'silent',
    });
    for (const name of ['zlib-4k', 'zstd-4k', 'zstd-2m']) {
      const path = fixtures.get(name)!.path;
      const decoded = execFileSync(process.execPath, [bundle, path], { encoding: 'utf8' }).trim();
      expect(decoded).toBe(qemuRawSha256(path, dir));
    }
  });

  it('walks a huge disk of shared all-zero L2 tables in one step per table', async () => {
    // 2^52 bytes (the most byoi represents) of 2 MiB clusters: 8192 L1 entries, all pointed at one L2
    // table holding a zero cluster. Walked entry by entry that would be 2^31 entries; it must come out as one zero run.
    const path = join(dir, 'huge-zero.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', path, String(2 ** 52)]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 4k', '-c', 'write -z 0 2M', path], { stdio: 'ignore' });
    const layout = layoutOf(path);
    const first = layout.file.readBigUInt64BE(layout.l1Offset);
    expect(first & OFFSET_MASK).not.toBe(0n);
    expect(layout.l2[0]!.word & 1n).toBe(1n); // the zero flag
    const l1 = Buffer.alloc(8 * 8192);
    for (let i = 0; i < 8192; i++) l1.writeBigUInt64BE(first, 8 * i);
    patchBytes(path, layout.l1Offset, l1);
    const image = openQcow2(await ChunkedBuffer.fromFile(path));
    const extents = [];
    for await (const extent of image.extents()) extents.push(extent);
    expect(extents).toEqual([{ offset: 0, length: 2 ** 52, zero: true }]);
  });
});

/** Merged [start, end, zero] runs of consecutive shapes of the same kind, checking they tile the disk. */
function coverage(shapes: readonly { offset: number; length: number; zero: boolean }[]): [number, number, boolean][] {
  const runs: [number, number, boolean][] = [];
  let expected = 0;
  for (const { offset, length, zero } of shapes) {
    expect(offset).toBe(expected);
    expected = offset + length;
    const last = runs.at(-1);
    if (last && last[2] === zero) last[1] = expected;
    else runs.push([offset, expected, zero]);
  }
  return runs;
}
