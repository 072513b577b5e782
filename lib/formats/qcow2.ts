// qcow2 (versions 2 and 3) as a DiskImage. Everything structural is validated at open, before a
// single extent is yielded; only compressed data is checked later, as it is decompressed.
//
// Virtual sizes that are not a multiple of 512 are floored to 512, as qemu does: the partial last
// sector cannot be read through qemu either, and `qemu-img convert` output has the floored size.
import * as zlib from 'node:zlib';
import type { DataExtent, DiskImage, Extent, ExtentShape, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';
import { parseQcow2Header, type Qcow2Header } from './qcow2-header.ts';
import { qcow2Segments, validateQcow2Map, type Segment } from './qcow2-map.ts';
import { decompressBatch, decompressCluster, OWN_BUFFER_CLUSTER_SIZE } from './cluster-decompress.ts';
import {
  BATCHES_PER_WORKER,
  DECODE_HERE_FIRST,
  DecompressPool,
  defaultThreads,
  POOL_THRESHOLD,
  type BatchFailure,
  type DecodedBatch,
} from './decompress-pool.ts';
import { SlotArena } from './slot-arena.ts';
import { KeptBatches } from './kept-batches.ts';
import { PAGE_SIZE } from '../source/aligned-memory.ts';
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
/** Output of one compressed batch (at least one cluster). */
const BATCH_BYTES = 1 * MiB;
/** Segments decoded ahead of the consumer. */
const MAX_QUEUE = 64;

/** Where data runs are cut: the source's cheapest read size. */
function viewSizeOf(source: ImageSource): number {
  const { chunkSize } = source;
  return chunkSize !== undefined && chunkSize > 0 ? chunkSize : MAX_RUN;
}

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
  const threads = stats.compressedClusters === 0 && !options.progressive ? 0 : Math.max(0, Math.floor(wanted));
  const startAfter = options.threads === undefined ? DECODE_HERE_FIRST : 0;
  const compressedBatch = Math.max(1, Math.floor(BATCH_BYTES / header.clusterSize));
  const walk = (): Generator<Segment> =>
    qcow2Segments(source, header, {
      maxRun: MAX_RUN,
      viewSize: viewSizeOf(source),
      compressedBatch,
      emptyTables: stats.emptyTables,
    });
  // The workers' batches land in slots of this (kept ones too, until the writing pass writes them).
  const slotSize = Math.ceil((compressedBatch * header.clusterSize) / PAGE_SIZE) * PAGE_SIZE;
  // A progressive pass does not know how many clusters are compressed: at most every one of the disk.
  const compressedAtMost = options.progressive
    ? Math.ceil(header.virtualSize / header.clusterSize)
    : stats.compressedClusters;
  const kept = new KeptBatches(options.keepDecoded ?? 0, header.clusterSize, compressedAtMost, slotSize);
  const pool: PoolSettings = { lean: options.lean ?? false, arena: new SlotArena(slotSize) };
  const spare: SparePool = {};
  return {
    info,
    extents: () => decodeSegments(source, header, walk, threads, startAfter, keptOutput, kept, pool, spare),
    check: () => decodeSegments(source, header, walk, threads, startAfter, droppedOutput, kept, pool, spare),
    keptDecoded: () => kept.handOver(),
    adoptDecoded: (batches) => kept.adopt(batches),
  };
}

/**
 * The workers a finished dry pass leaves for the writing pass that follows it: starting a pool's
 * workers costs each its own isolate (~20-30 ms of CPU a worker on the bench machine).
 */
interface SparePool {
  pool?: DecompressPool;
}

type CompressedSegment = Extract<Segment, { kind: 'compressed' }>;
type PlainSegment = Exclude<Segment, CompressedSegment>;

/**
 * The stored bytes of a batch's clusters, and what of them was lent (to be recycled once they are
 * decompressed or copied). Clusters packed one after another in the file (what qemu-img writes;
 * each one's sector-rounded range overlaps the next) are read in one go: one pread for a file
 * source instead of one per cluster.
 */
