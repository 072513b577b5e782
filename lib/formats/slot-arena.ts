// Where decompression workers put a batch's clusters: shared memory in slots of one batch each,
// page-aligned where the address space allows (aligned-memory.ts). The main thread hands a worker a free slot with the batch and gets back only "done";
// the clusters never travel as buffers of their own (no transfer, no per-cluster garbage on this
// thread), and the writer hands the slot to the device as it is (direct writes take page-aligned
// memory without a copy: lib/write/positional-writes.ts). A slot goes back once its bytes are written.
import { sharedAlignedMemory } from '../source/aligned-memory.ts';

/** Memory is added in blocks of this many bytes at least (one slot if a slot is larger). */
const BLOCK_BYTES = 32 * 1024 * 1024;

/** One slot: its block (what a worker is sent) and where in it. */
export interface Slot {
  readonly memory: SharedArrayBuffer;
  readonly offset: number;
  /** The slot's bytes, on this thread. */
  readonly bytes: Buffer;
}

export class SlotArena {
  readonly slotSize: number;
  private readonly slotsPerBlock: number;
  private readonly free: Slot[] = [];

  /** `slotSize`: a multiple of the page size. */
  constructor(slotSize: number) {
    this.slotSize = slotSize;
    this.slotsPerBlock = Math.max(1, Math.floor(BLOCK_BYTES / slotSize));
  }

  /** A free slot; the arena grows by a block when none is. */
  take(): Slot {
    if (this.free.length === 0) {
      const memory = sharedAlignedMemory(this.slotSize, this.slotsPerBlock);
      for (let i = this.slotsPerBlock - 1; i >= 0; i--) {
        const offset = i * this.slotSize;
        this.free.push({ memory, offset, bytes: Buffer.from(memory, offset, this.slotSize) });
      }
    }
    return this.free.pop()!;
  }

  /** The slot's bytes are no longer used (written, or dropped): it may be filled again. */
  give(slot: Slot): void {
    this.free.push(slot);
  }
}
