// Where a disk image is written: one class per kind (regular-file.ts for `convert`, block-device.ts
// for deployments), chosen here by what the path is. The extent writer sees only these interfaces,
// so a new kind of destination is one class and one line below.
import { realpath, stat } from 'node:fs/promises';
import { badTarget } from '../errors.ts';
import { BlockDevice } from './block-device.ts';
import { RegularFile } from './regular-file.ts';
import type { Ranges } from './zero-runs.ts';

/** A destination described, not yet opened. */
export interface Destination {
  readonly path: string;
  /** Its size in bytes now: a device's capacity, a file's length (0 if it does not exist yet). */
  readonly size: number;
  /** The most it can hold, or undefined if it grows to fit (a file). */
  readonly capacity: number | undefined;
  /**
   * Written in place: its old contents go as the write proceeds, so an image must decode end to end
   * before the first byte is written. (A file is written aside and renamed into place on success.)
   */
  readonly inPlace: boolean;
  /** Held exclusively from now on, for an image of `size` bytes. */
  open(size: number): Promise<OpenDestination>;
}

/** What the extent writer needs of a destination. */
export interface DestinationWrites {
  /** Reads as zeros wherever nothing is written (a new sparse file): zero runs and an all-zero head are not written. */
  readonly zeroFilled: boolean;
  /** Writes every byte of `buffers` at `position`. One write at a time. */
  write(buffers: Buffer[], position: number): Promise<void>;
  /** What was written is on stable storage (fdatasync): a barrier against a disk cache's reordering. */
  flush(): Promise<void>;
  /** Asks it to zero these ranges itself; resolves to start -> end of the ranges now zeroed. Never rejects. */
  zeroItself(ranges: Ranges): Promise<ReadonlyMap<number, number>>;
}

/** A destination held for writing. */
export interface OpenDestination extends DestinationWrites {
  /** Before the first write: nothing of its old contents looks like a disk (a device's ends zeroed), and it has the image's size. */
  prepare(): Promise<void>;
  /** The write succeeded: closes it and puts it in place. */
  finish(): Promise<void>;
  /** The write failed: undoes what it can and closes it. Never rejects. */
  abort(): Promise<void>;
}

/** What `path` is and how big, without opening it for writing. */
export async function destinationAt(path: string): Promise<Destination> {
  const st = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!st) return new RegularFile(path, 0);
  // A symlink to a file: replace the file it names, not the link.
  if (st.isFile()) return new RegularFile(await realpath(path), st.size);
  if (st.isBlockDevice()) return new BlockDevice(path, await BlockDevice.sizeOf(st.rdev));
  throw badTarget(path, st.isDirectory() ? 'a directory' : 'a special file');
}
