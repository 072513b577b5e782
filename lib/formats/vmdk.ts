// A VMDK hosted sparse extent as a DiskImage: monolithicSparse (grains stored as they are) and
// streamOptimized (deflate grains behind markers, as OVAs carry them). Grains are found through
// the grain directory and tables, as qemu reads them: a stream whose directory is at its end is
// read through its footer (lib/formats/vmdk-map.ts). Every table, marker and grain is checked
// against the file when the image is opened; only the deflate data is checked later, as it is
// inflated, in batches of consecutive whole grains, by the decoder qcow2's compressed clusters go
// through (lib/formats/batch-decoder.ts: worker threads once a pass has inflated DECODE_HERE_FIRST
// bytes here, extents in guest order, batches a dry pass keeps for the writing pass).
import * as zlib from 'node:zlib';
import { vmdkBad } from '../errors.ts';
import { parseVmdkHeader, SECTOR, type VmdkHeader } from './vmdk-header.ts';
import { grainSegments, hex, type Segment, type Stats } from './vmdk-map.ts';
import { decompressCluster } from './cluster-decompress.ts';
import { DECODE_HERE_FIRST, defaultThreads, POOL_THRESHOLD } from './decompress-pool.ts';
import { BatchDecoder, clustersPerBatch, freeDecoded, type BatchFormat } from './batch-decoder.ts';
import type { DiskImage, Extent, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';

export interface VmdkOptions {
  /**
   * Worker threads that inflate grains: 0 inflates them on the calling thread. Default: as qcow2's
   * (one per core up to 4, where there are enough compressed grains), started after
   * DECODE_HERE_FIRST; a number given starts that many at a pass's first batch.
   */
  readonly threads?: number;
  /** Inflate with less memory at some CPU (DecompressPool's `lean`). */
  readonly lean?: boolean;
  /** Bytes of inflated grains the dry pass (`check()`) may keep for the next `extents()` (qcow2's `keepDecoded`). */
  readonly keepDecoded?: number;
}

type CompressedSegment = Extract<Segment, { kind: 'compressed' }>;

/** Consecutive whole grains, decoded as one batch. */
interface GrainBatch {
  readonly kind: 'batch';
  readonly offset: number;
  length: number;
  /** The grains, in guest order. */
  readonly clusters: CompressedSegment[];
}

export function openVmdk(source: ImageSource, options: VmdkOptions = {}): DiskImage {
  const header = parseVmdkHeader(source);
  const stats: Stats = { allocatedBytes: 0, compressedGrains: 0 };
  // Every table and marker is walked now, so that a refusal comes before the first extent.
  for (const _segment of grainSegments(source, header, stats));
  const info: ImageInfo = {
    format: 'vmdk',
    virtualSize: header.capacity * SECTOR,
    fileSize: source.size,
    allocatedBytes: stats.allocatedBytes,
    clusterSize: header.grainSize * SECTOR,
    ...(header.compressed && { compression: 'zlib' as const }),
    features: { createType: header.createType, version: header.version, compressedGrains: stats.compressedGrains },
  };
  const wanted = options.threads ?? (stats.compressedGrains >= POOL_THRESHOLD ? defaultThreads() : 0);
  const grainBytes = header.grainSize * SECTOR;
  const format: BatchFormat<Segment | GrainBatch, GrainBatch> = {
    codec: 'deflate',
    clusterSize: grainBytes,
    walk: () => batched(grainSegments(source, header), grainBytes, clustersPerBatch(grainBytes)),
    isBatch: (item) => item.kind === 'batch',
    extent: (segment) => segmentExtent(source, header, segment),
    shape: (segment) => {
      if (segment.kind === 'compressed') freeDecoded(inflateGrain(source, header, segment));
      return { offset: segment.offset, length: segment.length, zero: segment.kind === 'zero' };
    },
    refusal: (guest, reason) => grainRefusal(guest, grainBytes, reason),
  };
  const decoder = new BatchDecoder(source, format, {
    threads: stats.compressedGrains === 0 ? 0 : Math.max(0, Math.floor(wanted)),
    startAfter: options.threads === undefined ? DECODE_HERE_FIRST : 0,
    lean: options.lean ?? false,
    keepDecoded: options.keepDecoded ?? 0,
    compressedClusters: stats.compressedGrains,
  });
  return { info, extents: () => decoder.extents(), check: () => decoder.check() };
}

/**
 * The walk's whole compressed grains gathered into batches; every other segment as it is. Batches
 * start at the same grains in every pass, so that the writing pass finds the kept ones.
 */
function* batched(walk: Iterable<Segment>, grainBytes: number, perBatch: number): Generator<Segment | GrainBatch> {
  let batch: GrainBatch | undefined;
  for (const segment of walk) {
    if (segment.kind === 'compressed' && segment.length === grainBytes) {
      if (batch && batch.clusters.length < perBatch && batch.offset + batch.length === segment.offset) {
        batch.clusters.push(segment);
        batch.length += segment.length;
        continue;
      }
      if (batch) yield batch;
      batch = {
        kind: 'batch',
        offset: segment.offset,
        length: segment.length,
        clusters: [segment],
      };
      continue;
    }
    if (batch) yield batch;
    batch = undefined;
    yield segment;
  }
  if (batch) yield batch;
}

function grainRefusal(offset: number, grainBytes: number, reason: string): Error {
  return vmdkBad(
    `the deflate data of guest offset ${hex(offset)} does not inflate to one grain (${grainBytes} bytes): ${reason}`,
  );
}

/**
 * A grain inflated here. The last grain of a capacity that is not a multiple of the grain size may
 * inflate to a whole grain or to what is left of the capacity (qemu writes the latter).
 */
function inflateGrain(source: ImageSource, h: VmdkHeader, segment: CompressedSegment): Buffer {
  const grainBytes = h.grainSize * SECTOR;
  const input = source.read(segment.host, segment.size);
  const partial = segment.length < grainBytes ? decompressCluster(zlib, 'deflate', input, segment.length) : undefined;
  if (partial instanceof Buffer) return partial;
  const grain = decompressCluster(zlib, 'deflate', input, grainBytes);
  if (typeof grain === 'string') throw grainRefusal(segment.offset, grainBytes, grain);
  return grain.subarray(0, segment.length);
}

/** A segment's extent on this thread: zeros, stored grains read when due, or a grain inflated here. */
function segmentExtent(source: ImageSource, header: VmdkHeader, segment: Segment): Extent {
  const { offset, length } = segment;
  if (segment.kind === 'zero') return { offset, length, zero: true };
  if (segment.kind === 'compressed') {
    const data = inflateGrain(source, header, segment);
    return { offset, length, data, release: () => freeDecoded(data) };
  }
  const data = lendOrRead(source, segment.host, length);
  return { offset, length, data, release: () => source.recycle?.(data) };
}
