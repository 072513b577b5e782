// An image's partition table read from its decoded guest bytes, before anything is written: for
// the sector-size checks (an MBR has no sector size of its own: it is told from where its
// partitions fit and what they hold), the config drive's plan and the EFI system partition.
// Everything is bounds-checked: the table comes from an untrusted image.
import { detectFormat, gptSectorSize } from './detect.ts';
import { bufferSource, type GuestReader } from './guest.ts';

export interface ImagePartition {
  /** GPT entry number, or MBR primary slot (1-4). */
  readonly number: number;
  readonly start: number;
  readonly sectors: number;
  /** GPT type GUID (upper case), or the MBR type byte as two hex digits. */
  readonly type: string;
  /** GPT partition name. */
  readonly name?: string;
}

export interface ImageTable {
  readonly label: 'gpt' | 'dos';
  /** GPT: the sector size its header is at; MBR: the one its partitions fit, or undefined if both would. */
  readonly sectorSize: 512 | 4096 | undefined;
  readonly partitions: readonly ImagePartition[];
  /** GPT: the header's first usable sector and entry array geometry. */
  readonly gpt?: { readonly firstUsable: number; readonly entryCount: number; readonly entrySize: number };
}

export const ESP_GUID = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
export const MBR_ESP_TYPE = 'ef';
const MBR_EXTENDED = new Set(['05', '0f', '85']);
const MBR_PROTECTIVE = 'ee';
/** What is read at first: MBR, GPT header and a 128-entry array at either sector size. */
export const TABLE_BYTES = 64 * 1024;
/** Enough for every signature detect.ts looks for at the start of a filesystem (btrfs's is the furthest, at 64 KiB). */
export const PROBE_BYTES = 0x10048;
/** GPT arrays byoi reads: at most 1 MiB of entries. */
const MAX_ENTRY_BYTES = 1024 * 1024;

/** The image's table, or undefined when it has none (or only a protective MBR without a GPT). */
export async function readImageTable(guest: GuestReader): Promise<ImageTable | undefined> {
  const [head] = await guest.read([{ offset: 0, length: TABLE_BYTES }]);
  const gptSize = gptSectorSize(bufferSource(head!));
  if (gptSize !== undefined) return readGpt(guest, head!, gptSize);
  const primaries = mbrPrimaries(head!);
  if (!primaries || primaries.length === 0 || primaries.some((p) => p.type === MBR_PROTECTIVE)) return undefined;
  return { label: 'dos', sectorSize: await mbrSectorSize(guest, primaries), partitions: primaries };
}

function mbrPrimaries(head: Buffer): ImagePartition[] | undefined {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return undefined;
  const partitions: ImagePartition[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const entry = head.subarray(446 + 16 * slot, 462 + 16 * slot);
    const type = entry[4]!;
    const start = entry.readUInt32LE(8);
    const sectors = entry.readUInt32LE(12);
    if (type === 0 || sectors === 0) continue;
    partitions.push({ number: slot + 1, start, sectors, type: type.toString(16).padStart(2, '0') });
  }
  return partitions;
}

/**
 * The sector size an MBR was made for: the one at which every partition lies inside the image; when
 * both do, the one at which some partition starts with something recognisable and none does at the
 * other (a filesystem found at the other size could be another partition's, so then it is not told).
 */
async function mbrSectorSize(
  guest: GuestReader,
  partitions: readonly ImagePartition[],
): Promise<512 | 4096 | undefined> {
  const fits = (size: number) => partitions.every((p) => (p.start + p.sectors) * size <= guest.size);
  const fits512 = fits(512);
  const fits4096 = fits(4096);
  if (fits512 !== fits4096) return fits512 ? 512 : 4096;
  if (!fits512) return undefined;
  const data = partitions.filter((p) => !MBR_EXTENDED.has(p.type));
  const heads = await guest.read(
    data.flatMap((p) => [512, 4096].map((size) => ({ offset: p.start * size, length: PROBE_BYTES }))),
  );
  const known = (bytes: Buffer) => detectFormat(bufferSource(bytes)).format !== 'unknown';
  const k512 = heads.some((bytes, i) => i % 2 === 0 && known(bytes));
  const k4096 = heads.some((bytes, i) => i % 2 === 1 && known(bytes));
  return k512 === k4096 ? undefined : k512 ? 512 : 4096;
}

async function readGpt(guest: GuestReader, head: Buffer, sectorSize: 512 | 4096): Promise<ImageTable | undefined> {
  const header = head.subarray(sectorSize, sectorSize + 92);
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const size = header.readUInt32LE(84);
  if (
    size < 128 ||
    size % 8 !== 0 ||
    count === 0 ||
    count * size > MAX_ENTRY_BYTES ||
    entriesLba * sectorSize + count * size > guest.size
  ) {
    return { label: 'gpt', sectorSize, partitions: [] };
  }
  const [array] = await guest.read([{ offset: entriesLba * sectorSize, length: count * size }]);
  const partitions: ImagePartition[] = [];
  for (let i = 0; i < count; i++) {
    const entry = array!.subarray(i * size, i * size + 128);
    if (entry.subarray(0, 16).every((b) => b === 0)) continue;
    const first = entry.readBigUInt64LE(32);
    const last = entry.readBigUInt64LE(40);
    if (last < first || last >= 2n ** 53n) continue;
    const name = entry.toString('utf16le', 56, 128).replace(/\0.*$/s, '');
    partitions.push({
      number: i + 1,
      start: Number(first),
      sectors: Number(last - first) + 1,
      type: guidText(entry.subarray(0, 16)),
      ...(name && { name }),
    });
  }
  const firstUsable = Number(header.readBigUInt64LE(40));
  return { label: 'gpt', sectorSize, partitions, gpt: { firstUsable, entryCount: count, entrySize: size } };
}

/** A GUID's bytes as text: the first three fields are little-endian. */
function guidText(b: Buffer): string {
  const hex = (bytes: Buffer) => bytes.toString('hex');
  const le = (from: number, to: number) => hex(Buffer.from(b.subarray(from, to)).reverse());
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`.toUpperCase();
}

/** The label of a FAT or ISO 9660 filesystem (what cloud-init's config-2 search looks at) at the start of `bytes`. */
export function filesystemLabel(bytes: Buffer): string | undefined {
  if (bytes.length >= 0x8028 + 32 && bytes.toString('latin1', 0x8001, 0x8006) === 'CD001') {
    return bytes.toString('latin1', 0x8028, 0x8028 + 32).trim() || undefined;
  }
  if (bytes.length < 512 || bytes[510] !== 0x55 || bytes[511] !== 0xaa) return undefined;
  // FAT32 (16-bit FAT size 0) keeps its extended BPB at 64, FAT12/16 at 36; signature 0x29: a label follows.
  const [signature, label] = bytes.readUInt16LE(22) === 0 ? [66, 71] : [38, 43];
  if (bytes[signature] !== 0x29) return undefined;
  const text = bytes.toString('latin1', label, label + 11).trim();
  return text !== '' && text !== 'NO NAME' ? text : undefined;
}
