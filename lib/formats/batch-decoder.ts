// The passes over an image whose data is compressed cluster by cluster (qcow2's compressed clusters,
// a VMDK's grains), shared by both decoders. The format walks its map into items in guest order,
// consecutive compressed clusters gathered into batches, cut alike in every walk; this decodes the
// batches (the first DECODE_HERE_FIRST bytes on this thread, the rest on the decompression pool's
// workers, ahead of the consumer) and hands on extents in guest order. A dry pass (`check()`) may
// keep batches for the writing pass (`extents()`), and leaves it its workers.
import * as zlib from 'node:zlib';
import type { DataExtent, Extent, ExtentShape } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';
import {
  decompressBatch,
  decompressCluster,
  OWN_BUFFER_CLUSTER_SIZE,
  type ClusterDecoders,
  type Codec,
} from './cluster-decompress.ts';
import { nativeModule } from '../system/native-module.ts';
import { BATCHES_PER_WORKER, DecompressPool, type BatchFailure, type DecodedBatch } from './decompress-pool.ts';
import { SlotArena } from './slot-arena.ts';
import { KeptBatches } from './kept-batches.ts';
import { PAGE_SIZE } from '../source/aligned-memory.ts';

/** Decompressed bytes of one batch (at least one cluster). */
const BATCH_BYTES = 1024 * 1024;
/** Items decoded ahead of the consumer. */
const MAX_QUEUE = 64;
/**
 * Bytes between two stored clusters that still make one read of a batch. qemu-img packs qcow2's
 * one after another (each one's sector-rounded range overlaps the next); a VMDK stream puts the
 * next grain's 12-byte marker at the sector after a grain's data.
 */
const MAX_GAP = 1024;

/** Where a compressed cluster's bytes are stored in the image file. */
export interface StoredCluster {
  readonly host: number;
  readonly size: number;
}

/** Consecutive compressed clusters, decoded together; `length` may end inside the last one. */
export interface ClusterBatch {
  readonly offset: number;
  readonly length: number;
  readonly clusters: readonly StoredCluster[];
}

/** How many clusters of `clusterSize` bytes a batch holds at most. */
export function clustersPerBatch(clusterSize: number): number {
  return Math.max(1, Math.floor(BATCH_BYTES / clusterSize));
}

/** An item that is not a batch. */
type Single<Item, Batch> = Exclude<Item, Batch>;

/** What a format tells the decoder of its image. */
export interface BatchFormat<Item, Batch extends Item & ClusterBatch> {
  readonly codec: Codec;
  readonly clusterSize: number;
  /** A new walk of the map: items in guest order, batches cut alike in every walk. */
  walk(): Iterator<Item>;
  isBatch(item: Item): item is Batch;
  /** Any other item's extent, its bytes read (or decoded) when it is due. */
  extent(item: Single<Item, Batch>): Extent;
  /** Any other item's shape, for a dry pass: checked as its extent would be, its bytes not kept. */
  shape(item: Single<Item, Batch>): ExtentShape;
  /** Why the compressed cluster at guest offset `guest` is refused. */
  refusal(guest: number, reason: string): Error;
}

export interface BatchDecoderOptions {
  /** Worker threads; 0 decodes every batch on the calling thread. */
  readonly threads: number;
  /** Bytes a pass decodes on the calling thread before it starts the workers. */
  readonly startAfter: number;
  /** Decompress with less memory at some CPU (DecompressPool's `lean`). */
  readonly lean: boolean;
  /** Bytes of decoded batches the dry pass may keep for the writing pass (KeptBatches' budget). */
  readonly keepDecoded: number;
  /** How many compressed clusters the image has, or at most. */
  readonly compressedClusters: number;
}

/** What a pass makes of items: extents with their bytes, or only their shapes. */
interface Output<Item, Batch, T> {
  /** true: the writing pass (takes kept batches); false: the dry pass (keeps those it has room for). */
  readonly writing: boolean;
  single(item: Single<Item, Batch>): T;
  batch(batch: Batch, decoded: DecodedBatch): T[];
}

export class BatchDecoder<Item, Batch extends Item & ClusterBatch> {
  /** The batches a dry pass kept, for the next writing pass (or another thread's: handOver). */
  readonly kept: KeptBatches;
  private readonly source: ImageSource;
  private readonly format: BatchFormat<Item, Batch>;
  private readonly options: BatchDecoderOptions;
  /** Where the workers put batches (kept ones too, until the writing pass writes them). */
  private readonly arena: SlotArena;
  /** A finished dry pass's workers, for the writing pass that follows it (each is an isolate to start). */
  private spare: DecompressPool | undefined;
  private readonly writingOutput: Output<Item, Batch, Extent>;
  private readonly dryOutput: Output<Item, Batch, ExtentShape>;

