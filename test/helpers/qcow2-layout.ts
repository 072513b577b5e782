// Where things are in a qcow2 file, for tests that poke at them (qemu iotest 080 style). Read
// independently of the decoder, straight from the spec, so a decoder bug cannot hide a test bug.
import { readFileSync } from 'node:fs';

export interface L2Entry {
  /** File offset of the entry. */
  readonly at: number;
  /** Guest offset of its cluster. */
  readonly guest: number;
  readonly word: bigint;
  /** Extended L2 only: the subcluster bitmap word. */
  readonly bitmap: bigint;
}

export interface Layout {
  readonly file: Buffer;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly l1Offset: number;
  readonly headerLength: number;
  readonly extendedL2: boolean;
  /** Entries of the L2 table of L1 entry 0. */
  readonly l2: L2Entry[];
}

export const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
export const COMPRESSED = 1n << 62n;

export function layoutOf(path: string): Layout {
  const file = readFileSync(path);
  const clusterBits = file.readUInt32BE(20);
  const clusterSize = 2 ** clusterBits;
  const version = file.readUInt32BE(4);
  const extendedL2 = version === 3 && (file.readBigUInt64BE(72) & 16n) !== 0n;
  const l1Offset = Number(file.readBigUInt64BE(40));
  const l2Offset = Number(file.readBigUInt64BE(l1Offset) & OFFSET_MASK);
  const entrySize = extendedL2 ? 16 : 8;
  const l2: L2Entry[] = [];
  if (l2Offset !== 0) {
    for (let k = 0; k < clusterSize / entrySize; k++) {
      const at = l2Offset + k * entrySize;
      l2.push({
        at,
        guest: k * clusterSize,
        word: file.readBigUInt64BE(at),
        bitmap: extendedL2 ? file.readBigUInt64BE(at + 8) : 0n,
      });
    }
  }
  return {
    file,
    clusterBits,
    clusterSize,
    l1Offset,
    headerLength: version === 3 ? file.readUInt32BE(100) : 72,
    extendedL2,
    l2,
  };
}

export function isCompressed(entry: L2Entry): boolean {
  return (entry.word & COMPRESSED) !== 0n;
}

/** The first standard (uncompressed, allocated) data cluster of L1 entry 0's table. */
export function firstData(layout: Layout): L2Entry {
  const entry = layout.l2.find(
    (e) => !isCompressed(e) && (e.word & OFFSET_MASK) !== 0n && (!layout.extendedL2 || e.bitmap !== 0n),
  );
  if (!entry) throw new Error('no data cluster in the first L2 table');
  return entry;
}

export function firstCompressed(layout: Layout): L2Entry {
  const entry = layout.l2.find(isCompressed);
  if (!entry) throw new Error('no compressed cluster in the first L2 table');
  return entry;
}

/** Host offset and stored length of a compressed cluster. */
export function compressedExtent(layout: Layout, entry: L2Entry): { offset: number; length: number } {
  const x = BigInt(70 - layout.clusterBits);
  const descriptor = entry.word & ((1n << 62n) - 1n);
  const offset = descriptor & ((1n << x) - 1n);
  const sectors = (descriptor >> x) + 1n;
  return { offset: Number(offset), length: Number(sectors * 512n - (offset % 512n)) };
}

/** File offset of the feature name table entry for incompatible bit `bit`. */
export function featureNameEntry(layout: Layout, bit: number): number {
  let at = layout.headerLength;
  for (;;) {
    const type = layout.file.readUInt32BE(at);
    const length = layout.file.readUInt32BE(at + 4);
    if (type === 0) throw new Error('no feature name table');
    if (type === 0x6803f857) {
      for (let e = at + 8; e < at + 8 + length; e += 48)
        if (layout.file[e] === 0 && layout.file[e + 1] === bit) return e;
      throw new Error(`no name for incompatible bit ${bit}`);
    }
    at += 8 + Math.ceil(length / 8) * 8;
  }
}
