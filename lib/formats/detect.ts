// What a file is, by its content only (never its name): used to pick a decoder and to say
// clearly what an unusable file is. Each probe reads a few bytes at fixed offsets.
import type { DetectedFormat } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';

export interface Detection {
  readonly format: DetectedFormat;
  /** A short phrase for messages, e.g. "an ext4 filesystem". */
  readonly description: string;
}

/** Bytes [offset, offset + length), or undefined when the source is shorter. */
function peek(source: ImageSource, offset: number, length: number): Buffer | undefined {
  return offset >= 0 && offset + length <= source.size ? source.read(offset, length) : undefined;
}

function hasBytes(source: ImageSource, offset: number, expected: Buffer | string): boolean {
  const want = typeof expected === 'string' ? Buffer.from(expected, 'latin1') : expected;
  const got = peek(source, offset, want.length);
  return got !== undefined && got.equals(want);
}

const bytes = (...values: number[]): Buffer => Buffer.from(values);

/** The probes, most specific first; the first that matches names the file. */
const probes: ReadonlyArray<(source: ImageSource) => Detection | undefined> = [
  (s) => (hasBytes(s, 0, 'QFI\xfb') ? { format: 'qcow2', description: 'a qcow2 image' } : undefined),
  probeVmdk,
  (s) =>
    hasBytes(s, 0, bytes(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe)) ? filesystem('a LUKS encrypted volume') : undefined,
  (s) =>
    hasBytes(s, 0, bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00))
      ? { format: 'xz', description: 'an xz-compressed file' }
      : undefined,
  probeZstd,
  (s) =>
    hasBytes(s, 0, bytes(0x1f, 0x8b, 0x08)) ? { format: 'gzip', description: 'a gzip-compressed file' } : undefined,
  probeBzip2,
  (s) => (hasBytes(s, 0, 'XFSB') ? filesystem('an xfs filesystem') : undefined),
  (s) => (hasBytes(s, 257, 'ustar') ? { format: 'tar', description: 'a tar archive (an OVA?)' } : undefined),
  probeIso9660,
  probeGpt,
  probeBootSectorFilesystem,
  probeMbr,
  probeExt,
  (s) => (hasBytes(s, 0x10040, '_BHRfS_M') ? filesystem('a btrfs filesystem') : undefined),
  probeSwap,
  probeLvm,
  probeMd,
];

export function detectFormat(source: ImageSource): Detection {
  for (const probe of probes) {
    const found = probe(source);
    if (found) return found;
  }
  return { format: 'unknown', description: source.size === 0 ? 'an empty file' : 'a file of unknown format' };
}

function filesystem(description: string): Detection {
  return { format: 'filesystem', description };
}

function probeVmdk(source: ImageSource): Detection | undefined {
  if (hasBytes(source, 0, 'KDMV')) return { format: 'vmdk', description: 'a VMDK image' };
  if (hasBytes(source, 0, 'COWD')) return { format: 'vmdk', description: 'a VMDK image (ESX sparse)' };
  const head = peek(source, 0, Math.min(source.size, 1024))?.toString('latin1') ?? '';
  if (/^\s*# Disk DescriptorFile/.test(head) || /^\s*createType\s*=/m.test(head)) {
    return { format: 'vmdk', description: 'a VMDK descriptor file' };
  }
  return undefined;
}

function probeZstd(source: ImageSource): Detection | undefined {
  const magic = peek(source, 0, 4)?.readUInt32LE(0);
  if (magic === undefined) return undefined;
  // A zstd frame, or a skippable frame (0x184D2A50..5F) that a zstd stream may start with.
  if (magic === 0xfd2fb528 || (magic >= 0x184d2a50 && magic <= 0x184d2a5f)) {
    return { format: 'zstd', description: 'a zstd-compressed file' };
  }
  return undefined;
}

function probeBzip2(source: ImageSource): Detection | undefined {
  const head = peek(source, 0, 10);
  if (!head || head.toString('latin1', 0, 3) !== 'BZh' || head[3]! < 0x31 || head[3]! > 0x39) return undefined;
  // Block magic (pi) or end-of-stream magic (sqrt pi) follows the header.
  const next = head.subarray(4, 10).toString('hex');
  return next === '314159265359' || next === '177245385090'
    ? { format: 'bzip2', description: 'a bzip2-compressed file' }
    : undefined;
}

function probeIso9660(source: ImageSource): Detection | undefined {
  if (!hasBytes(source, 0x8001, 'CD001')) return undefined;
  const hybrid = hasBytes(source, 510, bytes(0x55, 0xaa));
  return {
    format: 'iso9660',
    description: hybrid ? 'a hybrid ISO 9660 image (with a partition table)' : 'an ISO 9660 image',
  };
}

/** The logical sector size a GPT in this image was made for, or undefined if it has no GPT. */
export function gptSectorSize(source: ImageSource): 512 | 4096 | undefined {
  for (const sectorSize of [512, 4096] as const) {
    const header = peek(source, sectorSize, 92);
    if (!header || header.toString('latin1', 0, 8) !== 'EFI PART') continue;
    const headerSize = header.readUInt32LE(12);
    // Revision 1.0 and a header size that fits a sector; the CRC is the deploy's to check.
    if (header.readUInt32LE(8) === 0x00010000 && headerSize >= 92 && headerSize <= sectorSize) return sectorSize;
  }
  return undefined;
}

