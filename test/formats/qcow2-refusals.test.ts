// Every refusal of the qcow2 decoder, qemu iotest 080 style: a valid image made by qemu-img, one
// field or table entry poked, and the exact message asserted. Structural refusals happen at open,
// before any extent; bad compressed data is refused while decoding.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { ByoiError } from '../../lib/errors.ts';
import { openQcow2 } from '../../lib/formats/qcow2.ts';
import { makeQcow2Fixtures, patchBytes, patchU64, qemuRawSha256 } from '../../scripts/fixtures/qcow2.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import {
  compressedExtent,
  featureNameEntry,
  firstCompressed,
  firstData,
  layoutOf,
  OFFSET_MASK,
  type Layout,
} from '../helpers/qcow2-layout.ts';

const u32 = (value: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
};
const hex = (value: number | bigint) => `0x${value.toString(16)}`;
const COPIED = 1n << 63n;

interface Case {
  name: string;
  fixture: string;
  /** Pokes the copy at `path`; returns the expected message. */
  poke(path: string, layout: Layout): string;
}

const size = (path: string) => statSync(path).size;

const atOpen: Case[] = [
  {
    name: 'bad magic',
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 0, Buffer.from('QFI\xfa', 'latin1')),
      'Bad qcow2 image: the file does not start with the qcow2 magic "QFI\\xfb".'
    ),
  },
  ...[1, 4].map((version): Case => ({
    name: `version ${version}`,
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 4, u32(version)),
      `Unsupported qcow2 image: version ${version}; byoi reads qcow2 versions 2 and 3.`
    ),
  })),
  {
    name: 'unknown incompatible feature, unnamed',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 72, 1n << 20n),
      'Unsupported qcow2 image: it needs features byoi does not know: Unknown incompatible feature: 20.'
    ),
  },
  {
    name: 'unknown incompatible features, named from the feature table',
    fixture: 'v3-64k',
    poke: (p, l) => {
      // Re-label the table's "dirty bit" entry as bit 40, then set bits 40 and 63.
      patchBytes(p, featureNameEntry(l, 0) + 1, Buffer.from([40]));
      patchU64(p, 72, (1n << 40n) | (1n << 63n));
      return 'Unsupported qcow2 image: it needs features byoi does not know: dirty bit, Unknown incompatible feature: 63.';
    },
  },
  ...(
    [
      [1, 'AES'],
      [2, 'LUKS'],
    ] as const
  ).map(([method, label]): Case => ({
    name: `${label} encryption`,
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 32, u32(method)),
      `Unsupported qcow2 image: it is encrypted (${label}); deploy an unencrypted image.`
    ),
  })),
  {
    name: 'a backing file',
    fixture: 'v3-64k',
    poke: (p) => {
      patchBytes(p, 4096, Buffer.from('base.qcow2'));
      patchU64(p, 8, 4096);
      patchBytes(p, 16, u32(10));
      return 'Unsupported qcow2 image: it needs the backing file "base.qcow2"; make a self-contained image first (qemu-img convert -O qcow2).';
    },
  },
  {
    name: 'the corrupt bit',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 72, 2),
      'Bad qcow2 image: it is marked corrupt (qemu found inconsistent metadata); repair it with qemu-img check -r all first.'
    ),
  },
  {
    name: 'the external data file bit without a name',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 72, 4),
      'Unsupported qcow2 image: its data lives in the external data file "(name not recorded)", which is not part of the image.'
    ),
  },
  ...[8, 22].map((bits): Case => ({
    name: `cluster_bits ${bits}`,
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 20, u32(bits)),
      `Bad qcow2 image: cluster_bits is ${bits}; qcow2 allows 9 to 21 (clusters of 512 bytes to 2 MiB).`
    ),
  })),
  ...[100, 108, 65544].map((length): Case => ({
    name: `header_length ${length}`,
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 100, u32(length)),
      `Bad qcow2 image: header_length is ${length}; a version 3 header is at least 104 bytes, a multiple of 8 and inside the first cluster (65536 bytes).`
    ),
  })),
  {
    name: 'a header extension longer than the header area',
    fixture: 'v3-64k',
    poke: (p, l) => (
      patchBytes(p, l.headerLength + 4, u32(65536)),
      `Bad qcow2 image: the header extension at offset ${hex(l.headerLength)} runs past the end of the header area.`
    ),
  },
  {
    name: 'an end-of-extensions marker whose length runs past the header area',
    fixture: 'v2-64k',
    poke: (p) => (
      patchBytes(p, 76, u32(0x80000)),
      'Bad qcow2 image: the header extension at offset 0x48 runs past the end of the header area.'
    ),
  },
  {
    name: 'autoclear bit 1 (raw external data) without an external data file',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 88, 2),
      'Bad qcow2 image: autoclear feature bit 1 (raw external data) is set but the image has no external data file.'
    ),
  },
  {
    name: 'refcount_order 7',
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 96, u32(7)),
      'Bad qcow2 image: refcount_order is 7; qcow2 allows at most 6 (64-bit refcounts).'
    ),
  },
  {
    name: 'compression type 2',
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 104, Buffer.from([2])),
      'Unsupported qcow2 image: compression type 2 is unknown (byoi reads 0, zlib, and 1, zstd).'
    ),
  },
  {
    name: 'zstd without incompatible bit 3',
    fixture: 'zstd-64k',
    poke: (p) => (
      patchU64(p, 72, 0),
      'Bad qcow2 image: the compression type is zstd but incompatible feature bit 3 (compression type) is not set.'
    ),
  },
  {
    name: 'zlib with incompatible bit 3',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 72, 8),
      'Bad qcow2 image: the compression type is zlib but incompatible feature bit 3 (compression type) is set.'
    ),
  },
  {
    name: 'extended L2 with 8 KiB clusters',
    fixture: 'extl2-64k',
    poke: (p) => (
      patchBytes(p, 20, u32(13)),
      'Bad qcow2 image: extended L2 entries need clusters of at least 16384 bytes (512-byte subclusters); this image has 8192-byte clusters.'
    ),
  },
  ...(
    [
      ['2n ** 52n + 512n', 2n ** 52n + 512n],
      ['2n ** 53n - 512n', 2n ** 53n - 512n],
      ['2n ** 53n', 2n ** 53n],
      ['2n ** 53n + 512n', 2n ** 53n + 512n],
      ['2n ** 63n - 1n', 2n ** 63n - 1n],
      ['2n ** 63n', 2n ** 63n],
      ['2n ** 64n - 512n', 2n ** 64n - 512n],
      ['2n ** 64n - 1n', 2n ** 64n - 1n],
    ] as const
  ).map(([label, virtualSize]): Case => ({
    name: `a virtual size of ${label}, more than byoi can represent`,
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 24, virtualSize),
      `Bad qcow2 image: its virtual size of ${virtualSize} bytes is more than byoi can represent (at most 2^52 bytes, 4 PiB: byte offsets past it lose precision).`
    ),
  })),
  {
    name: 'an L1 table too small for the virtual size',
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 36, u32(0)),
      'Bad qcow2 image: the L1 table has 0 entries but the virtual size needs 1.'
    ),
  },
  {
    name: 'an absurdly large L1 table',
    fixture: 'v3-64k',
    poke: (p) => (
      patchBytes(p, 36, u32(4194305)),
      'Bad qcow2 image: the L1 table has 4194305 entries, above the limit of 4194304 (32 MiB).'
    ),
  },
  {
    name: 'a misaligned L1 table',
    fixture: 'v3-64k',
    poke: (p, l) => (
      patchU64(p, 40, l.l1Offset + 512),
      `Bad qcow2 image: the L1 table at offset ${hex(l.l1Offset + 512)} is not aligned to the cluster size (65536 bytes).`
    ),
  },
  {
    name: 'an L1 table beyond the end of the file',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 40, 2n ** 40n),
      `Bad qcow2 image: the L1 table at offset 0x10000000000 is beyond the end of the file (${size(p)} bytes).`
    ),
  },
  {
    name: 'an L1 table at the top of the 64-bit range (no overflow)',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, 40, 0xffff_ffff_ffff_0000n),
      `Bad qcow2 image: the L1 table at offset 0xffffffffffff0000 is beyond the end of the file (${size(p)} bytes).`
    ),
  },
  {
    name: 'an L1 table cut short by the end of the file',
    fixture: 'v3-64k',
    poke: (p, l) => (
      patchBytes(p, 36, u32((size(p) - l.l1Offset) / 8 + 1)),
      `Bad qcow2 image: the L1 table at offset ${hex(l.l1Offset)} is beyond the end of the file (${size(p)} bytes).`
    ),
  },
  {
    name: 'a misaligned L2 table',
    fixture: 'v3-64k',
    poke: (p, l) => {
      const entry = l.file.readBigUInt64BE(l.l1Offset);
      patchU64(p, l.l1Offset, entry + 512n);
      return `Bad qcow2 image: the L2 table at offset ${hex((entry & OFFSET_MASK) + 512n)} is not aligned to the cluster size (65536 bytes).`;
    },
  },
  {
    name: 'an L2 table beyond the end of the file',
    fixture: 'v3-64k',
    poke: (p) => (
      patchU64(p, layoutOf(p).l1Offset, COPIED | 0x00ff_ffff_ffff_0000n),
      `Bad qcow2 image: the L2 table at offset 0xffffffffff0000 is beyond the end of the file (${size(p)} bytes).`
    ),
  },
  {
    name: 'a misaligned data cluster',
    fixture: 'v3-64k',
    poke: (p, l) => {
      const data = firstData(l);
      patchU64(p, data.at, data.word + 512n);
      return `Bad qcow2 image: the data of guest offset ${hex(data.guest)} at offset ${hex((data.word & OFFSET_MASK) + 512n)} is not aligned to the cluster size (65536 bytes).`;
    },
  },
  {
    name: 'a data cluster just past the end of the file',
    fixture: 'v3-64k',
    poke: (p, l) => {
      const data = firstData(l);
      const end = BigInt(Math.ceil(size(p) / 65536) * 65536);
      patchU64(p, data.at, COPIED | end);
      return `Bad qcow2 image: the data of guest offset ${hex(data.guest)} at offset ${hex(end)} is beyond the end of the file (${size(p)} bytes).`;
    },
  },
  {
    name: 'a data cluster at the top of the offset range (no overflow)',
    fixture: 'v2-64k',
    poke: (p, l) => {
      const data = firstData(l);
      patchU64(p, data.at, 0x00ff_ffff_ffff_0000n);
      return `Bad qcow2 image: the data of guest offset ${hex(data.guest)} at offset 0xffffffffff0000 is beyond the end of the file (${size(p)} bytes).`;
    },
  },
  {
    name: 'compressed data beyond the end of the file',
    fixture: 'zlib-64k',
    poke: (p, l) => {
      const entry = firstCompressed(l);
      const offsetBits = (1n << BigInt(70 - l.clusterBits)) - 1n;
      patchU64(p, entry.at, (entry.word & ~offsetBits) | BigInt(size(p)));
      return `Bad qcow2 image: the compressed data of guest offset ${hex(entry.guest)} at offset ${hex(size(p))} is beyond the end of the file (${size(p)} bytes).`;
    },
  },
  {
    name: 'the zero flag in a version 2 image',
    fixture: 'v2-64k',
    poke: (p, l) => {
      const data = firstData(l);
      patchU64(p, data.at, data.word | 1n);
      return `Bad qcow2 image: the cluster at guest offset ${hex(data.guest)} has the zero flag, which version 2 images do not have.`;
    },
  },
  {
    name: 'a subcluster both allocated and zero',
    fixture: 'extl2-64k',
    poke: (p, l) => {
      const data = firstData(l);
      const alloc = data.bitmap & 0xffff_ffffn;
      let sub = 0;
      while (!((alloc >> BigInt(sub)) & 1n)) sub++;
      patchU64(p, data.at + 8, data.bitmap | (1n << BigInt(32 + sub)));
      return `Bad qcow2 image: subcluster ${sub} of the cluster at guest offset ${hex(data.guest)} is marked both allocated and zero.`;
    },
  },
  {
    name: 'allocated subclusters without a host cluster',
    fixture: 'extl2-64k',
    poke: (p, l) => {
      const data = firstData(l);
      patchU64(p, data.at, 0);
      return `Bad qcow2 image: the cluster at guest offset ${hex(data.guest)} has allocated subclusters but no host cluster.`;
    },
  },
  {
    name: 'a compressed cluster with a subcluster bitmap',
    fixture: 'zstd-extl2',
    poke: (p, l) => {
      const entry = firstCompressed(l);
      patchU64(p, entry.at + 8, 1);
      return `Bad qcow2 image: the compressed cluster at guest offset ${hex(entry.guest)} has a non-zero subcluster bitmap.`;
    },
  },
];

