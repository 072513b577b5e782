// Direct writes and their fallbacks, without a device: the direct descriptor is injected, standing
// in for one the kernel refuses (EINVAL: a device wanting another alignment) or fails (EIO), or
// recording what it is given over a real file; the page-cache descriptor is a real file's.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alignedBuffers, isPageAligned, PAGE_SIZE } from '../../lib/source/aligned-memory.ts';
import { PositionalWrites, type Descriptor } from '../../lib/write/positional-writes.ts';

const dir = mkdtempSync(join(tmpdir(), 'byoi-positional-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A direct descriptor that records its calls and answers writes with `answer`. */
function injected(
  answer: (buffers: Buffer[], position: number) => Promise<{ bytesWritten: number; buffers: Buffer[] }>,
) {
  const calls = { writes: [] as { position: number; buffers: Buffer[] }[], closed: 0, synced: 0 };
  const descriptor: Descriptor = {
    writev: ((buffers: Buffer[], position: number) => {
      calls.writes.push({ position, buffers });
      return answer(buffers, position);
    }) as Descriptor['writev'],
    datasync: async () => void calls.synced++,
    close: async () => void calls.closed++,
  };
  return { descriptor, calls };
}

const failing = (code: string) => async () => {
  throw Object.assign(new Error(`${code}: refused, write`), { code, syscall: 'write' });
};

describe('PositionalWrites', () => {
  let path: string;
  let file: FileHandle;
  beforeEach(async () => {
    path = join(dir, `file-${randomBytes(4).toString('hex')}`);
    file = await open(path, 'w+');
  });
  afterEach(async () => {
    await file.close().catch(() => undefined);
  });

  it('a destination that refuses a direct write (EINVAL) gets that batch and every later one through the page cache', async () => {
    const { descriptor, calls } = injected(failing('EINVAL'));
    const writes = new PositionalWrites(file, descriptor);
    const [first, second] = alignedBuffers(64 * 1024, 2) as [Buffer, Buffer];
    randomBytes(first.length).copy(first);
    randomBytes(second.length).copy(second);
    await writes.write([first], 0);
    await writes.write([second], first.length);
    await writes.flush();
    expect(calls.writes.length).toBe(1);
    expect(calls.closed).toBe(1);
    expect(calls.synced).toBe(0);
    expect(readFileSync(path).equals(Buffer.concat([first, second]))).toBe(true);
  });

  it('any other failure of a direct write is the destination failing: no fallback', async () => {
    const { descriptor, calls } = injected(failing('EIO'));
    const writes = new PositionalWrites(file, descriptor);
    await expect(writes.write(alignedBuffers(PAGE_SIZE, 1), 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(calls.closed).toBe(0);
    expect(readFileSync(path).length).toBe(0);
  });

  it('goes direct only at page-aligned offsets and lengths, staging buffers that are not page-aligned', async () => {
    // The recording descriptor writes through a second real descriptor, so the file shows every byte.
    const other = await open(path, 'r+');
    const { descriptor, calls } = injected((buffers, position) => other.writev(buffers, position));
    const writes = new PositionalWrites(file, descriptor);
    const aligned = alignedBuffers(2 * PAGE_SIZE, 1)[0]!;
    randomBytes(aligned.length).copy(aligned);
    const unaligned = randomBytes(3 * PAGE_SIZE + 1).subarray(1); // a page's worth of bytes, off a page boundary
    const odd = randomBytes(512);
    await writes.write([aligned], 0); // direct, as it is
    await writes.write([unaligned], 2 * PAGE_SIZE); // direct, staged
    await writes.write([odd], 5 * PAGE_SIZE); // an odd length: the page cache
    await writes.write([aligned.subarray(0, PAGE_SIZE)], 5 * PAGE_SIZE + 512); // an odd offset: the page cache
    await other.close();
    expect(calls.writes.map((call) => call.position)).toEqual([0, 2 * PAGE_SIZE]);
    expect(calls.writes[0]!.buffers[0]).toBe(aligned);
    for (const call of calls.writes) expect(call.buffers.every(isPageAligned)).toBe(true);
    const expected = Buffer.concat([aligned, unaligned, odd, aligned.subarray(0, PAGE_SIZE)]);
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('finishes a short write, through either descriptor', async () => {
    const other = await open(path, 'r+');
    // At most 1000 bytes a call: the rest must follow at the right offsets.
    const short = (handle: FileHandle) => (buffers: Buffer[], position: number) => {
      const some = Buffer.concat(buffers).subarray(0, 1000);
      return handle.write(some, 0, some.length, position).then(({ bytesWritten }) => ({ bytesWritten, buffers }));
    };
    const { descriptor } = injected(short(other));
    const bytes = alignedBuffers(2 * PAGE_SIZE, 1)[0]!;
    randomBytes(bytes.length).copy(bytes);
    const tail = randomBytes(2500);
    const writes = new PositionalWrites(
      { writev: short(file) as Descriptor['writev'], datasync: () => file.datasync(), close: () => file.close() },
      descriptor,
    );
    await writes.write([bytes.subarray(0, PAGE_SIZE), bytes.subarray(PAGE_SIZE)], 0);
    await writes.write([tail], bytes.length);
    await other.close();
    expect(readFileSync(path).equals(Buffer.concat([bytes, tail]))).toBe(true);
  });
});
