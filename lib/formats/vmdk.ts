// A VMDK hosted sparse extent as a DiskImage: monolithicSparse (grains stored as they are) and
// streamOptimized (deflate grains behind markers, as OVAs carry them). Grains are found through
// the grain directory and tables, as qemu reads them: a stream whose directory is at its end is
// read through its footer (lib/formats/vmdk-map.ts). Every table, marker and grain is checked
// against the file when the image is opened; only the deflate data is checked later, as it is
// inflated: on worker threads (the qcow2 decoder's pool) once a pass has inflated DECODE_HERE_FIRST
// bytes here, in batches of consecutive whole grains, while this thread hands on extents in order.
// As qcow2's, a dry pass may keep batches for the writing pass, and leaves it its workers.
import * as zlib from 'node:zlib';
import { vmdkBad } from '../errors.ts';
import { parseVmdkHeader, SECTOR, type VmdkHeader } from './vmdk-header.ts';
import { grainSegments, hex, type Segment, type Stats } from './vmdk-map.ts';
import { decompressCluster } from './cluster-decompress.ts';
import {
  BATCHES_PER_WORKER,
  DECODE_HERE_FIRST,
  DecompressPool,
  defaultThreads,
  POOL_THRESHOLD,
  type DecodedBatch,
} from './decompress-pool.ts';
import { SlotArena } from './slot-arena.ts';
import { KeptBatches } from './kept-batches.ts';
import { PAGE_SIZE } from '../source/aligned-memory.ts';
import type { DiskImage, Extent, ExtentShape, ImageInfo } from './types.ts';
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

/** Inflated bytes of one batch sent to a worker (at least one grain). */
const BATCH_BYTES = 1024 * 1024;
/** Segments and batches decoded ahead of the consumer. */
const MAX_QUEUE = 64;
/**
 * Bytes between two grains that still make one read of a batch: a grain's data ends inside a
 * sector, and the next grain's marker (12 bytes) follows at the next sector.
 */
const MAX_GAP = 2 * SECTOR;

type CompressedSegment = Extract<Segment, { kind: 'compressed' }>;

/** Consecutive whole grains, inflated by one worker. */
interface GrainBatch {
  readonly kind: 'batch';
  readonly offset: number;
  length: number;
  /** The grains, in guest order (clusters, as KeptBatches counts them). */
  readonly clusters: CompressedSegment[];
}

/** What a pass makes of the image: extents with their bytes, or only their shapes (a dry pass). */
interface Output<T> {
  /** true: the writing pass (takes kept batches); false: the dry pass (keeps those it has room for). */
  readonly writing: boolean;
  segment(source: ImageSource, header: VmdkHeader, segment: Segment): T;
  batch(batch: GrainBatch, decoded: DecodedBatch): T;
}

const extentsOutput: Output<Extent> = {
  writing: true,
  segment: segmentExtent,
  batch: (batch, { pieces, release }) => ({
    offset: batch.offset,
    length: batch.length,
    data: pieces[0]!.subarray(0, batch.length),
    ...(release && { release }),
  }),
};

const shapesOutput: Output<ExtentShape> = {
  writing: false,
  segment: (source, header, segment) => {
    if (segment.kind === 'compressed') freeGrain(header, inflateGrain(source, header, segment));
    return { offset: segment.offset, length: segment.length, zero: segment.kind === 'zero' };
  },
  batch: (batch) => ({ offset: batch.offset, length: batch.length, zero: false }),
};

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
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / grainBytes));
  const slotSize = Math.ceil((perBatch * grainBytes) / PAGE_SIZE) * PAGE_SIZE;
  const pass: PassSettings = {
    threads: stats.compressedGrains === 0 ? 0 : Math.max(0, Math.floor(wanted)),
    startAfter: options.threads === undefined ? DECODE_HERE_FIRST : 0,
    lean: options.lean ?? false,
    perBatch,
    arena: new SlotArena(slotSize),
    kept: new KeptBatches(options.keepDecoded ?? 0, grainBytes, stats.compressedGrains, slotSize),
    spare: {},
  };
  return {
    info,
    extents: () => decodeGrains(source, header, pass, extentsOutput),
    check: () => decodeGrains(source, header, pass, shapesOutput),
  };
}

/** An image's passes: how they inflate, and what they share (slots, kept batches, workers). */
interface PassSettings {
  readonly threads: number;
  /** Bytes inflated here before the workers start. */
  readonly startAfter: number;
  readonly lean: boolean;
  /** Grains in a batch, at most. */
  readonly perBatch: number;
  /** Where the workers put batches (kept ones too, until the writing pass writes them). */
  readonly arena: SlotArena;
  readonly kept: KeptBatches;
  /** A finished dry pass's workers, for the writing pass that follows it (each is an isolate to start). */
  readonly spare: { pool?: DecompressPool };
}

