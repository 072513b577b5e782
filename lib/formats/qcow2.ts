// qcow2 (versions 2 and 3) as a DiskImage. Everything structural is validated at open, before a
// single extent is yielded; only compressed data is checked later, as it is decompressed.
//
// Virtual sizes that are not a multiple of 512 are floored to 512, as qemu does: the partial last
// sector cannot be read through qemu either, and `qemu-img convert` output has the floored size.
import type { DiskImage, Extent, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';
import { parseQcow2Header } from './qcow2-header.ts';
import { qcow2Segments, validateQcow2Map, type Segment } from './qcow2-map.ts';
import { DECODE_HERE_FIRST, defaultThreads, POOL_THRESHOLD } from './decompress-pool.ts';
import { BatchDecoder, clustersPerBatch, type BatchFormat } from './batch-decoder.ts';
import { qcow2BadCompressedCluster } from '../errors.ts';

export interface Qcow2Options {
  /**
   * Worker threads for compressed clusters: 0 decompresses on the calling thread. Default: one per
   * core up to 4 (qemu's cap) when there is more than one core and enough compressed clusters to
   * repay starting them, else 0. A number given starts that many from a pass's first compressed
   * batch; the default starts them only after DECODE_HERE_FIRST.
   */
  readonly threads?: number;
  /**
   * Bytes of decompressed clusters the dry pass (`check()`) may keep for the next `extents()`, which
   * then does not decompress them again; a kept batch counts as the memory it holds, a full batch's.
   * Batches are kept evenly across the image, so that while the writer writes a kept batch the
   * workers decompress the next ones. Default 0: keep nothing.
   */
  readonly keepDecoded?: number;
  /** Decompress with less memory at some CPU (DecompressPool's `lean`). */
  readonly lean?: boolean;
  /**
   * Skip the up-front walk of every L2 table (validation, statistics): decoding reads each table
   * when it reaches it, so it can follow an image whose tables are still arriving (the last one of
   * a GPT disk is written near the file's end). Only for a dry pass whose verdict stands only if a
   * validated open of the same bytes agrees (lib/formats/early-check.ts): a malformed table then makes the
   * pass throw, not refuse properly. `info` then has no allocated bytes nor compressed clusters.
   */
  readonly progressive?: boolean;
}

const MiB = 1024 * 1024;
/** Longest data extent, and the view size assumed for sources that do not say. */
const MAX_RUN = 16 * MiB;

/** Where data runs are cut: the source's cheapest read size. */
function viewSizeOf(source: ImageSource): number {
  const { chunkSize } = source;
  return chunkSize !== undefined && chunkSize > 0 ? chunkSize : MAX_RUN;
}

type CompressedSegment = Extract<Segment, { kind: 'compressed' }>;

export function openQcow2(source: ImageSource, options: Qcow2Options = {}): DiskImage {
  const header = parseQcow2Header(source);
  const stats = options.progressive
    ? { allocatedBytes: 0, compressedClusters: 0, emptyTables: new Set<number>() }
    : validateQcow2Map(source, header);
  const info: ImageInfo = {
    format: 'qcow2',
    virtualSize: header.virtualSize,
    fileSize: source.size,
    allocatedBytes: stats.allocatedBytes,
    clusterSize: header.clusterSize,
    ...(stats.compressedClusters > 0 ? { compression: header.compression } : {}),
    features: {
      version: header.version,
      compressionType: header.compression,
      compressedClusters: stats.compressedClusters,
      extendedL2: header.extendedL2,
      dirty: header.dirty,
      lazyRefcounts: header.lazyRefcounts,
      refcountBits: header.refcountBits,
      snapshots: header.snapshots,
      ...(header.storedSize !== header.virtualSize ? { storedVirtualSize: header.storedSize } : {}),
    },
  };
  const wanted = options.threads ?? (stats.compressedClusters >= POOL_THRESHOLD ? defaultThreads() : 0);
  const format: BatchFormat<Segment, CompressedSegment> = {
    codec: header.compression,
    clusterSize: header.clusterSize,
    walk: () =>
      qcow2Segments(source, header, {
        maxRun: MAX_RUN,
        viewSize: viewSizeOf(source),
        compressedBatch: clustersPerBatch(header.clusterSize),
        emptyTables: stats.emptyTables,
      }),
    isBatch: (segment) => segment.kind === 'compressed',
    extent: (segment) => plainExtent(source, segment),
    shape: ({ offset, length, kind }) => ({ offset, length, zero: kind === 'zero' }),
    refusal: (guest, reason) => qcow2BadCompressedCluster(guest, header.compression, header.clusterSize, reason),
  };
  const decoder = new BatchDecoder(source, format, {
    threads: stats.compressedClusters === 0 && !options.progressive ? 0 : Math.max(0, Math.floor(wanted)),
    startAfter: options.threads === undefined ? DECODE_HERE_FIRST : 0,
    lean: options.lean ?? false,
    keepDecoded: options.keepDecoded ?? 0,
    // A progressive pass does not know how many clusters are compressed: at most every one of the disk.
    compressedClusters: options.progressive
      ? Math.ceil(header.virtualSize / header.clusterSize)
      : stats.compressedClusters,
  });
  return {
    info,
    extents: () => decoder.extents(),
    check: () => decoder.check(),
    keptDecoded: () => decoder.kept.handOver(),
    adoptDecoded: (batches) => decoder.kept.adopt(batches),
  };
}

/** A zero or data segment's extent: data read when due; written, it goes back to the source for the next read. */
function plainExtent(source: ImageSource, segment: Exclude<Segment, CompressedSegment>): Extent {
  if (segment.kind === 'zero') return { offset: segment.offset, length: segment.length, zero: true };
  const data = lendOrRead(source, segment.host, segment.length);
  return { offset: segment.offset, length: segment.length, data, release: () => source.recycle?.(data) };
}
