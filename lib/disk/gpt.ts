// After the image is written: for a GPT, move the backup header and table to the end of the disk
// (the image was smaller than the disk) and check that sgdisk finds no problem left; then make the
// kernel read the new partition table.
import { open } from 'node:fs/promises';
import { exec } from '../system/exec.ts';
import { gptFixFailed, rereadFailed } from '../errors.ts';

/** BLKRRPART, or partx when the kernel refuses it (loop devices attached without partition scan). */
export async function rereadPartitionTable(device: string): Promise<void> {
  const ioctl = await exec('blockdev', ['--rereadpt', device], { reject: false });
  if (ioctl.exitCode === 0) return;
  const partx = await exec('partx', ['-u', device], { reject: false });
  if (partx.exitCode === 0) return;
  throw rereadFailed(device, { detail: `blockdev: ${ioctl.stderr.trim()}; partx: ${partx.stderr.trim()}` });
}

/**
 * The GPT header at LBA 1 (at the disk's logical sector size): where it says its backup lies, or
 * undefined when LBA 1 holds no GPT header ("EFI PART").
 */
async function backupHeaderLba(device: string, sectorSize: number): Promise<bigint | undefined> {
  const handle = await open(device, 'r');
  try {
    // Signature (8 bytes), revision, header size, CRC, reserved, MyLBA, AlternateLBA (at 32).
    const header = Buffer.alloc(40);
    const { bytesRead } = await handle.read(header, 0, header.length, sectorSize);
    if (bytesRead < header.length || header.toString('latin1', 0, 8) !== 'EFI PART') return undefined;
    return header.readBigUInt64LE(32);
  } finally {
    await handle.close();
  }
}

interface Verdict {
  readonly clean: boolean;
  readonly report: string;
}

/**
 * What sgdisk says of a damaged header or table that it mended in memory only, or of a disk whose
 * GPT it could not read at all (it then starts an empty one): either way it still reports "No
 * problems found", of its copy in memory, while the disk keeps the damage. (Only asked of a disk
 * whose LBA 1 says "EFI PART".)
 */
const MENDED_IN_MEMORY = /corrupt GPT|CRCs don't match|invalid (main|backup) GPT header|Creating new GPT entries/i;

/** `sgdisk -v`: exits 0 whatever it finds, so its words tell. */
async function verify(device: string): Promise<Verdict> {
  const result = await exec('sgdisk', ['-v', device], { reject: false });
  const report = result.all.replace(/\s+/g, ' ').trim();
  const clean = result.exitCode === 0 && report.includes('No problems found') && !MENDED_IN_MEMORY.test(report);
  return { clean, report };
}

export type GptOutcome = 'no-gpt' | 'clean' | 'moved-backup';

/**
 * For a GPT disk of `deviceBytes`: verify; when sgdisk reports a problem (the backup header not at
 * the end of the disk, or a backup table to regenerate), `sfdisk --relocate gpt-bak-std` rewrites
 * the backup at the end, then verify again. Any problem left fails with OVH's sentence. Where the
 * primary header itself says its backup is not at the disk's last LBA (an image smaller than the
 * disk: nearly every deployment), that first verdict is known and not asked for.
 *
 * Not `sgdisk -e`, which writes the same structures (all but the protective MBR's CHS end field,
 * which sfdisk sets to FF FF FF as UEFI allows) but sleeps a second after writing (gptfdisk's DiskSync).
 * The kernel is not told: the caller re-reads the table afterwards (rereadPartitionTable).
 */
export async function fixGpt(device: string, sectorSize: number, deviceBytes: number): Promise<GptOutcome> {
  const backup = await backupHeaderLba(device, sectorSize);
  if (backup === undefined) return 'no-gpt';
  const lastLba = BigInt(Math.floor(deviceBytes / sectorSize) - 1);
  if (backup === lastLba && (await verify(device)).clean) return 'clean';
  // --no-tell-kernel: sfdisk would sleep 0.25 s, re-read the table and sync() every filesystem of the
  // machine; it fsyncs the device either way, and the caller has the kernel re-read the table once.
  const move = await exec('sfdisk', ['--no-tell-kernel', '--relocate', 'gpt-bak-std', device], { reject: false });
  const after = await verify(device);
  if (move.exitCode !== 0 || !after.clean) {
    throw gptFixFailed({
      detail: `sfdisk --relocate gpt-bak-std: ${move.all.replace(/\s+/g, ' ').trim()}; sgdisk -v: ${after.report}`,
    });
  }
  return 'moved-backup';
}