async function* decodeGrains<T>(
  source: ImageSource,
  header: VmdkHeader,
  pass: PassSettings,
  output: Output<T>,
): AsyncGenerator<T> {
  const grainBytes = header.grainSize * SECTOR;
  // Batches start at the same grains in every pass, so that the writing pass finds the kept ones.
  const items = batched(grainSegments(source, header), grainBytes, pass.perBatch);
  // A dry pass's workers, still there: this pass uses them from its first batch.
  const left = pass.spare.pool?.usable ? pass.spare.pool : undefined;
  if (pass.spare.pool && !left) await pass.spare.pool.close();
  pass.spare.pool = undefined;
  let inflatedHere = 0;
  while (!left && (pass.threads === 0 || inflatedHere < pass.startAfter)) {
    const next = items.next();
    if (next.done) return;
    const item = next.value;
    if (item.kind === 'compressed' || item.kind === 'batch') inflatedHere += item.length;
    if (item.kind !== 'batch') {
      yield output.segment(source, header, item);
      continue;
    }
    // A batch another dry pass kept (one that began with its workers) is written as it is.
    const kept = output.writing ? pass.kept.take(item) : undefined;
    if (kept) yield output.batch(item, kept);
    else for (const grain of item.clusters) yield output.segment(source, header, grain);
  }
  let pool = left;
  pool?.resume();
  const started = (): DecompressPool =>
    (pool ??= new DecompressPool('deflate', grainBytes, pass.threads, pass.arena, { lean: pass.lean }));
  let finished = false;
  try {
    // Segments wait in the queue as they are (a stored grain is read when due); batches as the
    // worker's promise, or as kept. Extents come out in guest order.
    const queue: ({ segment: Segment } | { kept: T } | Promise<T>)[] = [];
    let inFlight = 0;
    const due = async (head: { segment: Segment } | { kept: T } | Promise<T>): Promise<T> => {
      if (head instanceof Promise) {
        inFlight--;
        return await head;
      }
      return 'kept' in head ? head.kept : output.segment(source, header, head.segment);
    };
    for (const item of items) {
      if (item.kind !== 'batch') queue.push({ segment: item });
      else {
        const kept = output.writing ? pass.kept.take(item) : undefined;
        if (kept) queue.push({ kept: output.batch(item, kept) });
        else {
          const keep = output.writing || pass.kept.wants(item);
          inFlight++;
          const decoded = toPool(started(), source, item, keep).then((result) => {
            if ('index' in result)
              throw grainRefusal(item.offset + result.index * grainBytes, grainBytes, result.reason);
            if (!output.writing && keep) pass.kept.put(item, result);
            return output.batch(item, result);
          });
          decoded.catch(() => {}); // a rejection is rethrown where the batch is awaited, in order
          queue.push(decoded);
        }
      }
      while (queue.length >= MAX_QUEUE || inFlight >= pass.threads * BATCHES_PER_WORKER)
        yield await due(queue.shift()!);
    }
    while (queue.length > 0) yield await due(queue.shift()!);
    finished = true;
  } finally {
    // A dry pass that ran to its end leaves its workers for the writing pass; any other ends them.
    if (finished && !output.writing && pool?.usable && !pass.spare.pool) {
      pool.idle();
      pass.spare.pool = pool;
    } else await pool?.close();
  }
}

/** The walk's whole compressed grains gathered into batches; every other segment as it is. */
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

/**
 * The file range a batch's grains fill, one after another with at most MAX_GAP bytes between them
 * (as streams lay them out), else undefined.
 */
function spanOf(batch: GrainBatch): { start: number; end: number } | undefined {
  const start = batch.clusters[0]!.host;
  let end = start;
  for (const { host, size } of batch.clusters) {
    if (host < end || host - end > MAX_GAP) return undefined;
    end = host + size;
  }
  return { start, end };
}

/**
 * Sends a batch to the pool: read by the worker itself from the file when the source has one and
 * the grains lie together; otherwise read (or lent) here, in one read where they lie together.
 */
function toPool(pool: DecompressPool, source: ImageSource, batch: GrainBatch, keep: boolean) {
  const span = spanOf(batch);
  const fd = source.descriptor;
  if (span && fd !== undefined) {
    const bounds = batch.clusters.flatMap(({ host, size }) => [host - span.start, size]);
    return pool.decompressSpan({ fd }, span.start, span.end - span.start, bounds, keep);
  }
  if (!span)
    return pool.decompress(
      batch.clusters.map(({ host, size }) => source.read(host, size)),
      keep,
    );
  const bytes = lendOrRead(source, span.start, span.end - span.start);
  try {
    const inputs = batch.clusters.map(({ host, size }) => bytes.subarray(host - span.start, host - span.start + size));
    return pool.decompress(inputs, keep); // copies the inputs before it returns
  } finally {
    source.recycle?.(bytes);
  }
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

/**
 * Frees a grain's memory now, not when the garbage collector gets to it: malloc then hands the same
 * memory to the next grain, where fresh memory would cost a page fault every 4 KiB. Only the very
 * chunk zlib allocated for a whole grain (decompressCluster's chunk: a grain and 64 bytes), and
 * only one larger than Buffer's pool, so never a slice of it (a grain of a few sectors is, and
 * freeing the pool would empty every buffer in it).
 */
function freeGrain(h: VmdkHeader, grain: Buffer): void {
  const chunk = h.grainSize * SECTOR + 64;
  if (chunk > Buffer.poolSize && grain.buffer.byteLength === chunk) (grain.buffer as ArrayBuffer).transfer(0);
}

/** A segment's extent on this thread: zeros, stored grains read when due, or a grain inflated here. */
function segmentExtent(source: ImageSource, header: VmdkHeader, segment: Segment): Extent {
  const { offset, length } = segment;
  if (segment.kind === 'zero') return { offset, length, zero: true };
  if (segment.kind === 'compressed') {
    const data = inflateGrain(source, header, segment);
    return { offset, length, data, release: () => freeGrain(header, data) };
  }
  const data = lendOrRead(source, segment.host, length);
  return { offset, length, data, release: () => source.recycle?.(data) };
}
