// What a failure while writing is called: a failed system call is the target's ("Can't write ...
// on disk."), anything else is byoi's own and is never reported as the disk's failure. And a qcow2
// declaring a size past what byoi can represent is refused at its header, by `byoi convert` too.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeImage } from '../../lib/write/write-image.ts';
import { ByoiError } from '../../lib/errors.ts';
import type { DiskImage, Extent } from '../../lib/formats/types.ts';
import { skipWithout } from '../helpers/capabilities.ts';

const dir = mkdtempSync(join(tmpdir(), 'byoi-write-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function imageFailingWith(error: Error): DiskImage {
  return {
    info: { format: 'qcow2', virtualSize: 1 << 20, fileSize: 1 << 20, allocatedBytes: 4096, features: {} },
    async *extents(): AsyncIterable<Extent> {
      yield { offset: 0, length: 4096, data: Buffer.alloc(4096, 1) };
      throw error;
    },
  };
}

async function failure(run: Promise<unknown>): Promise<ByoiError> {
  const error = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ByoiError);
  return error as ByoiError;
}

describe('errors while writing', () => {
  it('an internal error (a RangeError, a TypeError) is not the disk failing', async () => {
    for (const cause of [new RangeError('The value of "position" is out of range.'), new TypeError('x is undefined')]) {
      const error = await failure(writeImage(imageFailingWith(cause), join(dir, 'out.raw')));
      expect(error.message).toBe('Internal error while writing the image (a bug of byoi, not a failure of the disk).');
      expect(error.detail).toBe(cause.message);
    }
  });

  it("a failed system call is the target failing, in OVH's sentence", async () => {
    const eio = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', errno: -5, syscall: 'write' });
    const error = await failure(writeImage(imageFailingWith(eio), join(dir, 'out.raw')));
    expect(error.message).toBe("Can't write qcow2 on disk.");
  });

  it.skipIf(skipWithout('qemu-img'))(
    '`byoi convert` refuses a qcow2 of 2^53 bytes at its header (not "Can\'t write")',
    () => {
      const image = join(dir, 'huge.qcow2');
      // qemu-img will not make one this large; a small image with its size field rewritten.
      spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1M']);
      const bytes = readFileSync(image);
      for (const size of [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) {
        bytes.writeBigUInt64BE(size, 24);
        writeFileSync(image, bytes);
        const result = spawnSync(process.execPath, ['agent/byoi.ts', 'convert', image, join(dir, 'huge.raw')], {
          encoding: 'utf8',
        });
        expect(result.status).toBe(1);
        expect(result.stderr.trim().split('\n').at(-1)).toBe(
          `Bad qcow2 image: its virtual size of ${size} bytes is more than byoi can represent (at most 2^52 bytes, 4 PiB: byte offsets past it lose precision).`,
        );
      }
    },
  );
});