function inputsOf(source: ImageSource, segment: CompressedSegment): { inputs: Buffer[]; lent?: Buffer } {
  const { clusters } = segment;
  const packed = packedSpan(segment);
  if (!packed) return { inputs: clusters.map((c) => source.read(c.hostOffset, c.length)) };
  const span = lendOrRead(source, packed.start, packed.end - packed.start);
  const inputs = clusters.map((cluster) =>
    span.subarray(cluster.hostOffset - packed.start, cluster.hostOffset - packed.start + cluster.length),
  );
  return { inputs, lent: span };
}

/** The file range a batch's clusters fill when they are packed one after another, else undefined. */
function packedSpan(segment: CompressedSegment): { start: number; end: number } | undefined {
  const { clusters } = segment;
  const start = clusters[0]!.hostOffset;
  let end = start;
  for (const cluster of clusters) {
    if (cluster.hostOffset < start || cluster.hostOffset > end) return undefined;
    end = Math.max(end, cluster.hostOffset + cluster.length);
  }
  return { start, end };
}

/**
 * Sends a batch to the pool: from the file itself when the source has one and the batch is packed
 * (the worker reads it; this thread touches no compressed byte), otherwise its bytes read (or
 * lent) here.
 */
function toPool(pool: DecompressPool, source: ImageSource, segment: CompressedSegment, keep: boolean) {
  const fd = source.descriptor;
  const span = fd === undefined ? undefined : packedSpan(segment);
  if (fd !== undefined && span) {
    const bounds = segment.clusters.flatMap((cluster) => [cluster.hostOffset - span.start, cluster.length]);
    return pool.decompressSpan({ fd }, span.start, span.end - span.start, bounds, keep);
  }
  const { inputs, lent } = inputsOf(source, segment);
  try {
    return pool.decompress(inputs, keep); // copies the inputs before it returns
  } finally {
    if (lent) source.recycle?.(lent);
  }
}

function refusal(header: Qcow2Header, segment: CompressedSegment, failure: BatchFailure): Error {
  const guest = segment.offset + failure.index * header.clusterSize;
  return qcow2BadCompressedCluster(guest, header.compression, header.clusterSize, failure.reason);
}

/**
 * Extents over a batch's decompressed pieces, in order, ending where the segment ends. The batch's
 * release goes with the last: a writer releases extents in order, once written.
 */
function decompressedExtents(segment: CompressedSegment, { pieces, release }: DecodedBatch): DataExtent[] {
  const extents: DataExtent[] = [];
  let offset = segment.offset;
  const end = segment.offset + segment.length;
  for (const piece of pieces) {
    const length = Math.min(piece.length, end - offset);
    if (length <= 0) break;
    extents.push({ offset, length, data: piece.subarray(0, length) });
    offset += length;
  }
  const last = extents.at(-1);
  if (last && release) extents[extents.length - 1] = { ...last, release };
  return extents;
}

/** Decompresses a batch on this thread: its clusters in one or more buffers. */
function decompressHere(source: ImageSource, header: Qcow2Header, segment: CompressedSegment): DecodedBatch {
  const { inputs, lent } = inputsOf(source, segment);
  let result: ReturnType<typeof decompressBatch>;
  try {
    result = decompressBatch(
      zlib,
      header.compression,
      inputs,
      header.clusterSize,
      true,
      decompressCluster,
      OWN_BUFFER_CLUSTER_SIZE,
    );
  } finally {
    if (lent) source.recycle?.(lent); // decompressed into buffers of their own, refused or failed
  }
  if (!Array.isArray(result)) throw refusal(header, segment, result);
  return { pieces: result };
}

/** What a pass makes of segments: extents with their bytes, or only their shapes. */
interface Output<T> {
  /** true: the writing pass (takes kept batches); false: the dry pass (keeps batches it is given room for). */
  readonly writing: boolean;
  plain(source: ImageSource, segment: PlainSegment): T;
  compressed(segment: CompressedSegment, batch: DecodedBatch): T[];
}

/** A plain segment's bytes, read when due; written, they go back to the source for the next read. */
function plainExtent(source: ImageSource, segment: PlainSegment): Extent {
  if (segment.kind === 'zero') return { offset: segment.offset, length: segment.length, zero: true };
  const data = lendOrRead(source, segment.host, segment.length);
  return { offset: segment.offset, length: segment.length, data, release: () => source.recycle?.(data) };
}

