// ChunkedBuffer: every byte lands in its place, whatever the file size; chunks of whole pages are
// page-aligned memory, so a direct write takes a run as it lies.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isPageAligned } from '../../lib/source/aligned-memory.ts';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { addressSpaceUnlimited } from '../../lib/system/memory.ts';

const MiB = 1024 * 1024;

describe('ChunkedBuffer.fromFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-chunked-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['more chunks than parallel reads, the last one partial', 64 * 1024 * 9 + 123],
    ['an exact number of chunks', 64 * 1024 * 3],
    ['less than one chunk', 1000],
    ['an empty file', 0],
  ])('%s', async (_, size) => {
    const bytes = randomBytes(size);
    const path = join(dir, `f-${size}`);
    writeFileSync(path, bytes);
    const image = await ChunkedBuffer.fromFile(path, 64 * 1024);
    expect(image.size).toBe(size);
    expect(Buffer.compare(image.read(0, size), bytes)).toBe(0);
    // Appending continues where the file ended.
    image.append(Buffer.from('tail'));
    expect(image.read(size, 4).toString()).toBe('tail');
    expect(() => image.read(0, size + 5)).toThrow(RangeError);
  });
});

describe('ChunkedBuffer.concat', () => {
  const part = (bytes: Buffer) => {
    const buffer = new ChunkedBuffer(1024);
    buffer.append(bytes);
    return buffer;
  };

  it('joins parts of whole chunks and a last partial one, byte for byte', () => {
    const bytes = randomBytes(1024 * 5 + 300);
    const joined = ChunkedBuffer.concat([
      part(bytes.subarray(0, 2048)),
      part(bytes.subarray(2048, 4096)),
      part(bytes.subarray(4096)),
    ]);
    expect(joined.size).toBe(bytes.length);
    expect(joined.read(0, bytes.length).equals(bytes)).toBe(true);
    expect(joined.read(2000, 100).equals(bytes.subarray(2000, 2100))).toBe(true);
    joined.append(Buffer.from('tail'));
    expect(joined.read(bytes.length, 4).toString()).toBe('tail');
  });

  it('copies what does not start on a chunk boundary, byte for byte', () => {
    const bytes = randomBytes(1024 * 4 + 10);
    const cuts = [0, 1000, 1024, 3000, 3072, bytes.length];
    const joined = ChunkedBuffer.concat(cuts.slice(1).map((end, i) => part(bytes.subarray(cuts[i], end))));
    expect(joined.size).toBe(bytes.length);
    expect(joined.read(0, bytes.length).equals(bytes)).toBe(true);
  });
});

describe('ChunkedBuffer.room and grow', () => {
  it('fills in place up to each chunk end, never past what was asked or what the room holds', () => {
    const image = new ChunkedBuffer(10);
    const bytes = randomBytes(37);
    let at = 0;
    for (const wanted of [4, 50, 3, 1, 40]) {
      const room = image.room(Math.min(wanted, bytes.length - at));
      expect(room.length).toBe(Math.min(wanted, bytes.length - at, 10 - (at % 10)));
      // Asked twice without growing: the same room, no chunk skipped.
      expect(image.room(wanted).byteOffset).toBe(room.byteOffset);
      room.set(bytes.subarray(at, at + room.length));
      image.grow(room.length);
      at += room.length;
    }
    expect(image.read(0, at).equals(bytes.subarray(0, at))).toBe(true);
    expect(() => image.grow(11)).toThrow(RangeError);
    expect(() => image.grow(-1)).toThrow(RangeError);
    expect(() => new ChunkedBuffer(10).grow(1)).toThrow(RangeError); // no room() given
  });
});

describe('ChunkedBuffer chunks', () => {
  it('are page-aligned shared memory when they are whole pages of 1 MiB or more (and the address space is free), ordinary shared memory when not', () => {
    // Under `ulimit -v` or off x86-64 every chunk is ordinary shared memory (lib/system/memory.ts).
    const free = addressSpaceUnlimited();
    const bytes = randomBytes(3 * MiB + 4096);
    const aligned = new ChunkedBuffer(MiB);
    aligned.append(bytes);
    for (let index = 0; index < 4; index++) {
      expect(aligned.chunk(index).buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(aligned.chunk(index).length).toBe(MiB);
    }
    expect(isPageAligned(aligned.read(MiB, MiB))).toBe(free);
    expect(isPageAligned(aligned.read(3 * MiB, 4096))).toBe(free);
    expect(Buffer.compare(aligned.read(0, bytes.length), bytes)).toBe(0);

    for (const size of [1000, 64 * 1024, MiB + 512]) {
      const other = new ChunkedBuffer(size);
      other.append(bytes);
      expect(other.chunk(0).buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(other.chunk(0).length).toBe(size);
      expect(isPageAligned(other.read(0, 4096)), `chunks of ${size} bytes`).toBe(false);
      expect(Buffer.compare(other.read(0, bytes.length), bytes)).toBe(0);
    }
  });
});

describe('ChunkedBuffer ahead', () => {
  const chunk = 64 * 1024;

  it('hands each chunk over before it is needed, whole while the size is unknown', () => {
    const handed: number[] = [];
    const image = new ChunkedBuffer(chunk, { ahead: (next) => handed.push(next.length) });
    image.append(randomBytes(2 * chunk + 100));
    expect(handed).toEqual([chunk, chunk, chunk]);
  });

  it('only as far as the expected size reaches; appends past it still land', () => {
    const handed: number[] = [];
    const image = new ChunkedBuffer(chunk, { ahead: (next) => handed.push(next.length) });
    image.expectSize(2 * chunk + 100);
    const bytes = randomBytes(2 * chunk + 100);
    image.append(bytes);
    // The second chunk whole, the third up to the expected end, nothing after it.
    expect(handed).toEqual([chunk, 100]);
    const more = randomBytes(chunk);
    image.append(more);
    expect(Buffer.compare(image.read(0, image.size), Buffer.concat([bytes, more]))).toBe(0);
  });
});
