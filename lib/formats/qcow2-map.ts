// The qcow2 cluster map: L1 -> L2 -> host clusters. `validateQcow2Map` checks every entry the virtual
// size reaches before anything is decoded; `qcow2Segments` walks the map in guest order and merges
// neighbouring clusters into large runs.
//
// Entries are 64-bit. They are read as bytes and u32 words and combined with arithmetic, never with
// JS's 32-bit bit operators: the host offset is bits 9..55 = (bytes 1..3) * 2^32 + (low word - low
// word % 512), flags come from single bytes. Offsets above 2^53 lose low bits as doubles, but any such
// offset is far beyond the end of the file, which is all the checks need to know.
import type { ImageSource } from '../source/image-source.ts';
import type { Qcow2Header } from './qcow2-header.ts';
import type { StoredCluster } from './batch-decoder.ts';
import {
  qcow2BeyondEnd,
  qcow2CompressedData,
  qcow2CompressedWithBitmap,
  qcow2GuestData,
  qcow2Misaligned,
  qcow2SubclusterAllocAndZero,
  qcow2SubclusterWithoutCluster,
  qcow2V2ZeroFlag,
} from '../errors.ts';

const TWO_32 = 4294967296;
/** Subclusters per cluster with extended L2 entries. */
export const SUBCLUSTERS = 32;

/** A run of guest bytes and where they come from. */
export type Segment =
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'data'; readonly offset: number; readonly length: number; readonly host: number }
  /** Consecutive compressed clusters; `length` may end inside the last one (the virtual size's end). */
  | {
      readonly kind: 'compressed';
      readonly offset: number;
      readonly length: number;
      /** Where each one's bytes are, clamped to the end of the file as qemu does. */
      readonly clusters: StoredCluster[];
    };

export interface Qcow2MapStats {
  /** Guest bytes stored in the file: data clusters, allocated subclusters, compressed clusters. */
  readonly allocatedBytes: number;
  readonly compressedClusters: number;
  /** L2 tables (by file offset) whose every entry reads as zeros: walked as one zero run. */
  readonly emptyTables: ReadonlySet<number>;
}

/** Host offset (bits 9..55) of the 64-bit entry at `at`, as a double (exact below 2^53). */
function entryOffset(table: Buffer, at: number): number {
  const lo = table.readUInt32BE(at + 4);
  return (table[at + 1]! * 65536 + table[at + 2]! * 256 + table[at + 3]!) * TWO_32 + (lo - (lo % 512));
}

/** The same offset, exact, for messages. */
function entryOffsetExact(table: Buffer, at: number): bigint {
  return table.readBigUInt64BE(at) & 0x00ff_ffff_ffff_fe00n;
}

/** Decodes a compressed descriptor (bits 0..61): offset in the low 70 - cluster_bits bits, then sectors - 1. */
function compressedDescriptor(
  table: Buffer,
  at: number,
  clusterBits: number,
  fileSize: number,
): { host: number; length: number; exact: bigint } {
  const hi30 = table.readUInt32BE(at) % 2 ** 30;
  const lo = table.readUInt32BE(at + 4);
  const offsetHiBits = 2 ** (70 - clusterBits - 32);
  const host = (hi30 % offsetHiBits) * TWO_32 + lo;
  const sectors = Math.floor(hi30 / offsetHiBits) + 1;
  const length = Math.min(sectors * 512 - (lo % 512), fileSize - host);
  return { host, length, exact: BigInt(hi30 % offsetHiBits) * BigInt(TWO_32) + BigInt(lo) };
}

/** Bit `i` (0..31) of the u32 at `at`, read as two u16 halves so no value reaches 2^31. */
export function bitOf(table: Buffer, at: number, i: number): number {
  return i < 16 ? (table.readUInt16BE(at + 2) >> i) & 1 : (table.readUInt16BE(at) >> (i - 16)) & 1;
}

interface Geometry {
  readonly header: Qcow2Header;
  readonly fileSize: number;
  readonly l1: Buffer;
}

function geometry(source: ImageSource, header: Qcow2Header): Geometry {
  // An empty disk needs no L1 table, wherever its offset points.
  const l1 = header.l1Needed === 0 ? Buffer.alloc(0) : source.read(header.l1Offset, 8 * header.l1Needed);
  return { header, fileSize: source.size, l1 };
}

/** The L2 table of L1 entry `index`, checked, or 0 when unallocated. */
function l2TableOffset(g: Geometry, index: number): number {
  const offset = entryOffset(g.l1, 8 * index);
  if (offset === 0) return 0;
  const { clusterSize } = g.header;
  if (offset % clusterSize !== 0) throw qcow2Misaligned('the L2 table', entryOffsetExact(g.l1, 8 * index), clusterSize);
  if (offset + clusterSize > g.fileSize)
    throw qcow2BeyondEnd('the L2 table', entryOffsetExact(g.l1, 8 * index), g.fileSize);
  return offset;
}

