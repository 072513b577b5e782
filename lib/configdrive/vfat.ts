// The config drive filesystem: vfat labelled config-2, made by mkfs.fat into a temporary file and
// filled by mtools, so nothing is mounted (this also works where the kernel has no vfat, and on
// 4K-sector disks when the filesystem's sector size matches the disk's).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { exec } from '../system/exec.ts';
import { configDriveToolFailed } from '../errors.ts';
import type { ConfigDriveFile } from './content.ts';

/** The label cloud-init looks for (config-2 or CONFIG-2, exactly). */
export const CONFIG_DRIVE_LABEL = 'config-2';

export interface VfatGeometry {
  /** Size of the filesystem; a multiple of the sector size and of 1 KiB. */
  bytes: number;
  /** The filesystem's logical sector size: at least the disk's, or the kernel will not mount it. */
  sectorSize: number;
}

/** mtools refuses images whose geometry looks odd to it unless told not to check. */
const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };

/** Makes the filesystem holding `files` and returns its bytes. */
export async function buildVfatImage(files: readonly ConfigDriveFile[], geometry: VfatGeometry): Promise<Uint8Array> {
  const work = await mkdtemp(join(tmpdir(), 'byoi-configdrive-'));
  try {
    const image = join(work, 'config-2.vfat');
    await buildVfatFile(files, geometry, image);
    return await readFile(image);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Makes the filesystem holding `files` in the new file `image`. The file is sparse: only what
 * mkfs.fat and mcopy write (boot sector, FATs, directories, the files) takes room, where /tmp is RAM.
 */
export async function buildVfatFile(
  files: readonly ConfigDriveFile[],
  geometry: VfatGeometry,
  image: string,
): Promise<void> {
  const unit = Math.max(geometry.sectorSize, 1024);
  if (geometry.bytes <= 0 || geometry.bytes % unit !== 0) {
    throw new Error(`a vfat image of ${geometry.bytes} bytes is not a whole number of ${unit}-byte units`);
  }
  const tree = await mkdtemp(join(tmpdir(), 'byoi-configdrive-tree-'));
  try {
    await tool('mkfs.fat', [
      '-C',
      '-n',
      CONFIG_DRIVE_LABEL,
      '-S',
      String(geometry.sectorSize),
      image,
      String(geometry.bytes / 1024),
    ]);
    for (const file of files) {
      const path = join(tree, file.path);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, file.data);
    }
    const tops = [...new Set(files.map((file) => file.path.split('/')[0]!))];
    for (const top of tops) await tool('mcopy', ['-s', '-Q', '-i', image, join(tree, top), '::/']);
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}

async function tool(command: string, args: string[]): Promise<void> {
  const result = await exec(command, args, { env: MTOOLS_ENV, reject: false });
  if (result.failed) {
    throw configDriveToolFailed(`${command} ${args.join(' ')}`, result.all || result.message);
  }
}
