// Decompressed batches a dry pass (qcow2's, a VMDK's) keeps for the writing pass, so that the write
// does not decompress them again. The pass may run on another thread than the write (the
// deployment's early pass, lib/formats/early-check.ts): batches in shared memory are handed over.
import type { DecodedBatch } from './decompress-pool.ts';
import type { HandedBatch, SharedPiece } from './types.ts';
import { isAlignedMemory, trustAligned } from '../source/aligned-memory.ts';

/** A batch's guest range, and its clusters (qcow2's, or a VMDK's grains), each of clusterSize bytes. */
interface BatchRange {
  readonly offset: number;
  readonly length: number;
  readonly clusters: readonly unknown[];
}

/** A kept batch and the guest range it decodes. */
interface Kept {
  readonly length: number;
  readonly batch: DecodedBatch;
}

/**
 * Decompressed batches the dry pass kept for the writing pass, by guest offset. A batch is kept
 * while the bytes kept so far stay within the budget's share of the compressed bytes seen so far,
 * which spreads the kept batches evenly over the image, and the memory they hold within the budget.
 * Each is handed out once.
 */
export class KeptBatches {
  private readonly budget: number;
  private readonly share: number;
  private readonly clusterSize: number;
  private readonly slotSize: number;
  private seen = 0;
  private keptBytes = 0;
  private heldBytes = 0;
  private readonly batches = new Map<number, Kept>();

  /**
   * `compressedClusters`: how many the image has, or at most (the share of each batch kept is the
   * budget's share of their bytes). `slotSize`: what a batch kept from a worker holds, however few
   * clusters it has.
   */
  constructor(budget: number, clusterSize: number, compressedClusters: number, slotSize: number) {
    this.budget = Math.max(0, budget);
    this.clusterSize = clusterSize;
    this.slotSize = slotSize;
    this.share = compressedClusters > 0 ? Math.min(1, this.budget / (compressedClusters * clusterSize)) : 0;
  }

  /** Whether the dry pass keeps this batch, asked once per batch in guest order. */
  wants(segment: BatchRange): boolean {
    const bytes = segment.clusters.length * this.clusterSize;
    this.seen += bytes;
    // The budget bounds the memory held, a whole slot a batch: counting only the clusters, a
    // hostile image of one-cluster batches held up to 2048 times the budget (512-byte clusters).
    const held = Math.max(bytes, this.slotSize);
    if (this.keptBytes + bytes > this.share * this.seen || this.heldBytes + held > this.budget) return false;
    this.keptBytes += bytes;
    this.heldBytes += held;
    return true;
  }

  put(segment: BatchRange, batch: DecodedBatch): void {
    this.batches.set(segment.offset, { length: segment.length, batch });
  }

  /** The batch kept for exactly this segment, once; a batch kept for another range is dropped. */
  take(segment: BatchRange): DecodedBatch | undefined {
    const kept = this.batches.get(segment.offset);
    this.batches.delete(segment.offset);
    if (kept?.length === segment.length) return kept.batch;
    kept?.batch.release?.(); // its memory given back (a slot filled again, or buffers freed)
    return undefined;
  }

  /** The kept batches whose bytes lie in shared memory, as another thread can take them; kept here too. */
  handOver(): HandedBatch[] {
    const handed: HandedBatch[] = [];
    for (const [offset, { length, batch }] of this.batches) {
      const pieces: SharedPiece[] = [];
      for (const { buffer, byteOffset, length: bytes } of batch.pieces)
        if (buffer instanceof SharedArrayBuffer)
          pieces.push({ memory: buffer, byteOffset, length: bytes, aligned: isAlignedMemory(buffer) });
      if (pieces.length === batch.pieces.length) handed.push({ offset, length, pieces });
    }
    return handed;
  }

  /**
   * Batches another pass kept over the same bytes, to hand out as this one's; one whose pieces fall
   * short of its range is not. Aligned memory stays known as such, so that the writer writes it
   * directly rather than through its staging copy.
   */
  adopt(batches: readonly HandedBatch[]): void {
    for (const { offset, length, pieces } of batches) {
      if (pieces.reduce((sum, piece) => sum + piece.length, 0) < length) continue;
      for (const piece of pieces) if (piece.aligned) trustAligned(piece.memory);
      const buffers = pieces.map((piece) => Buffer.from(piece.memory, piece.byteOffset, piece.length));
      this.batches.set(offset, { length, batch: { pieces: buffers } });
    }
  }
}
