// A regular file, for `byoi convert`: written to a new sparse sibling and renamed into place only on
// success, so a refused image leaves an existing file untouched. Zero runs are left as holes.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Destination, OpenDestination } from './destination.ts';
import { PositionalWrites } from './positional-writes.ts';
import type { Ranges } from './zero-runs.ts';

export class RegularFile implements Destination {
  readonly path: string;
  readonly size: number;
  readonly capacity = undefined;
  readonly inPlace = false;

  /** `path`: the file itself, not a symlink to it; `size`: its length (0 if it does not exist yet). */
  constructor(path: string, size: number) {
    this.path = path;
    this.size = size;
  }

  async open(size: number): Promise<OpenDestination> {
    const temporary = join(dirname(this.path), `.${basename(this.path)}.byoi-${randomBytes(6).toString('hex')}`);
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    return new OpenRegularFile(handle, size, temporary, this.path);
  }
}

class OpenRegularFile extends PositionalWrites implements OpenDestination {
  readonly zeroFilled = true;
  private readonly handle: FileHandle;
  private readonly size: number;
  private readonly temporary: string;
  private readonly path: string;

  constructor(handle: FileHandle, size: number, temporary: string, path: string) {
    super(handle, undefined);
    this.handle = handle;
    this.size = size;
    this.temporary = temporary;
    this.path = path;
  }

  /** Sparse: a new file of the image's size reads as zeros. */
  prepare(): Promise<void> {
    return this.handle.truncate(this.size);
  }

  /** A new sparse file reads as zeros everywhere already. */
  async zeroItself(ranges: Ranges): Promise<ReadonlyMap<number, number>> {
    return new Map(ranges.map(([start, end]) => [start, end]));
  }

  async finish(): Promise<void> {
    await this.close();
    await rename(this.temporary, this.path);
  }

  async abort(): Promise<void> {
    await this.close().catch(() => undefined);
    await rm(this.temporary, { force: true }).catch(() => undefined);
  }
}