  constructor(source: ImageSource, format: BatchFormat<Item, Batch>, options: BatchDecoderOptions) {
    this.source = source;
    this.format = format;
    this.options = options;
    const slotSize = Math.ceil((clustersPerBatch(format.clusterSize) * format.clusterSize) / PAGE_SIZE) * PAGE_SIZE;
    this.arena = new SlotArena(slotSize);
    this.kept = new KeptBatches(options.keepDecoded, format.clusterSize, options.compressedClusters, slotSize);
    this.writingOutput = { writing: true, single: (item) => format.extent(item), batch: decodedExtents };
    this.dryOutput = {
      writing: false,
      single: (item) => format.shape(item),
      batch: ({ offset, length }) => [{ offset, length, zero: false }],
    };
  }

  extents(): AsyncGenerator<Extent> {
    return this.pass(this.writingOutput);
  }

  check(): AsyncGenerator<ExtentShape> {
    return this.pass(this.dryOutput);
  }

  private async *pass<T>(output: Output<Item, Batch, T>): AsyncGenerator<T> {
    const { format, kept } = this;
    const { threads, startAfter } = this.options;
    const walk = format.walk();
    // A dry pass's workers, still there: this pass uses them from its first batch.
    // One whose worker died while it waited is of no use: the pass starts its own.
    const left = this.spare?.usable ? this.spare : undefined;
    if (this.spare && !left) await this.spare.close();
    this.spare = undefined;
    let decodedHere = 0;
    while (!left && (threads === 0 || decodedHere < startAfter)) {
      const next = walk.next();
      if (next.done) return;
      const item = next.value;
      if (!format.isBatch(item)) {
        yield output.single(item as Single<Item, Batch>); // TypeScript does not narrow a type parameter
        continue;
      }
      let decoded = output.writing ? kept.take(item) : undefined;
      if (!decoded) {
        const keep = output.writing || kept.wants(item);
        decoded = this.decodeHere(item, keep);
        if (!output.writing && keep) kept.put(item, decoded);
        decodedHere += item.length;
      }
      yield* output.batch(item, decoded);
    }
    // Batches go to the workers ahead of the consumer; extents come out in guest order. Other items
    // and kept batches wait in the queue as they are: a file source reads a stored run only when due.
    // Started at the first batch to decompress: a writing pass given every batch starts none.
    let pool = left;
    pool?.resume();
    const started = (): DecompressPool =>
      (pool ??= new DecompressPool(format.codec, format.clusterSize, threads, this.arena, {
        lean: this.options.lean,
      }));
    let finished = false;
    try {
      const queue: (Promise<T[]> | (() => T[]))[] = [];
      let inFlight = 0;
      const due = async (head: Promise<T[]> | (() => T[])): Promise<T[]> => {
        if (typeof head === 'function') return head();
        inFlight--;
        return await head;
      };
      for (let next = walk.next(); !next.done; next = walk.next()) {
        const item = next.value;
        const decoded = format.isBatch(item) && output.writing ? kept.take(item) : undefined;
        if (!format.isBatch(item)) queue.push(() => [output.single(item as Single<Item, Batch>)]);
        else if (decoded) queue.push(() => output.batch(item, decoded));
        else {
          const keep = output.writing || kept.wants(item);
          inFlight++;
          const extents = this.toPool(started(), item, keep).then((result) => {
            if ('index' in result) throw this.refusal(item, result);
            if (!output.writing && keep) kept.put(item, result);
            return output.batch(item, result);
          });
          extents.catch(() => {}); // a rejection is rethrown where the batch is awaited, in order
          queue.push(extents);
        }
        while (queue.length >= MAX_QUEUE || inFlight >= threads * BATCHES_PER_WORKER) yield* await due(queue.shift()!);
      }
      while (queue.length > 0) yield* await due(queue.shift()!);
      finished = true;
    } finally {
      // A dry pass that ran to its end leaves its workers for the writing pass; any other ends them.
      if (finished && !output.writing && pool?.usable && !this.spare) {
        pool.idle();
        this.spare = pool;
      } else await pool?.close();
    }
  }

  private refusal(batch: Batch, failure: BatchFailure): Error {
    return this.format.refusal(batch.offset + failure.index * this.format.clusterSize, failure.reason);
  }

