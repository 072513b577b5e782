// Zero runs: consecutive zero extents coalesced past the first MiB. The verifying pass and the
// writing pass find the same runs, so the writer knows which of them the destination zeroed itself.
import { alignedBuffers } from '../aligned-memory.ts';

export const MiB = 1024 * 1024;
/** Written last: MBR, GPT header and entries, boot loader gap. */
export const HEAD = MiB;
/** Zero runs whose MiB-aligned middle is at least this long are offered to the destination to zero itself. */
export const OFFLOAD_MIN = MiB;
/** Page-aligned, so zeros can be written directly. */
export const [ZEROS] = alignedBuffers(MiB, 1) as [Buffer];

/** [start, end) byte ranges. */
export type Ranges = readonly (readonly [number, number])[];

/**
 * Coalesces consecutive zero extents into runs, past the first MiB (the head buffer starts as
 * zeros), and hands each finished run to `onRun`.
 */
export class ZeroRuns {
  private start = 0;
  private end = 0;
  private readonly onRun: (start: number, end: number) => void;

  constructor(onRun: (start: number, end: number) => void) {
    this.onRun = onRun;
  }

  add(start: number, end: number): void {
    start = Math.max(start, HEAD);
    if (start >= end) return;
    if (this.end > this.start && start === this.end) {
      this.end = end;
      return;
    }
    this.flush();
    this.start = start;
    this.end = end;
  }

  flush(): void {
    if (this.end > this.start) this.onRun(this.start, this.end);
    this.start = this.end = 0;
  }
}

/** The MiB-aligned middle of a zero run if it is long enough to hand to the destination. */
export function alignedPart(start: number, end: number): [number, number] | undefined {
  const alignedStart = Math.ceil(start / MiB) * MiB;
  const alignedEnd = Math.floor(end / MiB) * MiB;
  return alignedEnd - alignedStart >= OFFLOAD_MIN ? [alignedStart, alignedEnd] : undefined;
}