/** Replaces a compressed cluster's stored bytes with `stream`; returns its guest offset. */
function replaceCompressed(path: string, stream: Buffer): number {
  const layout = layoutOf(path);
  const entry = firstCompressed(layout);
  const { offset, length } = compressedExtent(layout, entry);
  if (stream.length > length) throw new Error('replacement stream does not fit');
  patchBytes(path, offset, Buffer.concat([stream, Buffer.alloc(length - stream.length)]));
  return entry.guest;
}

const whileDecoding: Case[] = [
  {
    name: 'zlib data one cluster short',
    fixture: 'zlib-64k',
    poke: (p) =>
      `Bad qcow2 image: the zlib data of guest offset ${hex(replaceCompressed(p, zlib.deflateRawSync(Buffer.alloc(1000, 7))))} does not decompress to exactly one cluster (65536 bytes): it decompresses to 1000 bytes.`,
  },
  {
    name: 'zlib data longer than a cluster',
    fixture: 'zlib-64k',
    poke: (p) =>
      `Bad qcow2 image: the zlib data of guest offset ${hex(replaceCompressed(p, zlib.deflateRawSync(Buffer.alloc(200_000, 7))))} does not decompress to exactly one cluster (65536 bytes): it decompresses to more.`,
  },
  {
    name: 'zlib garbage',
    fixture: 'zlib-64k',
    poke: (p) =>
      `Bad qcow2 image: the zlib data of guest offset ${hex(replaceCompressed(p, Buffer.from([0xff, 0xff, 0xff, 0xff])))} does not decompress to exactly one cluster (65536 bytes): invalid block type.`,
  },
  {
    name: 'zstd data longer than a cluster',
    fixture: 'zstd-64k',
    poke: (p) =>
      `Bad qcow2 image: the zstd data of guest offset ${hex(replaceCompressed(p, zlib.zstdCompressSync(Buffer.alloc(200_000, 7))))} does not decompress to exactly one cluster (65536 bytes): it decompresses to more.`,
  },
  {
    name: 'zstd data one cluster short, then no frame',
    fixture: 'zstd-64k',
    poke: (p) =>
      `Bad qcow2 image: the zstd data of guest offset ${hex(replaceCompressed(p, zlib.zstdCompressSync(Buffer.alloc(1000, 7))))} does not decompress to exactly one cluster (65536 bytes): no zstd frame where one should start.`,
  },
  {
    // qemu writes one frame a cluster; thousands of empty ones would make each cluster cost seconds.
    name: 'zstd cluster of 65 frames (64 empty, then its data)',
    fixture: 'zstd-64k',
    poke: (p) =>
      `Bad qcow2 image: the zstd data of guest offset ${hex(replaceCompressed(p, Buffer.concat([...Array.from({ length: 64 }, () => zlib.zstdCompressSync(Buffer.alloc(0))), zlib.zstdCompressSync(Buffer.alloc(65536, 7))])))} does not decompress to exactly one cluster (65536 bytes): more than 64 zstd frames in one cluster.`,
  },
  {
    name: 'zstd garbage',
    fixture: 'zstd-64k',
    poke: (p) =>
      `Bad qcow2 image: the zstd data of guest offset ${hex(replaceCompressed(p, Buffer.from('not a zstd frame')))} does not decompress to exactly one cluster (65536 bytes): no zstd frame where one should start.`,
  },
];

