// The extent writer over a destination in memory: which bytes it writes, which it leaves to the
// destination (zero runs it zeroed itself, or all zeros where it reads as zeros already), and the
// order that keeps an interrupted write from leaving a disk that looks bootable.
import { describe, expect, it } from 'vitest';
import type { DiskImage } from '../../lib/formats/types.ts';
import type { DestinationWrites } from '../../lib/write/destination.ts';
import { ExtentWriter } from '../../lib/write/extent-writer.ts';
import { verifyImage } from '../../lib/write/verify.ts';
import type { Ranges } from '../../lib/write/zero-runs.ts';
import { bytesOf, data, imageOf, zero } from '../helpers/extents.ts';

const MiB = 1024 * 1024;

type Event = { write: [number, number] } | 'flush' | { zeroItself: Ranges };

/** Old contents of 0xAA; zeroes itself the ranges listed in `offloads` (none if not given), fails no call. */
class MemoryDestination implements DestinationWrites {
  readonly zeroFilled: boolean;
  readonly bytes: Buffer;
  readonly events: Event[] = [];
  private readonly offloads: boolean;

  constructor(size: number, options: { zeroFilled: boolean; offloads: boolean }) {
    this.zeroFilled = options.zeroFilled;
    this.offloads = options.offloads;
    this.bytes = Buffer.alloc(size, options.zeroFilled ? 0 : 0xaa);
  }

  async write(buffers: Buffer[], position: number): Promise<void> {
    const data = Buffer.concat(buffers);
    this.events.push({ write: [position, position + data.length] });
    data.copy(this.bytes, position);
  }

  async flush(): Promise<void> {
    this.events.push('flush');
  }

  async zeroItself(ranges: Ranges): Promise<ReadonlyMap<number, number>> {
    this.events.push({ zeroItself: ranges });
    if (!this.offloads) return new Map();
    for (const [start, end] of ranges) this.bytes.fill(0, start, end);
    return new Map(ranges.map(([start, end]) => [start, end]));
  }

  writes(): [number, number][] {
    return this.events.flatMap((event) => (typeof event === 'object' && 'write' in event ? [event.write] : []));
  }
}

const overlaps = (a: [number, number], b: readonly [number, number]) => a[0] < b[1] && b[0] < a[1];

// Zero runs: one inside the head, a long one (its MiB-aligned middle offloadable) with ragged ends,
// a short one, and a long one at the end.
const extents = [
  data(0, 4096),
  zero(4096, 8192),
  data(12288, MiB - 12288),
  zero(MiB, 5 * MiB + 512),
  data(6 * MiB + 512, 4096 - 512),
  zero(6 * MiB + 4096, 4096),
  data(6 * MiB + 8192, 2 * MiB - 8192),
  zero(8 * MiB, 8 * MiB),
];

describe('ExtentWriter onto a destination written in place', () => {
  it('writes zero runs as zeros, except the ranges the destination zeroed itself', async () => {
    const { longZeroRuns } = await verifyImage(imageOf(extents));
    expect(longZeroRuns).toEqual([
      [MiB, 6 * MiB],
      [8 * MiB, 16 * MiB],
    ]);
    const destination = new MemoryDestination(16 * MiB, { zeroFilled: false, offloads: true });
    const written = await new ExtentWriter(destination, longZeroRuns).write(imageOf(extents));
    expect(written).toBe(MiB - 8192 + 4096 - 512 + 2 * MiB - 8192);
    expect(destination.bytes.equals(bytesOf(extents))).toBe(true);
    for (const write of destination.writes()) for (const run of longZeroRuns) expect(overlaps(write, run)).toBe(false);
    // The ragged end of the first long run, past its aligned middle, was written as zeros.
    expect(destination.writes().some((write) => overlaps(write, [6 * MiB, 6 * MiB + 512]))).toBe(true);
  });

  it('writes every zero run when the destination zeroed none', async () => {
    const { longZeroRuns } = await verifyImage(imageOf(extents));
    const destination = new MemoryDestination(16 * MiB, { zeroFilled: false, offloads: false });
    await new ExtentWriter(destination, longZeroRuns).write(imageOf(extents));
    expect(destination.bytes.equals(bytesOf(extents))).toBe(true);
  });

  it('writes the first MiB last, between two flushes, even when it holds only zeros', async () => {
    const body = [zero(0, MiB), data(MiB, 3 * MiB)];
    const destination = new MemoryDestination(4 * MiB, { zeroFilled: false, offloads: false });
    await new ExtentWriter(destination, []).write(imageOf(body));
    const events = destination.events.filter((event) => typeof event !== 'object' || !('zeroItself' in event));
    expect(events.slice(-3)).toEqual(['flush', { write: [0, MiB] }, 'flush']);
    expect(
      events.slice(0, -3).every((event) => typeof event === 'object' && 'write' in event && event.write[0] >= MiB),
    ).toBe(true);
    expect(destination.bytes.equals(bytesOf(body))).toBe(true);
  });
});

describe('ExtentWriter onto a destination that reads as zeros', () => {
  it('writes no zero run, and no head without data', async () => {
    const body = [zero(0, 2 * MiB), data(2 * MiB, MiB + 7), zero(3 * MiB + 7, MiB)];
    const destination = new MemoryDestination(4 * MiB + 7, { zeroFilled: true, offloads: false });
    await new ExtentWriter(destination, []).write(imageOf(body));
    expect(destination.writes()).toEqual([[2 * MiB, 3 * MiB + 7]]);
    expect(destination.bytes.equals(bytesOf(body))).toBe(true);
  });

  it('writes a head that holds data last, after the rest and a flush', async () => {
    const destination = new MemoryDestination(16 * MiB, { zeroFilled: true, offloads: false });
    await new ExtentWriter(destination, []).write(imageOf(extents));
    const writes = destination.writes();
    expect(writes.at(-1)).toEqual([0, MiB]);
    for (const write of writes.slice(0, -1))
      for (const extent of extents.filter((e) => 'zero' in e))
        expect(overlaps(write, [Math.max(extent.offset, MiB), extent.offset + extent.length])).toBe(false);
    expect(destination.events.slice(-3)).toEqual(['flush', { write: [0, MiB] }, 'flush']);
    expect(destination.bytes.equals(bytesOf(extents))).toBe(true);
  });

  it('refuses a decoder that skips bytes, before its last flush', async () => {
    const broken: DiskImage = {
      ...imageOf([data(0, MiB), data(2 * MiB, MiB)]),
      info: { ...imageOf([]).info, virtualSize: 3 * MiB },
    };
    const destination = new MemoryDestination(3 * MiB, { zeroFilled: true, offloads: false });
    await expect(new ExtentWriter(destination, []).write(broken)).rejects.toThrow('where 1048576 was expected');
    expect(destination.events).not.toContain('flush');
  });
});
