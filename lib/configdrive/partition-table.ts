// The target disk's partition table as the config drive planner needs it: read by sfdisk (util-linux),
// plus the GPT header's backup LBA and each partition's filesystem label (blkid).
import { open, stat } from 'node:fs/promises';
import { exec } from '../system/exec.ts';

export interface PartitionEntry {
  /** 1-based: GPT entry number, or MBR slot (1-4 primary or extended, 5+ logical). */
  number: number;
  start: number;
  sectors: number;
  /** GPT partition name. */
  name?: string;
  /** Label of the filesystem inside, if blkid found one. */
  fsLabel?: string;
}

export interface PartitionTable {
  label: 'gpt' | 'dos';
  sectorSize: number;
  totalSectors: number;
  /** GPT: the usable range from the header; MBR: 1 and totalSectors - 1. */
  firstUsable: number;
  lastUsable: number;
  /** GPT: where the primary header says the backup header is. */
  backupLba?: number;
  partitions: PartitionEntry[];
}

/** The disk's table, or undefined when it has none sfdisk recognises. */
export async function readPartitionTable(device: string): Promise<PartitionTable | undefined> {
  const { sectorSize, totalSectors } = await diskGeometry(device);
  const result = await exec('sfdisk', ['--json', device], { reject: false });
  if (result.exitCode !== 0) return undefined;
  const table = JSON.parse(result.stdout).partitiontable as SfdiskTable;
  if (table.label !== 'gpt' && table.label !== 'dos') return undefined;
  const partitions: PartitionEntry[] = [];
  for (const entry of table.partitions ?? []) {
    const number = partitionNumber(device, entry.node);
    const fsLabel = await filesystemLabel(device, entry.start * sectorSize, entry.size * sectorSize);
    partitions.push({
      number,
      start: entry.start,
      sectors: entry.size,
      ...(entry.name ? { name: entry.name } : {}),
      ...(fsLabel ? { fsLabel } : {}),
    });
  }
  const gpt = table.label === 'gpt';
  return {
    label: table.label,
    sectorSize,
    totalSectors,
    firstUsable: gpt ? table.firstlba! : 1,
    lastUsable: gpt ? table.lastlba! : totalSectors - 1,
    ...(gpt ? { backupLba: await gptBackupLba(device, sectorSize) } : {}),
    partitions,
  };
}

export interface DiskGeometry {
  sectorSize: number;
  totalSectors: number;
}

/** A block device's logical sector size and size; a regular file counts as a 512-byte-sector disk. */
export async function diskGeometry(device: string): Promise<DiskGeometry> {
  const info = await stat(device);
  if (!info.isBlockDevice()) return { sectorSize: 512, totalSectors: Math.floor(info.size / 512) };
  const { stdout } = await exec('blockdev', ['--getss', '--getsize64', device]);
  const [sectorSize, bytes] = stdout.trim().split(/\s+/).map(Number);
  return { sectorSize: sectorSize!, totalSectors: Math.floor(bytes! / sectorSize!) };
}

interface SfdiskTable {
  label: string;
  firstlba?: number;
  lastlba?: number;
  partitions?: { node: string; start: number; size: number; name?: string }[];
}

/** sfdisk names partitions like the kernel would (sda1, loop0p1, disk.img1); the number is the tail. */
function partitionNumber(device: string, node: string): number {
  const match = /(\d+)$/.exec(node.slice(device.length).replace(/^p/, ''));
  if (!match) throw new Error(`cannot tell the partition number of ${node} on ${device}`);
  return Number(match[1]);
}

async function filesystemLabel(device: string, offset: number, size: number): Promise<string | undefined> {
  const result = await exec(
    'blkid',
    ['-p', '-O', String(offset), '-S', String(size), '-s', 'LABEL', '-o', 'value', device],
    {
      reject: false,
    },
  );
  const label = result.exitCode === 0 ? result.stdout.trim() : '';
  return label === '' ? undefined : label;
}

/** The primary GPT header (LBA 1) records where the backup header is, at byte 32. */
async function gptBackupLba(device: string, sectorSize: number): Promise<number> {
  const handle = await open(device, 'r');
  try {
    const header = Buffer.alloc(92);
    await handle.read(header, 0, header.length, sectorSize);
    if (header.toString('latin1', 0, 8) !== 'EFI PART') return 0;
    return Number(header.readBigUInt64LE(32));
  } finally {
    await handle.close();
  }
}