/** Checks entries [0, count) of one L2 table whose first cluster is at guest offset `guestBase`; returns its stats. */
function validateTable(
  g: Geometry,
  table: Buffer,
  count: number,
  guestBase: number,
): { allocated: number; compressed: number } {
  const { clusterSize, clusterBits, extendedL2, version, virtualSize } = g.header;
  const entrySize = extendedL2 ? 16 : 8;
  const subSize = clusterSize / SUBCLUSTERS;
  let allocated = 0;
  let compressed = 0;
  for (let k = 0; k < count; k++) {
    const at = k * entrySize;
    const guest = guestBase + k * clusterSize;
    const inGuest = Math.min(clusterSize, virtualSize - guest);
    const top = table[at]!;
    if (top & 0x40) {
      if (extendedL2 && (table.readUInt32BE(at + 8) !== 0 || table.readUInt32BE(at + 12) !== 0))
        throw qcow2CompressedWithBitmap(guest);
      const { host, exact } = compressedDescriptor(table, at, clusterBits, g.fileSize);
      if (host >= g.fileSize) throw qcow2BeyondEnd(qcow2CompressedData(guest), exact, g.fileSize);
      compressed++;
      allocated += inGuest;
      continue;
    }
    const host = entryOffset(table, at);
    if (host % clusterSize !== 0)
      throw qcow2Misaligned(qcow2GuestData(guest), entryOffsetExact(table, at), clusterSize);
    if (!extendedL2) {
      if (table[at + 7]! & 1) {
        if (version === 2) throw qcow2V2ZeroFlag(guest);
        continue; // reads as zeros, preallocated or not
      }
      if (host === 0) continue;
      if (host + inGuest > g.fileSize)
        throw qcow2BeyondEnd(qcow2GuestData(guest), entryOffsetExact(table, at), g.fileSize);
      allocated += inGuest;
      continue;
    }
    const subclusters = allocatedSubclusters(table, at, guest, host, inGuest, subSize);
    if (!subclusters) continue;
    const { end } = subclusters;
    allocated += subclusters.allocated;
    if (host + end > g.fileSize) throw qcow2BeyondEnd(qcow2GuestData(guest), entryOffsetExact(table, at), g.fileSize);
  }
  return { allocated, compressed };
}

/**
 * A standard cluster's extended L2 entry at `at` (cluster at `guest`, `host` in the file, `inGuest`
 * bytes of it inside the disk): undefined when no subcluster is allocated (it reads as zeros), else
 * how far into the cluster its allocated subclusters reach and how many bytes they hold. Refuses an
 * allocated subcluster without a cluster, or one also flagged as zeros.
 */
export function allocatedSubclusters(
  table: Buffer,
  at: number,
  guest: number,
  host: number,
  inGuest: number,
  subSize: number,
): { end: number; allocated: number } | undefined {
  const zeroWord = table.readUInt32BE(at + 8);
  if (table.readUInt32BE(at + 12) === 0) return undefined;
  if (host === 0) throw qcow2SubclusterWithoutCluster(guest);
  let end = 0;
  let allocated = 0;
  for (let i = 0; i < SUBCLUSTERS && i * subSize < inGuest; i++) {
    if (!bitOf(table, at + 12, i)) continue;
    if (zeroWord !== 0 && bitOf(table, at + 8, i)) throw qcow2SubclusterAllocAndZero(guest, i);
    end = Math.min((i + 1) * subSize, inGuest);
    allocated += end - i * subSize;
  }
  return { end, allocated };
}

/**
 * Checks every L1 and L2 entry that the virtual size reaches. A table referenced by several L1
 * entries is checked once, so the work is bounded by the file's size, not by the guest's.
 */
export function validateQcow2Map(source: ImageSource, header: Qcow2Header): Qcow2MapStats {
  const g = geometry(source, header);
  const { clusterSize, l2Entries, virtualSize } = header;
  const tableSpan = clusterSize * l2Entries;
  const checked = new Map<number, { allocated: number; compressed: number }>();
  let allocatedBytes = 0;
  let compressedClusters = 0;
  const emptyTables = new Set<number>();
  for (let i = 0; i < header.l1Needed; i++) {
    const offset = l2TableOffset(g, i);
    if (offset === 0) continue;
    const guestBase = i * tableSpan;
    const whole = guestBase + tableSpan <= virtualSize;
    let stats = whole ? checked.get(offset) : undefined;
    if (!stats) {
      const count = whole ? l2Entries : Math.ceil((virtualSize - guestBase) / clusterSize);
      stats = validateTable(g, source.read(offset, clusterSize), count, guestBase);
      if (whole) checked.set(offset, stats);
    }
    allocatedBytes += stats.allocated;
    compressedClusters += stats.compressed;
    if (whole && stats.allocated === 0) emptyTables.add(offset);
  }
  return { allocatedBytes, compressedClusters, emptyTables };
}