describe.skipIf(skipWithout('qemu-img'))('qcow2 refusals', () => {
  let dir: string;
  const originals = new Map<string, string>();
  let copies = 0;

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-refusals-'));
    for (const f of makeQcow2Fixtures(dir, ['v3-64k', 'v2-64k', 'extl2-64k', 'zlib-64k', 'zstd-64k', 'zstd-extl2']))
      originals.set(f.name, f.path);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function poked(c: Case): { path: string; message: string } {
    const path = join(dir, `poked-${copies++}.qcow2`);
    copyFileSync(originals.get(c.fixture)!, path);
    return { path, message: c.poke(path, layoutOf(path)) };
  }

  function refusedWith(message: string): (error: unknown) => void {
    return (error) => {
      expect(error).toBeInstanceOf(ByoiError);
      expect((error as ByoiError).kind).toBe('refused-image');
      expect((error as ByoiError).message).toBe(message);
    };
  }

  it('every fixture used here opens untouched', async () => {
    for (const path of originals.values())
      await decodeToSha256(openQcow2(await ChunkedBuffer.fromFile(path), { threads: 0 }));
  });

  it.each(atOpen.map((c) => [c.name, c] as const))('refuses at open: %s', async (_, c) => {
    const { path, message } = poked(c);
    const source = await ChunkedBuffer.fromFile(path);
    let thrown: unknown;
    try {
      openQcow2(source);
    } catch (error) {
      thrown = error;
    }
    refusedWith(message)(thrown);
  });

  it.each(whileDecoding.flatMap((c) => [[c.name, 0, c] as const, [c.name, 2, c] as const]))(
    'refuses while decoding: %s (threads %i)',
    async (_, threads, c) => {
      const { path, message } = poked(c);
      const image = openQcow2(await ChunkedBuffer.fromFile(path), { threads });
      await decodeToSha256(image).then(() => expect.fail('decoded'), refusedWith(message));
      // The dry pass (the writer's check before a block device) refuses exactly the same way.
      const dryRun = async () => {
        for await (const _shape of image.check!()) void _shape;
      };
      await dryRun().then(() => expect.fail('checked'), refusedWith(message));
    },
  );

  it('decodes a cluster of 64 zstd frames (63 empty, then its data) as qemu-img does', async () => {
    const path = join(dir, 'zstd-64-frames.qcow2');
    copyFileSync(originals.get('zstd-64k')!, path);
    const frames = Array.from({ length: 63 }, () => zlib.zstdCompressSync(Buffer.alloc(0)));
    // Over the start of the first compressed cluster's own frame (a random cluster: far longer), the
    // rest left as it is: the sectors its entry names may hold the next cluster's first bytes.
    const { offset } = compressedExtent(layoutOf(path), firstCompressed(layoutOf(path)));
    patchBytes(path, offset, Buffer.concat([...frames, zlib.zstdCompressSync(Buffer.alloc(65536, 7))]));
    for (const threads of [0, 2])
      expect(
        await decodeToSha256(openQcow2(await ChunkedBuffer.fromFile(path), { threads })).then((d) => d.sha256),
      ).toBe(qemuRawSha256(path, dir));
  });

  it('refuses an external data file, named, as qemu-img makes it', async () => {
    const path = join(dir, 'external.qcow2');
    execFileSync('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      `data_file=${join(dir, 'external.raw')}`,
      path,
      '1M',
    ]);
    const source = await ChunkedBuffer.fromFile(path);
    expect(() => openQcow2(source)).toThrow(
      `Unsupported qcow2 image: its data lives in the external data file "${join(dir, 'external.raw')}", which is not part of the image.`,
    );
  });

  it('refuses a file too short for a header', async () => {
    const source = new ChunkedBuffer();
    source.append(Buffer.from('QFI\xfb\0\0\0\x03', 'latin1'));
    expect(() => openQcow2(source)).toThrow('Bad qcow2 image: the file is 8 bytes, too short to hold a qcow2 header.');
  });
});
