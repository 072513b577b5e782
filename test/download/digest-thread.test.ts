// DigestThread: the digest computed on a worker equals node:crypto's over the same bytes, however
// they are fed (views of shared chunks, runs that span chunks, bytes outside shared memory), and
// prefaulting a chunk while the main thread fills it changes none of its bytes.
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { DigestThread } from '../../lib/download/digest-thread.ts';

const open: DigestThread[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
});
function digestThread(type: 'md5' | 'sha1' | 'sha256' | 'sha512'): DigestThread {
  const digest = new DigestThread(type);
  open.push(digest);
  return digest;
}

describe('DigestThread', () => {
  it.each([
    ['md5', false],
    ['sha1', true],
    ['sha256', false],
    ['sha512', true],
  ] as const)(
    '%s of a ChunkedBuffer filled piece by piece, chunks prefaulted ahead (size announced: %s)',
    async (type, announced) => {
      const digest = digestThread(type);
      const image = new ChunkedBuffer(256 * 1024, { ahead: (chunk) => digest.prefault(chunk) });
      const bytes = randomBytes(5 * 1024 * 1024 + 777);
      // Announced, the last chunk is prefaulted only up to the end (777 bytes: part of a page).
      if (announced) image.expectSize(bytes.length);
      // Uneven pieces, some spanning chunk boundaries, as a socket delivers them.
      for (let at = 0, i = 0; at < bytes.length; i++) {
        const n = Math.min(bytes.length - at, [1, 65536, 4000, 300000, 17][i % 5]!);
        const before = image.size;
        image.append(bytes.subarray(at, at + n));
        for (const view of image.views(before, n)) digest.update(view);
        at += n;
      }
      image.seal();
      expect(await digest.hex()).toBe(createHash(type).update(bytes).digest('hex'));
      // Every byte is where it was put: prefaulting raced with the copies and changed nothing.
      expect(Buffer.compare(image.read(0, bytes.length), bytes)).toBe(0);
    },
  );

  it.each([4097, 3])('prefaults chunks of %i bytes (no whole number of words or pages)', async (chunkSize) => {
    const digest = digestThread('sha256');
    const image = new ChunkedBuffer(chunkSize, { ahead: (chunk) => digest.prefault(chunk) });
    const bytes = randomBytes(5 * chunkSize + 1);
    image.append(bytes);
    digest.update(image.read(0, bytes.length));
    expect(await digest.hex()).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('takes bytes outside shared memory, mixed with shared ones, in order', async () => {
    const digest = digestThread('sha256');
    const shared = new ChunkedBuffer(1024);
    shared.append(Buffer.from('shared bytes'));
    digest.update(Buffer.from('plain '));
    digest.update(shared.read(0, 12));
    digest.update(new Uint8Array(0));
    digest.update(Buffer.from(' and more'));
    expect(await digest.hex()).toBe(createHash('sha256').update('plain shared bytes and more').digest('hex'));
  });

  it('starts afresh after reset() and after hex()', async () => {
    const digest = digestThread('sha1');
    digest.update(Buffer.from('dropped'));
    digest.reset();
    digest.update(Buffer.from('kept'));
    expect(await digest.hex()).toBe(createHash('sha1').update('kept').digest('hex'));
    expect(await digest.hex()).toBe(createHash('sha1').digest('hex'));
  });
});

describe('ChunkedBuffer.views', () => {
  it('gives views of the chunks a range spans, without copying', () => {
    const image = new ChunkedBuffer(10);
    image.append(Buffer.from('0123456789abcdefghijKLM'));
    const views = [...image.views(7, 10)];
    expect(views.map((v) => v.toString())).toEqual(['789', 'abcdefg']);
    expect(views.every((v) => v.buffer instanceof SharedArrayBuffer)).toBe(true);
    expect([...image.views(3, 0)]).toEqual([]);
  });
});
