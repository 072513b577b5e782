// KeptBatches: what a dry pass keeps, handed to another opening (another thread) of the same bytes.
import { describe, expect, it } from 'vitest';
import { KeptBatches } from '../../lib/formats/kept-batches.ts';
import { isPageAligned, sharedAlignedMemory } from '../../lib/source/aligned-memory.ts';

const KiB = 1024;
/** A compressed segment of `clusters` 64 KiB clusters at guest `offset` (host offsets do not matter here). */
const segment = (offset: number, clusters: number, length = clusters * 64 * KiB) => ({
  kind: 'compressed' as const,
  offset,
  length,
  clusters: Array.from({ length: clusters }, (_, i) => ({ host: 4096 * i, size: 100 })),
});

describe('KeptBatches', () => {
  it('hands over batches in shared memory only, and the other side takes each once', () => {
    const memory = new SharedArrayBuffer(256 * KiB);
    new Uint8Array(memory).fill(7);
    const kept = new KeptBatches(1024 * KiB, 64 * KiB, 16, 128 * KiB);
    const shared = segment(0, 2);
    const local = segment(128 * KiB, 2);
    expect(kept.wants(shared) && kept.wants(local)).toBe(true);
    kept.put(shared, { pieces: [Buffer.from(memory, 0, 128 * KiB)] });
    kept.put(local, { pieces: [Buffer.alloc(128 * KiB)] }); // this thread's memory: not for another
    const handed = kept.handOver();
    expect(handed).toEqual([
      { offset: 0, length: 128 * KiB, pieces: [{ memory, byteOffset: 0, length: 128 * KiB, aligned: false }] },
    ]);

    const other = new KeptBatches(0, 64 * KiB, 16, 128 * KiB);
    other.adopt(handed);
    expect(other.take(local)).toBeUndefined();
    const taken = other.take(shared);
    expect(taken?.pieces.map((piece) => [piece.buffer, piece.length, piece[0]])).toEqual([[memory, 128 * KiB, 7]]);
    expect(other.take(shared)).toBeUndefined(); // once
  });

  it('drops a batch kept for another guest range than the segment asked for', () => {
    const memory = new SharedArrayBuffer(128 * KiB);
    const other = new KeptBatches(0, 64 * KiB, 16, 128 * KiB);
    other.adopt([
      { offset: 0, length: 128 * KiB, pieces: [{ memory, byteOffset: 0, length: 128 * KiB, aligned: false }] },
    ]);
    // The same start, one cluster: the batch's second cluster would land past the segment.
    expect(other.take(segment(0, 1))).toBeUndefined();
    expect(other.take(segment(0, 2))).toBeUndefined(); // dropped, not kept for later
  });

  it('gives back the slot of a batch it drops, and adopts no batch whose pieces fall short of its range', () => {
    const kept = new KeptBatches(1024 * KiB, 64 * KiB, 16, 128 * KiB);
    let released = 0;
    expect(kept.wants(segment(0, 2))).toBe(true);
    kept.put(segment(0, 2), { pieces: [Buffer.alloc(128 * KiB)], release: () => released++ });
    expect(kept.take(segment(0, 1))).toBeUndefined();
    expect(released).toBe(1);

    const memory = new SharedArrayBuffer(128 * KiB);
    const other = new KeptBatches(0, 64 * KiB, 16, 128 * KiB);
    other.adopt([
      { offset: 0, length: 128 * KiB, pieces: [{ memory, byteOffset: 0, length: 64 * KiB, aligned: false }] },
    ]);
    expect(other.take(segment(0, 2))).toBeUndefined();
  });

  it('says which memory it hands over is page-aligned, and the other side knows it so', () => {
    const aligned = sharedAlignedMemory(128 * KiB, 1);
    const kept = new KeptBatches(1024 * KiB, 64 * KiB, 16, 128 * KiB);
    expect(kept.wants(segment(0, 2))).toBe(true);
    kept.put(segment(0, 2), { pieces: [Buffer.from(aligned, 0, 128 * KiB)] });
    const [handed] = kept.handOver();
    expect(handed?.pieces[0]?.aligned).toBe(true);

    // As another thread receives it: its own object for the memory, unknown to this thread's record.
    const received = new SharedArrayBuffer(128 * KiB);
    expect(isPageAligned(Buffer.from(received))).toBe(false);
    const other = new KeptBatches(0, 64 * KiB, 16, 128 * KiB);
    other.adopt([{ ...handed!, pieces: [{ ...handed!.pieces[0]!, memory: received }] }]);
    expect(isPageAligned(other.take(segment(0, 2))!.pieces[0]!)).toBe(true);
  });

  it('keeps within its budget, spread over the clusters it is told of', () => {
    // Budget for half of 8 clusters: every other batch of one cluster (each holding a whole 64 KiB slot).
    const kept = new KeptBatches(256 * KiB, 64 * KiB, 8, 64 * KiB);
    const wanted = Array.from({ length: 8 }, (_, i) => kept.wants(segment(i * 64 * KiB, 1)));
    expect(wanted.filter(Boolean)).toHaveLength(4);
    expect(wanted).toEqual([false, true, false, true, false, true, false, true]);
  });
});