  /**
   * A batch decompressed on this thread: with `keep`, its clusters (in buffers of their own, or in
   * one for the batch, freed once written); without, checked and dropped.
   */
  private decodeHere(batch: Batch, keep: boolean): DecodedBatch {
    const { inputs, lent } = this.inputsOf(batch);
    let result: ReturnType<typeof decompressBatch>;
    try {
      const { codec, clusterSize } = this.format;
      result = decodedHere(codec, inputs, clusterSize, keep);
    } finally {
      if (lent) this.source.recycle?.(lent); // decompressed into buffers of their own, refused or failed
    }
    if (!Array.isArray(result)) throw this.refusal(batch, result);
    const pieces = result;
    return { pieces, release: () => pieces.forEach(freeDecoded) };
  }

  /**
   * The stored bytes of a batch's clusters, and what of them was lent (to be recycled once they are
   * decompressed or copied): in one read where they lie together.
   */
  private inputsOf(batch: Batch): { inputs: Buffer[]; lent?: Buffer } {
    const { source } = this;
    const span = spanOf(batch);
    if (!span) return { inputs: batch.clusters.map(({ host, size }) => source.read(host, size)) };
    const bytes = lendOrRead(source, span.start, span.end - span.start);
    const inputs = batch.clusters.map(({ host, size }) => bytes.subarray(host - span.start, host - span.start + size));
    return { inputs, lent: bytes };
  }

  /**
   * Sends a batch to the pool: read by the worker itself from the file when the source has one and
   * the clusters lie together (this thread touches no compressed byte); otherwise read (or lent) here.
   */
  private toPool(pool: DecompressPool, batch: Batch, keep: boolean): Promise<DecodedBatch | BatchFailure> {
    const fd = this.source.descriptor;
    const span = fd === undefined ? undefined : spanOf(batch);
    if (fd !== undefined && span) {
      const bounds = batch.clusters.flatMap(({ host, size }) => [host - span.start, size]);
      return pool.decompressSpan({ fd }, span.start, span.end - span.start, bounds, keep);
    }
    const { inputs, lent } = this.inputsOf(batch);
    try {
      return pool.decompress(inputs, keep); // copies the inputs before it returns
    } finally {
      if (lent) this.source.recycle?.(lent);
    }
  }
}

/** decompressBatch on this thread, by the native cluster decoders where they load. */
function decodedHere(
  codec: Codec,
  inputs: readonly Uint8Array[],
  clusterSize: number,
  keep: boolean,
): ReturnType<typeof decompressBatch> {
  const native = nativeModule<ClusterDecoders>('cluster-decoders');
  return decompressBatch(
    zlib,
    codec,
    inputs,
    clusterSize,
    keep,
    decompressCluster,
    OWN_BUFFER_CLUSTER_SIZE,
    undefined,
    native,
  );
}

/** One compressed cluster decoded on this thread, into a buffer of its own: the bytes, or why they are not one cluster. */
export function decodeClusterHere(codec: Codec, input: Uint8Array, clusterSize: number): Buffer | string {
  const result = decodedHere(codec, [input], clusterSize, true);
  return Array.isArray(result) ? result[0]! : result.reason;
}

/**
 * The file range a batch's clusters fill, each starting within MAX_GAP bytes of where the ones
 * before it end (overlapping them, even), else undefined.
 */
function spanOf({ clusters }: ClusterBatch): { start: number; end: number } | undefined {
  const start = clusters[0]!.host;
  let end = start;
  for (const { host, size } of clusters) {
    if (host < start || host > end + MAX_GAP) return undefined;
    end = Math.max(end, host + size);
  }
  return { start, end };
}

/**
 * Extents over a batch's decompressed pieces, in order, ending where the batch ends. The batch's
 * release goes with the last: a writer releases extents in order, once written.
 */
function decodedExtents(batch: ClusterBatch, { pieces, release }: DecodedBatch): DataExtent[] {
  const extents: DataExtent[] = [];
  let offset = batch.offset;
  const end = batch.offset + batch.length;
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

/**
 * Frees decompressed bytes now, not when the garbage collector gets to them: malloc then hands the
 * same memory to the next cluster, where fresh memory would cost a page fault every 4 KiB. Only a
 * buffer that is the piece's alone: larger than Buffer's pool (which small buffers share) and no
 * larger than the piece and zlib's or zstd's spare 64 bytes (decompressCluster's chunk).
 */
export function freeDecoded(piece: Buffer): void {
  const { buffer } = piece;
  if (!(buffer instanceof ArrayBuffer) || buffer.detached) return;
  if (buffer.byteLength > Buffer.poolSize && buffer.byteLength <= piece.length + 64) buffer.transfer(0);
}
