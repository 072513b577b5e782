// A whole-disk block device as sysfs describes it, with its partitions and holders: what the
// in-use check and the disk groups look at.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { failed, messages } from '../errors.ts';

export interface BlockNode {
  /** Kernel name, e.g. "sda", "loop3", "nvme0n1p2". */
  readonly name: string;
  /** "major:minor". */
  readonly dev: string;
}

export interface WholeDisk extends BlockNode {
  readonly path: string;
  /** Size in bytes (sysfs counts 512-byte units whatever the sector size). */
  readonly size: number;
  readonly logicalSectorSize: number;
}

function read(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

/** The whole disk behind a device path; refuses what is missing, not a block device, or a partition. */
export function wholeDisk(path: string, sys = '/sys'): WholeDisk {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw failed(messages.diskNotFound(path));
  }
  if (!statSync(real).isBlockDevice()) throw failed(messages.notBlockDevice(path));
  const name = basename(real);
  const dir = join(sys, 'class/block', name);
  if (!existsSync(dir)) throw failed(messages.diskNotFound(path));
  if (existsSync(join(dir, 'partition'))) throw failed(messages.notWholeDisk(path));
  return {
    name,
    path,
    dev: read(join(dir, 'dev')),
    size: Number(read(join(dir, 'size'))) * 512,
    logicalSectorSize: Number(read(join(dir, 'queue/logical_block_size'))),
  };
}

/** The partitions of a disk and, recursively, every device stacked on it or them (dm, md). */
export function dependents(disk: BlockNode, sys = '/sys'): BlockNode[] {
  const seen = new Map<string, BlockNode>();
  const visit = (name: string) => {
    const dir = join(sys, 'class/block', name);
    if (seen.has(name) || !existsSync(dir)) return;
    seen.set(name, { name, dev: read(join(dir, 'dev')) });
    for (const entry of readdirSync(dir)) {
      if (existsSync(join(dir, entry, 'partition'))) visit(entry);
    }
    const holders = join(dir, 'holders');
    if (existsSync(holders)) for (const holder of readdirSync(holders)) visit(holder);
  };
  visit(disk.name);
  seen.delete(disk.name);
  return [...seen.values()];
}
