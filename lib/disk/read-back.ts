// Read-back verification (etcher-sdk does it; Ironic, coreos-installer and Tinkerbell do not): while
// the image is written, the decoded data is hashed in guest order and its ranges noted; after the
// final flush, the target is read back around the page cache (O_DIRECT; or with a device's cached
// pages dropped first, where there is no aligned memory to read into) and its data ranges hashed
// the same way, the ranges between them checked to read as zeros. A disk that returns other bytes
// than it was given (a failing disk, a lying cache, a bad cable) fails the deployment.
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { alignedBuffers, isPageAligned, PAGE_SIZE } from '../source/aligned-memory.ts';
import { readBackMismatch } from '../errors.ts';
import { exec } from '../system/exec.ts';

/** Reads of this many bytes at a time. */
const CHUNK = 8 * 1024 * 1024;

/** What was written: fed every data extent in guest order (WriteOptions.onData). */
export class WrittenRecord {
  private readonly hash: Hash = createHash('sha256');
  /** Coalesced [start, end) ranges of data, in order. */
  readonly ranges: [number, number][] = [];
  dataBytes = 0;

  add(offset: number, data: Buffer): void {
    this.hash.update(data);
    this.dataBytes += data.length;
    const last = this.ranges.at(-1);
    if (last && last[1] === offset) last[1] += data.length;
    else this.ranges.push([offset, offset + data.length]);
  }

  digest(): string {
    return this.hash.copy().digest('hex');
  }
}

export interface ReadBackResult {
  /** sha256 of the data ranges, as read back. */
  readonly digest: string;
  readonly bytesRead: number;
  /**
   * false when the target was read through the page cache: it refused O_DIRECT (a file on tmpfs),
   * or there was no aligned memory to read into (a device, its cached pages dropped first).
   */
  readonly direct: boolean;
}

/** Checks the bytes read back, chunk by chunk in disk order; throws the mismatch. */
export interface ReadBackCheck {
  /** `bytes`: the target's bytes at `at`; what lies past the image is not given. */
  chunk(at: number, bytes: Buffer): void;
  /** The digest of what was read back, once it matched the record's. */
  end(): string;
}

/** What a writer recorded and how to check it against the target. */
export interface ReadBackRecord {
  readonly dataBytes: number;
  /** `size`: the image's. */
  check(size: number): ReadBackCheck;
}

/** The record's walk: data ranges hashed in order, the ranges between them zeros. */
function rangesCheck(record: WrittenRecord): ReadBackCheck {
  const hash = createHash('sha256');
  let range = 0;
  return {
    chunk(at, buffer) {
      const end = at + buffer.length;
      for (let position = at; position < end;) {
        while (range < record.ranges.length && record.ranges[range]![1] <= position) range++;
        const next = record.ranges[range];
        if (next && next[0] <= position) {
          const dataEnd = Math.min(next[1], end);
          hash.update(buffer.subarray(position - at, dataEnd - at));
          position = dataEnd;
        } else {
          const zerosEnd = Math.min(next?.[0] ?? end, end);
          const bad = firstNonZero(buffer.subarray(position - at, zerosEnd - at));
          if (bad >= 0) throw readBackMismatch(`byte ${position + bad} should read as zero`);
          position = zerosEnd;
        }
      }
    },
    end() {
      const digest = hash.digest('hex');
      const expected = record.digest();
      if (digest !== expected)
        throw readBackMismatch(`the data read back has sha256 ${digest}, the data written ${expected}`);
      return digest;
    },
  };
}

/**
 * Reads [0, size) of `path` back and checks it against `record`; throws the read-back mismatch
 * (a failed deployment) on any difference. `size`: the image's virtual size.
 */
export async function verifyReadBack(
  path: string,
  size: number,
  record: WrittenRecord | ReadBackRecord,
): Promise<ReadBackResult> {
  const check = record instanceof WrittenRecord ? rangesCheck(record) : record.check(size);
  // Two buffers: the next chunk is read while this one is checked. Read around the page cache only
  // into aligned ones (not under an address-space limit: aligned-memory.ts).
  const buffers = alignedBuffers(CHUNK, 2);
  const { handle, direct } = await openForReading(path, buffers.every(isPageAligned));
  try {
    // Through the page cache, a device's cached pages would answer for it: they go first.
    if (!direct && (await handle.stat()).isBlockDevice()) await exec('blockdev', ['--flushbufs', path]);
    const readChunk = (at: number, buffer: Buffer) => {
      const wanted = Math.min(CHUNK, size - at);
      // A direct read's length is a multiple of the block size: round up, use only `wanted`.
      const length = Math.min(CHUNK, Math.ceil(wanted / PAGE_SIZE) * PAGE_SIZE);
      return readFully(handle, buffer.subarray(0, length), at).then((got) => ({ got, wanted }));
    };
    let reading = size > 0 ? readChunk(0, buffers[0]!) : undefined;
    for (let at = 0, index = 0; reading; at += CHUNK, index++) {
      const buffer = buffers[index % 2]!;
      const { got, wanted } = await reading;
      reading = at + CHUNK < size ? readChunk(at + CHUNK, buffers[(index + 1) % 2]!) : undefined;
      try {
        if (got < wanted) throw readBackMismatch(`the target ended after ${at + got} of ${size} bytes`);
        check.chunk(at, buffer.subarray(0, wanted));
      } catch (error) {
        await reading?.catch(() => undefined);
        throw error;
      }
    }
    return { digest: check.end(), bytesRead: size, direct };
  } finally {
    await handle.close();
  }
}

async function openForReading(path: string, direct: boolean): Promise<{ handle: FileHandle; direct: boolean }> {
  if (!direct) return { handle: await open(path, constants.O_RDONLY), direct: false };
  try {
    return { handle: await open(path, constants.O_RDONLY | constants.O_DIRECT), direct: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
    return { handle: await open(path, constants.O_RDONLY), direct: false };
  }
}

async function readFully(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Index of the first non-zero byte, or -1; word-wise where it can. */
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

export function firstNonZero(bytes: Buffer): number {
  for (let at = 0; at < bytes.length; at += PAGE_SIZE) {
    const part = bytes.subarray(at, at + PAGE_SIZE);
    if (!part.equals(ZERO_PAGE.subarray(0, part.length))) return at + part.findIndex((b) => b !== 0);
  }
  return -1;
}