const keptOutput: Output<Extent> = {
  writing: true,
  plain: plainExtent,
  compressed: decompressedExtents,
};

const droppedOutput: Output<ExtentShape> = {
  writing: false,
  plain: (_source, segment) => ({ offset: segment.offset, length: segment.length, zero: segment.kind === 'zero' }),
  compressed: (segment) => [{ offset: segment.offset, length: segment.length, zero: false }],
};

/** The decompression pool of an image's passes: its arena (slots of a batch) and how lean it runs. */
interface PoolSettings {
  readonly lean: boolean;
  readonly arena: SlotArena;
}

async function* decodeSegments<T>(
  source: ImageSource,
  header: Qcow2Header,
  segments: () => Generator<Segment>,
  threads: number,
  startAfter: number,
  output: Output<T>,
  kept: KeptBatches,
  poolSettings: PoolSettings,
  spare: SparePool,
): AsyncGenerator<T> {
  const walk = segments();
  let decodedHere = 0;
  // A dry pass's workers, still there: this pass uses them from its first batch.
  // One whose worker died while it waited is of no use: the pass starts its own.
  const left = spare.pool?.usable ? spare.pool : undefined;
  if (spare.pool && !left) await spare.pool.close();
  spare.pool = undefined;
  while (!left && (threads === 0 || decodedHere < startAfter)) {
    const next = walk.next();
    if (next.done) return;
    const segment = next.value;
    if (segment.kind !== 'compressed') {
      yield output.plain(source, segment);
      continue;
    }
    const batch = (output.writing && kept.take(segment)) || decompressHere(source, header, segment);
    if (!output.writing && kept.wants(segment)) kept.put(segment, batch);
    decodedHere += segment.length;
    yield* output.compressed(segment, batch);
  }
  // Batches go to the workers ahead of the consumer; extents come out in guest order. Plain
  // segments and kept batches wait in the queue as they are: a file source reads a plain segment
  // only when it is due.
  // Started at the first batch to decompress: a writing pass given every batch starts none.
  let pool = left;
  pool?.resume();
  const started = (): DecompressPool =>
    (pool ??= new DecompressPool(header.compression, header.clusterSize, threads, poolSettings.arena, {
      lean: poolSettings.lean,
    }));
  let finished = false;
  try {
    const queue: (PlainSegment | { segment: CompressedSegment; batch: DecodedBatch } | Promise<T[]>)[] = [];
    let inFlight = 0;
    let walked = false;
    for (;;) {
      while (!walked && queue.length < MAX_QUEUE && inFlight < threads * BATCHES_PER_WORKER) {
        const next = walk.next();
        if (next.done) {
          walked = true;
          break;
        }
        const segment = next.value;
        if (segment.kind !== 'compressed') {
          queue.push(segment);
          continue;
        }
        const batch = output.writing ? kept.take(segment) : undefined;
        if (batch) {
          queue.push({ segment, batch });
          continue;
        }
        const keep = output.writing || kept.wants(segment);
        inFlight++;
        const decompressed = toPool(started(), source, segment, keep);
        const extent = decompressed.then((result) => {
          if ('index' in result) throw refusal(header, segment, result);
          if (!output.writing && keep) kept.put(segment, result);
          return output.compressed(segment, result);
        });
        extent.catch(() => {}); // rejections are rethrown where the extent is awaited, in order
        queue.push(extent);
      }
      const head = queue.shift();
      if (head === undefined) {
        finished = true;
        return;
      }
      if (head instanceof Promise) {
        inFlight--;
        yield* await head;
      } else if ('batch' in head) {
        yield* output.compressed(head.segment, head.batch);
      } else {
        yield output.plain(source, head);
      }
    }
  } finally {
    // A dry pass that ran to its end leaves its workers for the writing pass; any other ends them.
    if (finished && !output.writing && pool?.usable && !spare.pool) {
      pool.idle();
      spare.pool = pool;
    } else {
      await pool?.close();
    }
  }
}