function probeGpt(source: ImageSource): Detection | undefined {
  const sectorSize = gptSectorSize(source);
  if (sectorSize === undefined) return undefined;
  const sectors = sectorSize === 4096 ? ', 4096-byte sectors' : '';
  return { format: 'gpt', description: `a disk image with a GPT partition table${sectors}` };
}

/** FAT, exFAT and NTFS start with a boot sector that also ends in 0x55AA: tell them from an MBR. */
function probeBootSectorFilesystem(source: ImageSource): Detection | undefined {
  const sector = peek(source, 0, 512);
  if (!sector) return undefined;
  const oem = sector.toString('latin1', 3, 11);
  if (oem === 'NTFS    ') return filesystem('an NTFS filesystem');
  if (oem === 'EXFAT   ') return filesystem('an exFAT filesystem');
  if (sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const jump = sector[0] === 0xeb || sector[0] === 0xe9;
  const bytesPerSector = sector.readUInt16LE(11);
  const sectorsPerCluster = sector[13]!;
  const reserved = sector.readUInt16LE(14);
  const fats = sector[16]!;
  const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  const plausibleBpb =
    jump &&
    isPowerOfTwo(bytesPerSector) &&
    bytesPerSector >= 512 &&
    bytesPerSector <= 4096 &&
    isPowerOfTwo(sectorsPerCluster) &&
    reserved > 0 &&
    (fats === 1 || fats === 2);
  if (!plausibleBpb) return undefined;
  const label32 = sector.toString('latin1', 82, 87);
  const label16 = sector.toString('latin1', 54, 59);
  const kind = label32 === 'FAT32' ? 'FAT32' : label16 === 'FAT16' ? 'FAT16' : label16 === 'FAT12' ? 'FAT12' : 'FAT';
  return filesystem(`a ${kind} (vfat) filesystem`);
}

/** An MBR: the 0x55AA signature and at least one partition entry that makes sense, none that does not. */
function probeMbr(source: ImageSource): Detection | undefined {
  const sector = peek(source, 0, 512);
  if (!sector || sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  let used = 0;
  for (let i = 0; i < 4; i++) {
    const entry = sector.subarray(446 + 16 * i, 462 + 16 * i);
    const status = entry[0]!;
    const type = entry[4]!;
    const start = entry.readUInt32LE(8);
    const count = entry.readUInt32LE(12);
    if (status !== 0x00 && status !== 0x80) return undefined;
    if (type === 0) continue;
    if (start === 0 || count === 0) return undefined;
    used++;
  }
  return used > 0 ? { format: 'mbr', description: 'a disk image with an MBR partition table' } : undefined;
}

function probeExt(source: ImageSource): Detection | undefined {
  const sb = peek(source, 1024, 256);
  if (!sb || sb.readUInt16LE(0x38) !== 0xef53) return undefined;
  if (sb.readUInt32LE(0x18) > 6 || sb.readUInt32LE(0x4c) > 1) return undefined; // log block size, revision
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const EXT4_ONLY = [0x40, 0x80, 0x200, 0x10000]; // extents, 64bit, flex_bg, inline data
  if (hasFlag(incompat, 0x8)) return filesystem('an ext3/ext4 external journal');
  if (EXT4_ONLY.some((flag) => hasFlag(incompat, flag))) return filesystem('an ext4 filesystem');
  return filesystem(hasFlag(compat, 0x4) ? 'an ext3 filesystem' : 'an ext2 filesystem'); // has_journal
}

/** Whether the u32 `value` has the single-bit `flag` set (arithmetic: u32 values exceed 2^31). */
function hasFlag(value: number, flag: number): boolean {
  return Math.floor(value / flag) % 2 === 1;
}

function probeSwap(source: ImageSource): Detection | undefined {
  for (const pageSize of [4096, 8192, 16384, 65536]) {
    const magic = peek(source, pageSize - 10, 10)?.toString('latin1');
    if (magic === 'SWAPSPACE2' || magic === 'SWAP-SPACE') return filesystem('a swap area');
  }
  return undefined;
}

function probeLvm(source: ImageSource): Detection | undefined {
  for (let sector = 0; sector < 4; sector++) {
    if (hasBytes(source, sector * 512, 'LABELONE') && hasBytes(source, sector * 512 + 24, 'LVM2 001')) {
      return filesystem('an LVM2 physical volume');
    }
  }
  return undefined;
}

/** Linux md RAID member: v1.1 at 0, v1.2 at 4 KiB, v1.0 near the end, v0.90 in the last 64 KiB block. */
function probeMd(source: ImageSource): Detection | undefined {
  const magic = bytes(0xfc, 0x4e, 0x2b, 0xa9);
  const end4k = Math.floor(source.size / 4096) * 4096;
  const end64k = Math.floor(source.size / 65536) * 65536;
  const offsets = [0, 4096, end4k - 8192, end64k - 65536];
  return offsets.some((offset) => hasBytes(source, offset, magic)) ? filesystem('a Linux md RAID member') : undefined;
}
