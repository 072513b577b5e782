// The native cluster decoders (native/cluster-decoders.c) against Node's (decompressCluster), one
// batch both ways: the clusters qemu-img compressed, and clusters that are too short, too long,
// corrupt, cut or oddly framed, give the same bytes or the same refusal of the same cluster, kept
// into a buffer, into a given slot or only checked. In CI the native decoders must load: there a
// fallback to Node's would hide a broken build.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decompressBatch,
  decompressCluster,
  OWN_BUFFER_CLUSTER_SIZE,
  type ClusterDecoders,
  type Codec,
} from '../../lib/formats/cluster-decompress.ts';
import { nativeModule } from '../../lib/system/native-module.ts';
import { compressedExtent, isCompressed, layoutOf } from '../helpers/qcow2-layout.ts';
import { skipWithout } from '../helpers/capabilities.ts';

const C = 65536;
const native = nativeModule<ClusterDecoders>('cluster-decoders');

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** What a batch decodes to: its bytes' sha256 (deep equality of megabytes is slow), or which cluster failed and why. */
function decoded(
  codec: Codec,
  inputs: Uint8Array[],
  how: 'native' | 'node',
  mode: 'keep' | 'into' | 'check',
  clusterSize = C,
): { bytes?: string; failure?: { index: number; reason: string } } {
  const into =
    mode === 'into' ? Buffer.from(new SharedArrayBuffer(inputs.length * clusterSize + 8192), 4096) : undefined;
  const result = decompressBatch(
    zlib,
    codec,
    inputs,
    clusterSize,
    mode !== 'check',
    decompressCluster,
    OWN_BUFFER_CLUSTER_SIZE,
    into,
    how === 'native' ? native : null,
  );
  if (!Array.isArray(result)) return { failure: result };
  return { bytes: sha256(Buffer.concat(result)) };
}

/** The same result both ways, in every mode; the native one returned. */
function sameBothWays(codec: Codec, inputs: Uint8Array[], clusterSize = C): ReturnType<typeof decoded> {
  let first: ReturnType<typeof decoded> | undefined;
  for (const mode of ['keep', 'into', 'check'] as const) {
    const mine = decoded(codec, inputs, 'native', mode, clusterSize);
    expect(mine).toEqual(decoded(codec, inputs, 'node', mode, clusterSize));
    first ??= mine;
  }
  return first!;
}

/** A zstd frame that does not say its content size: a compressing stream given its input in parts. */
async function unsizedFrameOf(parts: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const frame of Readable.from(parts).pipe(zlib.createZstdCompress())) out.push(frame as Buffer);
  return Buffer.concat(out);
}

const padded = (frame: Buffer) => Buffer.concat([frame, Buffer.alloc(511 - ((frame.length + 511) % 512))]);
const cluster = (fill: number) => Buffer.alloc(C, fill);

