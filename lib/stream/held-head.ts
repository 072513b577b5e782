// The streaming mode's view of the image it is writing, for the checks the normal mode makes from
// the decoded image (lib/disk/efi.ts): the first MiB is held back in RAM (the writer's head), the
// rest is on the disk. Before anything is written only the head is known; once the body is
// written and flushed, the disk with the head laid over it is the whole image.
import { open, type FileHandle } from 'node:fs/promises';
import { firstNonZero } from '../disk/read-back.ts';
import type { GuestRange, GuestReader } from '../formats/guest.ts';
import { internalWriteError } from '../errors.ts';
import { readImageTable, type ImageTable } from '../formats/image-partitions.ts';

const CHUNK = 1024 * 1024;

/**
 * The image's partition table, read from `head` alone (its first MiB, or its first bytes known so
 * far); `whole` is false when part of it (a GPT's entry array) lies past them, unknown.
 */
export async function tableFromHead(
  head: Buffer,
  size: number,
): Promise<{ table: ImageTable | undefined; whole: boolean }> {
  let beyond = false;
  const reader: GuestReader = {
    size,
    read: (ranges) =>
      Promise.resolve(
        ranges.map((range) => {
          if (range.offset + range.length > head.length) beyond = true;
          return overlay(Buffer.alloc(range.length), range.offset, head);
        }),
      ),
    save: () => Promise.reject(internalWriteError('the held-back head is not saved')),
  };
  const table = await readImageTable(reader);
  // An MBR's types are all in its first sector (what lies past the head only tells its sector size).
  return { table, whole: table?.label === 'dos' || !beyond };
}

/** The image as written so far: `device`'s bytes, its first `head.length` bytes taken from `head`. */
export function writtenImage(device: string, head: Buffer, size: number): GuestReader {
  return {
    size,
    read: (ranges) => withDevice(device, (handle) => Promise.all(ranges.map((r) => readRange(handle, r, head, size)))),
    save: (range, path) =>
      withDevice(device, async (handle) => {
        const out = await open(path, 'wx', 0o600);
        try {
          await out.truncate(range.length);
          for (let at = 0; at < range.length; at += CHUNK) {
            const length = Math.min(CHUNK, range.length - at);
            const bytes = await readRange(handle, { offset: range.offset + at, length }, head, size);
            // Zeros stay holes: an ESP is mostly empty, and /tmp may be RAM.
            if (firstNonZero(bytes) >= 0) await out.write(bytes, 0, length, at);
          }
        } finally {
          await out.close();
        }
      }),
  };
}

async function withDevice<T>(device: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await open(device, 'r');
  try {
    return await use(handle);
  } finally {
    await handle.close();
  }
}

/** `range` of the image: zeros past its end, the head over the disk's first bytes. */
async function readRange(handle: FileHandle, range: GuestRange, head: Buffer, size: number): Promise<Buffer> {
  const out = Buffer.alloc(range.length);
  const end = Math.min(size, range.offset + range.length);
  for (let done = 0; range.offset + done < end;) {
    const { bytesRead } = await handle.read(out, done, end - range.offset - done, range.offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return overlay(out, range.offset, head);
}

/** Copies the part of `head` (image bytes from 0) that falls in `out` (image bytes from `offset`). */
function overlay(out: Buffer, offset: number, head: Buffer): Buffer {
  if (offset < head.length) head.copy(out, 0, offset, Math.min(head.length, offset + out.length));
  return out;
}
