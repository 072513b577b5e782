// The hosted sparse extent header of a VMDK (VMware's Virtual Disk Format 1.1, "Hosted Sparse
// Extents"), the embedded descriptor, and the grain directory: everything a decoder needs, each
// bound checked against the file before a grain is read. Integers are little-endian.
import { vmdkBad, vmdkUnsupported } from '../errors.ts';
import type { ImageSource } from '../source/image-source.ts';

export const SECTOR = 512;
/** gdOffset of a stream-optimized header whose grain directory is at the end: the footer says where. */
const GD_AT_END = 0xffffffffffffffffn;
const FLAG_NEWLINE_TEST = 1 << 0;
const FLAG_ZEROED_GRAIN_GTE = 1 << 2;
const FLAG_COMPRESSED = 1 << 16;
const FLAG_MARKERS = 1 << 17;
/** Marker types of a stream-optimized extent. */
const MARKER_FOOTER = 3;

export interface VmdkHeader {
  readonly version: number;
  readonly createType: string;
  readonly capacity: number;
  readonly grainSize: number;
  readonly gtEntries: number;
  /** File offset of the grain directory. */
  readonly gdOffset: number;
  /** Grain directory entries: one per grain table. */
  readonly gdEntries: number;
  readonly compressed: boolean;
  readonly markers: boolean;
  /** A grain table entry of 1 means a grain of zeros. */
  readonly zeroedGrainEntries: boolean;
}

/** A u64 as a number, or undefined above 2^53. */
function u64(bytes: Buffer, at: number): number | undefined {
  const value = bytes.readBigUInt64LE(at);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}

function fields(bytes: Buffer) {
  return {
    magic: bytes.toString('latin1', 0, 4),
    version: bytes.readUInt32LE(4),
    flags: bytes.readUInt32LE(8),
    capacity: u64(bytes, 12),
    grainSize: u64(bytes, 20),
    descriptorOffset: u64(bytes, 28),
    descriptorSize: u64(bytes, 36),
    gtEntries: bytes.readUInt32LE(44),
    gdAtEnd: bytes.readBigUInt64LE(56) === GD_AT_END,
    gdOffset: u64(bytes, 56),
    newlines: bytes.subarray(73, 77).equals(Buffer.from('\n \r\n', 'latin1')),
    compressAlgorithm: bytes.readUInt16LE(77),
  };
}

/** createType from the descriptor text; quotes are optional (OVF Tool writes it bare). */
function descriptorValue(text: string, key: string): string | undefined {
  const match = new RegExp(`^\\s*${key}\\s*=\\s*"?([^"\\r\\n]*)"?\\s*$`, 'm').exec(text);
  return match?.[1]?.trim();
}

function readDescriptor(source: ImageSource, offset: number | undefined, size: number | undefined): string {
  if (!offset || !size) return '';
  // A descriptor is a few hundred bytes; qemu caps it at 1 MiB.
  if (size > 2048 || offset * SECTOR + size * SECTOR > source.size)
    throw vmdkBad('the embedded descriptor lies outside the file');
  const text = source.read(offset * SECTOR, size * SECTOR).toString('latin1');
  const nul = text.indexOf('\0');
  return nul >= 0 ? text.slice(0, nul) : text;
}

export function parseVmdkHeader(source: ImageSource): VmdkHeader {
  if (source.size < SECTOR) throw vmdkBad(`the file is ${source.size} bytes, too short to hold a header`);
  let header = fields(source.read(0, SECTOR));
  if (header.magic !== 'KDMV') throw vmdkBad('the file does not start with the sparse extent magic "KDMV"');
  if (header.version < 1 || header.version > 3)
    throw vmdkUnsupported(`version ${header.version} of the sparse extent header (byoi reads 1 to 3)`);
  const descriptor = readDescriptor(source, header.descriptorOffset, header.descriptorSize);
  if (header.gdAtEnd) {
    // A stream: the footer (a copy of the header with the real gdOffset) is in the second-last
    // sector, after its marker and before the end-of-stream marker.
    if (source.size < 4 * SECTOR) throw vmdkBad('the stream is too short to end with a footer');
    const marker = source.read(source.size - 3 * SECTOR, SECTOR);
    if (marker.readUInt32LE(8) !== 0 || marker.readUInt32LE(12) !== MARKER_FOOTER)
      throw vmdkBad('the grain directory is "at the end" but the stream does not end with a footer (truncated?)');
    header = fields(source.read(source.size - 2 * SECTOR, SECTOR));
    if (header.magic !== 'KDMV' || header.gdAtEnd)
      throw vmdkBad('the footer is not a sparse extent header with a grain directory offset');
  }
  const { flags, capacity, grainSize, gtEntries, gdOffset } = header;
  if ((flags & FLAG_NEWLINE_TEST) !== 0 && !header.newlines)
    throw vmdkBad('its newline test characters are altered (copied in text mode?)');
  const compressed = (flags & FLAG_COMPRESSED) !== 0;
  if (compressed && header.compressAlgorithm !== 1)
    throw vmdkUnsupported(`compression algorithm ${header.compressAlgorithm} (byoi reads 1, deflate)`);
  if (capacity === undefined || capacity * SECTOR > Number.MAX_SAFE_INTEGER)
    throw vmdkBad('its capacity is above 2^53 bytes');
  // Grains of a power-of-two number of sectors up to 2 MiB, at most 512 entries per table (qemu: 512 exactly).
  if (grainSize === undefined || grainSize < 1 || grainSize > 4096 || (grainSize & (grainSize - 1)) !== 0)
    throw vmdkBad(`its grain size of ${grainSize ?? 'over 2^53'} sectors is not a power of two from 1 to 4096`);
  if (gtEntries < 1 || gtEntries > 512) throw vmdkBad(`it has ${gtEntries} entries per grain table (1 to 512 allowed)`);
  const createType = descriptorValue(descriptor, 'createType') ?? (compressed ? 'streamOptimized' : 'monolithicSparse');
  if (createType !== 'streamOptimized' && createType !== 'monolithicSparse')
    throw vmdkUnsupported(
      `the disk type "${createType}" (byoi reads monolithicSparse and streamOptimized, one file each)`,
    );
  const parent = descriptorValue(descriptor, 'parentCID');
  if (parent !== undefined && parent.toLowerCase() !== 'ffffffff')
    throw vmdkUnsupported('a delta disk that needs its parent disk; deploy a self-contained image');
  const grains = Math.ceil(capacity / grainSize);
  const gdEntries = Math.ceil(grains / gtEntries);
  if (gdOffset === undefined || gdOffset === 0 || gdOffset * SECTOR + gdEntries * 4 > source.size)
    throw vmdkBad(`its grain directory (${gdEntries} entries) lies outside the file`);
  return {
    version: header.version,
    createType,
    capacity,
    grainSize,
    gtEntries,
    gdOffset: gdOffset * SECTOR,
    gdEntries,
    compressed,
    markers: (flags & FLAG_MARKERS) !== 0,
    zeroedGrainEntries: (flags & FLAG_ZEROED_GRAIN_GTE) !== 0,
  };
}