describe.skipIf(!native && !process.env.CI)('compressed clusters: the native decoders', () => {
  it('load here (in CI, they must)', () => {
    expect(native).not.toBeNull();
  });

  describe.skipIf(skipWithout('qemu-img'))('clusters qemu-img compressed', () => {
    let dir: string;
    let disk: Buffer;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'byoi-cluster-decoders-'));
      // Text, random bytes and zeros: clusters that compress well, not at all (qemu then stores
      // them uncompressed) and to nothing.
      disk = Buffer.alloc(4 * 1024 * 1024);
      disk.write(
        Array.from({ length: 200_000 }, (_, i) => `line ${i}\n`)
          .join('')
          .slice(0, 3 * 1024 * 1024),
      );
      randomBytes(300_000).copy(disk, 2 * 1024 * 1024 + 123);
      writeFileSync(join(dir, 'disk.raw'), disk);
    });
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it.each(['zlib', 'zstd'] as const)('%s: the same bytes as the disk, both ways', (codec) => {
      const image = join(dir, `${codec}.qcow2`);
      const options = ['-c', '-o', `compression_type=${codec}`];
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, join(dir, 'disk.raw'), image]);
      const layout = layoutOf(image);
      const entries = layout.l2.filter(isCompressed);
      expect(entries.length).toBeGreaterThan(16);
      const inputs = entries.map((entry) => {
        const { offset, length } = compressedExtent(layout, entry);
        return layout.file.subarray(offset, offset + length);
      });
      const { bytes } = sameBothWays(codec, inputs);
      expect(bytes).toBe(sha256(Buffer.concat(entries.map(({ guest }) => disk.subarray(guest, guest + C)))));
    });
  });

  it('zlib (qcow2: raw deflate, a 4 KiB window): short, long, corrupt, cut, unended, garbage after', () => {
    const deflate = (bytes: Buffer) => zlib.deflateRawSync(bytes, { windowBits: 12 });
    const data = randomBytes(C / 2);
    const whole = Buffer.concat([data, data]);
    const good = deflate(whole);
    const corrupt = Buffer.from(good);
    corrupt[10]! ^= 0xff;
    // A stream that fills the cluster without its end marker (qemu accepts it, as Node's decoder does).
    const unended = zlib.deflateRawSync(whole, { windowBits: 12, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const cases: Buffer[] = [
      padded(good),
      deflate(Buffer.alloc(1000, 7)),
      deflate(Buffer.alloc(200_000, 7)),
      deflate(Buffer.alloc(C + 1, 7)),
      Buffer.from([0xff, 0xff, 0xff, 0xff]),
      corrupt,
      good.subarray(0, good.length - 100),
      unended,
      Buffer.concat([good, randomBytes(300)]),
      Buffer.alloc(0),
    ];
    const results = cases.map((input) => sameBothWays('zlib', [input]));
    expect(results.map(({ failure }) => failure?.reason)).toEqual([
      undefined,
      'it decompresses to 1000 bytes',
      'it decompresses to more',
      'it decompresses to more',
      'invalid block type',
      expect.any(String),
      expect.stringMatching(/^it decompresses to \d+ bytes$/),
      undefined,
      undefined,
      'it decompresses to 0 bytes',
    ]);
    expect(results[0]!.bytes).toBe(sha256(whole));
  });

  it('zstd: frames after frames, skippable frames, checksums, no content size; and refusals in the same words', async () => {
    const half = randomBytes(C / 2);
    const frame = (bytes: Buffer, options: zlib.ZstdOptions = {}) => zlib.zstdCompressSync(bytes, options);
    const whole = frame(Buffer.concat([half, half]));
    const skippable = Buffer.alloc(8 + 5);
    skippable.writeUInt32LE(0x184d2a53, 0);
    skippable.writeUInt32LE(5, 4);
    const checked = frame(cluster(3), { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } });
    const badChecksum = Buffer.from(checked);
    badChecksum[badChecksum.length - 1]! ^= 0xff;
    const unsized = await unsizedFrameOf([half, half]);
    const reserved = Buffer.from(whole);
    reserved[4]! |= 0x08;
    const cases: Buffer[] = [
      padded(whole),
      Buffer.concat([frame(half), skippable, frame(half), randomBytes(100)]),
      checked,
      unsized,
      frame(Buffer.alloc(200_000, 7)),
      frame(Buffer.alloc(1000, 7)),
      Buffer.concat([...Array.from({ length: 64 }, () => frame(Buffer.alloc(0))), frame(cluster(7))]),
      Buffer.from('not a zstd frame'),
      whole.subarray(0, whole.length - 10),
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
      reserved,
      badChecksum,
    ];
    const results = cases.map((input) => sameBothWays('zstd', [input]));
    expect(results.map(({ failure }) => failure?.reason)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      'it decompresses to more',
      'it decompresses to 1000 bytes',
      'more than 64 zstd frames in one cluster',
      'no zstd frame where one should start',
      'the data ends inside a zstd frame',
      'the data ends inside a frame header',
      'a zstd frame header has its reserved bit set',
      "Restored data doesn't match checksum", // zstd's own words, both ways
    ]);
    for (const { bytes } of results.slice(0, 2)) expect(bytes).toBe(sha256(Buffer.concat([half, half])));
  });

  it('an error within the 64 bytes Node decodes past a cluster is named; past them the data is "more"', () => {
    const sync = { windowBits: 12, finishFlush: zlib.constants.Z_SYNC_FLUSH };
    const badBlock = Buffer.from([0x07, 0xff, 0xff]); // a final block of the reserved type
    const over = (extra: number) => zlib.deflateRawSync(Buffer.alloc(C + extra, 9), sync);
    expect(sameBothWays('zlib', [Buffer.concat([over(63), badBlock])]).failure?.reason).toBe('invalid block type');
    expect(sameBothWays('zlib', [Buffer.concat([over(65), badBlock])]).failure?.reason).toBe('it decompresses to more');
    const wrapped = zlib.deflateSync(randomBytes(C + 63));
    wrapped[wrapped.length - 1]! ^= 0xff;
    expect(sameBothWays('deflate', [wrapped]).failure?.reason).toBe('incorrect data check');
    const checked = zlib.zstdCompressSync(randomBytes(C + 10), {
      params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    });
    checked[checked.length - 1]! ^= 0xff;
    expect(sameBothWays('zstd', [checked]).failure?.reason).toBe("Restored data doesn't match checksum");
    // A single-segment frame saying 527 bytes, for a 512-byte cluster.
    const small = zlib.zstdCompressSync(randomBytes(527));
    expect(sameBothWays('zstd', [small], 512).failure).toBeDefined();
  });

  it('zstd: a frame asking for a window past 128 MiB, or with a block larger than its window, is refused as Node refuses it', async () => {
    const frame = await unsizedFrameOf([cluster(1), cluster(2)]);
    expect(frame[4]! & 0x20).toBe(0); // a window descriptor follows the frame header descriptor
    const wide = Buffer.from(frame);
    wide[5] = (28 - 10) << 3; // windowLog 28
    expect(sameBothWays('zstd', [wide]).failure?.reason).toBe('Frame requires too much memory for decoding');
    // A 1 KiB window (descriptor 0), then one raw block of a whole cluster.
    const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00]);
    const block = Buffer.alloc(3);
    block.writeUIntLE((C << 3) | 1, 0, 3);
    expect(sameBothWays('zstd', [Buffer.concat([header, block, cluster(4)])]).failure).toBeDefined();
    // A single-segment frame saying 2^40 bytes.
    const huge = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0]), Buffer.alloc(8), block, cluster(4)]);
    huge.writeBigUInt64LE(2n ** 40n, 5);
    expect(sameBothWays('zstd', [huge]).failure).toBeDefined();
  });

  it('deflate (a VMDK grain): a zlib stream or raw deflate, a full window, the zlib check verified', () => {
    const data = Buffer.concat([randomBytes(C / 4), Buffer.alloc(C / 4, 1), randomBytes(C / 2)]);
    const wrapped = zlib.deflateSync(data);
    const badCheck = Buffer.from(wrapped);
    badCheck[badCheck.length - 1]! ^= 0xff;
    const cases = [
      wrapped,
      zlib.deflateRawSync(data),
      Buffer.concat([wrapped, Buffer.alloc(300)]),
      badCheck,
      zlib.deflateSync(Buffer.alloc(C * 2, 5)),
      zlib.deflateSync(Buffer.alloc(100, 5)),
    ];
    const results = cases.map((input) => sameBothWays('deflate', [input]));
    expect(results.map(({ failure }) => failure?.reason)).toEqual([
      undefined,
      undefined,
      undefined,
      'incorrect data check',
      'it inflates to more',
      'it inflates to 100 bytes',
    ]);
    expect(results[1]!.bytes).toBe(sha256(data));
  });

  it('a batch: every cluster in order, or the first that fails (which, and why), both ways', () => {
    const clusters = Array.from({ length: 16 }, (_, i) => cluster(i));
    const frames = clusters.map((bytes) => padded(zlib.zstdCompressSync(bytes)));
    expect(sameBothWays('zstd', frames).bytes).toBe(sha256(Buffer.concat(clusters)));
    const broken = frames.map((frame, i) => (i === 5 || i === 9 ? Buffer.from('not a zstd frame') : frame));
    expect(sameBothWays('zstd', broken).failure).toEqual({ index: 5, reason: 'no zstd frame where one should start' });
    // Clusters other than 64 KiB (qcow2 has 512 bytes to 2 MiB): the smallest and the largest.
    for (const size of [512, 2 * 1024 * 1024]) {
      const bytes = [Buffer.alloc(size, 1), randomBytes(size)];
      const inputs = bytes.map((b) => zlib.deflateRawSync(b, { windowBits: 12 }));
      expect(sameBothWays('zlib', inputs, size).bytes).toBe(sha256(Buffer.concat(bytes)));
    }
  });

  it.runIf(native)('refuses arguments it cannot take, before decoding anything', () => {
    const one = [zlib.deflateRawSync(cluster(1), { windowBits: 12 })];
    expect(() => native!.decodeClusters('lz4' as Codec, one, C, null)).toThrow(/zlib, zstd or deflate/);
    expect(() => native!.decodeClusters('zlib', one, 4 * 1024 * 1024, null)).toThrow(/1 byte to 2 MiB/);
    expect(() => native!.decodeClusters('zlib', one, C, Buffer.alloc(C - 1))).toThrow(/fewer clusters/);
    expect(() => native!.decodeClusters('zlib', ['x' as unknown as Uint8Array], C, null)).toThrow(/decodeClusters/);
  });
});
