// Page-aligned memory lent out page by page, for reads a consumer hands back once done with them
// (lib/source/file-source.ts). Short reads share a slot, so a batch of short runs still reaches the
// O_DIRECT writer aligned (lib/write/positional-writes.ts: one unaligned piece sends its whole
// batch through a staging copy); a slot is filled again only once every lend in it is back. Where
// the address space is short the slab is ordinary memory (aligned-memory.ts), reused all the same.
import { alignedBuffers, PAGE_SIZE } from './aligned-memory.ts';

export class LendingSlab {
  private readonly slotSize: number;
  private readonly slotCount: number;
  /** Made on the first lend. */
  private slots: Buffer[] | undefined;
  /** Per slot: bytes handed out from its start (whole pages), and lends not yet back. */
  private readonly used: number[];
  private readonly outstanding: number[];
  /** Each lent buffer, the object itself, and its slot: a view of it, or a second give, is ignored. */
  private readonly lent = new Map<Buffer, number>();
  /** The slot lends are cut from. */
  private current = 0;

  /** `slotSize`: a multiple of PAGE_SIZE, the longest lend. */
  constructor(slotSize: number, slotCount: number) {
    this.slotSize = slotSize;
    this.slotCount = slotCount;
    this.used = new Array<number>(slotCount).fill(0);
    this.outstanding = new Array<number>(slotCount).fill(0);
  }

  /** `length` bytes starting on a page of the slab, or undefined: empty, too long, or the slab all out. */
  take(length: number): Buffer | undefined {
    if (length === 0 || length > this.slotSize) return undefined;
    this.slots ??= alignedBuffers(this.slotSize, this.slotCount);
    const pages = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    if (this.used[this.current]! + pages > this.slotSize) {
      const free = this.outstanding.indexOf(0);
      if (free < 0) return undefined;
      this.current = free;
    }
    const slot = this.current;
    const start = this.used[slot]!;
    const bytes = this.slots[slot]!.subarray(start, start + length);
    this.used[slot] = start + pages;
    this.outstanding[slot]!++;
    this.lent.set(bytes, slot);
    return bytes;
  }

  /** `bytes`, a buffer `take` returned, is no longer read by anyone: its pages may be lent again. */
  give(bytes: Buffer): void {
    const slot = this.lent.get(bytes);
    if (slot === undefined) return;
    this.lent.delete(bytes);
    if (--this.outstanding[slot]! === 0) this.used[slot] = 0;
  }
}