/** Merges pieces of the guest, in order, into segments. */
class Merger {
  private kind: 'none' | 'zero' | 'data' | 'compressed' = 'none';
  private start = 0;
  private length = 0;
  private host = 0;
  private clusters: StoredCluster[] = [];
  private readonly maxRun: number;
  private readonly viewSize: number;
  private readonly batch: number;

  constructor(maxRun: number, viewSize: number, batch: number) {
    this.maxRun = maxRun;
    this.viewSize = viewSize;
    this.batch = batch;
  }

  /** The finished segment, if any, and starts afresh at `offset`. */
  flush(): Segment | undefined {
    const { kind, start: offset, length } = this;
    this.start += length;
    this.length = 0;
    this.kind = 'none';
    if (kind === 'zero') return { kind, offset, length };
    if (kind === 'data') return { kind, offset, length, host: this.host };
    if (kind === 'compressed') {
      const clusters = this.clusters;
      this.clusters = [];
      return { kind, offset, length, clusters };
    }
    return undefined;
  }

  zero(length: number): Segment | undefined {
    if (this.kind === 'zero') {
      this.length += length;
      return undefined;
    }
    const done = this.flush();
    this.kind = 'zero';
    this.length = length;
    return done;
  }

  data(host: number, length: number): Segment | undefined {
    if (
      this.kind === 'data' &&
      this.host + this.length === host &&
      this.length + length <= this.maxRun &&
      Math.floor(this.host / this.viewSize) === Math.floor((host + length - 1) / this.viewSize)
    ) {
      this.length += length;
      return undefined;
    }
    const done = this.flush();
    this.kind = 'data';
    this.host = host;
    this.length = length;
    return done;
  }

  compressed(cluster: StoredCluster, length: number): Segment | undefined {
    if (this.kind === 'compressed' && this.clusters.length < this.batch) {
      this.clusters.push(cluster);
      this.length += length;
      return undefined;
    }
    const done = this.flush();
    this.kind = 'compressed';
    this.clusters.push(cluster);
    this.length = length;
    return done;
  }
}

export interface WalkOptions {
  /** Longest data segment. */
  readonly maxRun: number;
  /** Data segments never cross a multiple of this (the source's chunk size: views stay zero-copy). */
  readonly viewSize: number;
  /** Most compressed clusters in one segment. */
  readonly compressedBatch: number;
  /** From `validateQcow2Map`. */
  readonly emptyTables: ReadonlySet<number>;
}

/**
 * The guest in order as merged segments covering [0, virtualSize). Assumes `validateQcow2Map`
 * passed. Work is bounded by the number of guest clusters; unallocated and all-zero L2 tables cost
 * O(1), so a hostile image cannot make a huge all-zero disk expensive.
 */
export function* qcow2Segments(source: ImageSource, header: Qcow2Header, options: WalkOptions): Generator<Segment> {
  const g = geometry(source, header);
  const { clusterSize, clusterBits, l2Entries, virtualSize, extendedL2 } = header;
  const tableSpan = clusterSize * l2Entries;
  const subSize = clusterSize / SUBCLUSTERS;
  const merge = new Merger(options.maxRun, options.viewSize, options.compressedBatch);
  let out: Segment | undefined;
  for (let i = 0; i < header.l1Needed; i++) {
    const guestBase = i * tableSpan;
    const span = Math.min(tableSpan, virtualSize - guestBase);
    const offset = l2TableOffset(g, i);
    if (offset === 0 || options.emptyTables.has(offset)) {
      if ((out = merge.zero(span))) yield out;
      continue;
    }
    const table = source.read(offset, clusterSize);
    const count = Math.ceil(span / clusterSize);
    for (let k = 0; k < count; k++) {
      const at = extendedL2 ? 16 * k : 8 * k;
      const inGuest = Math.min(clusterSize, span - k * clusterSize);
      if (table[at]! & 0x40) {
        const { host, length } = compressedDescriptor(table, at, clusterBits, g.fileSize);
        if ((out = merge.compressed({ host, size: length }, inGuest))) yield out;
        continue;
      }
      const host = entryOffset(table, at);
      if (!extendedL2) {
        if (host === 0 || table[at + 7]! & 1) out = merge.zero(inGuest);
        else out = merge.data(host, inGuest);
        if (out) yield out;
        continue;
      }
      const allocWord = table.readUInt32BE(at + 12);
      if (allocWord === 0) {
        if ((out = merge.zero(inGuest))) yield out;
      } else if (allocWord === 0xffffffff) {
        if ((out = merge.data(host, inGuest))) yield out;
      } else {
        for (let s = 0; s < SUBCLUSTERS && s * subSize < inGuest; s++) {
          const length = Math.min(subSize, inGuest - s * subSize);
          out = bitOf(table, at + 12, s) ? merge.data(host + s * subSize, length) : merge.zero(length);
          if (out) yield out;
        }
      }
    }
  }
  if ((out = merge.flush())) yield out;
}
