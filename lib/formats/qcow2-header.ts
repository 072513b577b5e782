// The qcow2 header and its extensions (qemu docs/interop/qcow2.txt), validated against everything a
// self-contained conversion cannot honour. 64-bit fields are read as BigInt and range-checked before
// they become numbers, so no value ever loses bits.
import type { ImageSource } from '../source/image-source.ts';
import {
  qcow2BackingFile,
  qcow2BadClusterBits,
  qcow2BadHeaderExtension,
  qcow2BadHeaderLength,
  qcow2BadMagic,
  qcow2BadRefcountOrder,
  qcow2BadVersion,
  qcow2CompressionBitMismatch,
  qcow2Corrupt,
  qcow2Encrypted,
  qcow2ExtendedL2SmallClusters,
  qcow2ExternalDataFile,
  qcow2RawDataFileWithoutDataFile,
  qcow2L1TooLarge,
  qcow2L1TooSmall,
  qcow2Misaligned,
  qcow2BeyondEnd,
  qcow2TooShort,
  qcow2UnknownCompression,
  qcow2UnknownFeatures,
  qcow2VirtualSizeTooBig,
} from '../errors.ts';

export type Qcow2Compression = 'zlib' | 'zstd';

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSize: number;
  /** The header's size floored to a multiple of 512, as qemu does (a partial sector is unreadable). */
  readonly virtualSize: number;
  /** The size field as stored, for display. */
  readonly storedSize: number;
  readonly l1Offset: number;
  readonly l1Size: number;
  /** L1 entries that cover the virtual size; entries past it are ignored (snapshot VM state). */
  readonly l1Needed: number;
  readonly l2Entries: number;
  readonly extendedL2: boolean;
  readonly compression: Qcow2Compression;
  readonly dirty: boolean;
  readonly lazyRefcounts: boolean;
  readonly refcountBits: number;
  readonly snapshots: number;
}

const MAGIC = 0x514649fb; // "QFI\xfb"
const V2_HEADER_LENGTH = 72;
const V3_MIN_HEADER_LENGTH = 104;
const MAX_L1_ENTRIES = 4 * 1024 * 1024; // 32 MiB of L1, qemu's QCOW_MAX_L1_SIZE
/**
 * Offsets are JavaScript numbers, exact up to 2^53: with 2^52, every offset the pipeline computes
 * (a virtual size plus a cluster, an L2 table's span, a batch) stays exact.
 */
const MAX_VIRTUAL_SIZE = 2n ** 52n;

const INCOMPAT_DIRTY = 1n;
const INCOMPAT_CORRUPT = 2n;
const INCOMPAT_DATA_FILE = 4n;
const INCOMPAT_COMPRESSION = 8n;
const INCOMPAT_EXTENDED_L2 = 16n;
const INCOMPAT_KNOWN = 31n;
const COMPAT_LAZY_REFCOUNTS = 1n;
const AUTOCLEAR_RAW_DATA_FILE = 2n;

const EXT_FEATURE_TABLE = 0x6803f857;
const EXT_DATA_FILE = 0x44415441;
const FEATURE_ENTRY_SIZE = 48;

interface Extensions {
  /** Names of incompatible feature bits, from the feature name table. */
  incompatibleNames: Map<number, string>;
  dataFile: string | undefined;
}

/** Bytes as printable text for a message: control characters and quotes become '?'. */
function printable(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes
    .subarray(0, end < 0 ? bytes.length : end)
    .toString('latin1')
    .replace(/[\x00-\x1f\x7f-\x9f"]/g, '?');
}

/** Walks the header extensions between `start` and `end`: type 0 ends the list. */
function readExtensions(source: ImageSource, start: number, end: number): Extensions {
  const found: Extensions = { incompatibleNames: new Map(), dataFile: undefined };
  let at = start;
  while (at + 8 <= end) {
    const head = source.read(at, 8);
    const type = head.readUInt32BE(0);
    const length = head.readUInt32BE(4);
    // Checked before the end marker too, as qemu does.
    if (length > end - at - 8) throw qcow2BadHeaderExtension(at);
    if (type === 0) break;
    const data = source.read(at + 8, length);
    if (type === EXT_FEATURE_TABLE) {
      for (let entry = 0; entry + FEATURE_ENTRY_SIZE <= length; entry += FEATURE_ENTRY_SIZE) {
        if (data[entry] === 0)
          found.incompatibleNames.set(
            data[entry + 1]!,
            printable(data.subarray(entry + 2, entry + FEATURE_ENTRY_SIZE)),
          );
      }
    } else if (type === EXT_DATA_FILE) {
      found.dataFile = printable(data);
    }
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return found;
}

function unknownFeatureNames(bits: bigint, names: Map<number, string>): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((bits >> BigInt(bit)) & 1n) out.push(names.get(bit) || `Unknown incompatible feature: ${bit}`);
  }
  return out;
}

export function parseQcow2Header(source: ImageSource): Qcow2Header {
  const fileSize = source.size;
  if (fileSize < V2_HEADER_LENGTH) throw qcow2TooShort(fileSize);
  const fixed = source.read(0, V2_HEADER_LENGTH);
  if (fixed.readUInt32BE(0) !== MAGIC) throw qcow2BadMagic();
  const version = fixed.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw qcow2BadVersion(version);
  const clusterBits = fixed.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw qcow2BadClusterBits(clusterBits);
  const clusterSize = 2 ** clusterBits;

  let headerLength = V2_HEADER_LENGTH;
  let incompatible = 0n;
  let compatible = 0n;
  let autoclear = 0n;
  let refcountOrder = 4;
  let compressionType = 0;
  if (version === 3) {
    if (fileSize < V3_MIN_HEADER_LENGTH) throw qcow2TooShort(fileSize);
    const v3 = source.read(0, V3_MIN_HEADER_LENGTH);
    headerLength = v3.readUInt32BE(100);
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize) {
      throw qcow2BadHeaderLength(headerLength, clusterSize);
    }
    if (headerLength > fileSize) throw qcow2TooShort(fileSize);
    incompatible = v3.readBigUInt64BE(72);
    compatible = v3.readBigUInt64BE(80);
    autoclear = v3.readBigUInt64BE(88);
    refcountOrder = v3.readUInt32BE(96);
    if (headerLength > V3_MIN_HEADER_LENGTH) compressionType = source.read(V3_MIN_HEADER_LENGTH, 1)[0]!;
  }

  const backingOffset = fixed.readBigUInt64BE(8);
  const backingSize = fixed.readUInt32BE(16);
  const extensionsEnd = Math.min(
    backingOffset !== 0n && backingOffset < BigInt(clusterSize) ? Number(backingOffset) : clusterSize,
    fileSize,
  );
  const extensions = readExtensions(source, headerLength, extensionsEnd);

  const unknown = incompatible & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) throw qcow2UnknownFeatures(unknownFeatureNames(unknown, extensions.incompatibleNames));
  if (incompatible & INCOMPAT_CORRUPT) throw qcow2Corrupt();
  if (incompatible & INCOMPAT_DATA_FILE) throw qcow2ExternalDataFile(extensions.dataFile ?? '(name not recorded)');
  if (autoclear & AUTOCLEAR_RAW_DATA_FILE) throw qcow2RawDataFileWithoutDataFile();
  const cryptMethod = fixed.readUInt32BE(32);
  if (cryptMethod !== 0) throw qcow2Encrypted(cryptMethod);
  if (backingOffset !== 0n) {
    const readable =
      backingSize <= 1023 && backingOffset + BigInt(backingSize) <= BigInt(Math.min(clusterSize, fileSize));
    throw qcow2BackingFile(readable ? printable(source.read(Number(backingOffset), backingSize)) : '(name unreadable)');
  }
  if (refcountOrder > 6) throw qcow2BadRefcountOrder(refcountOrder);
  if (compressionType > 1) throw qcow2UnknownCompression(compressionType);
  const compression: Qcow2Compression = compressionType === 1 ? 'zstd' : 'zlib';
  if ((compression === 'zstd') !== ((incompatible & INCOMPAT_COMPRESSION) !== 0n))
    throw qcow2CompressionBitMismatch(compression);
  const extendedL2 = (incompatible & INCOMPAT_EXTENDED_L2) !== 0n;
  if (extendedL2 && clusterBits < 14) throw qcow2ExtendedL2SmallClusters(clusterSize);

  const storedSize = fixed.readBigUInt64BE(24);
  if (storedSize > MAX_VIRTUAL_SIZE) throw qcow2VirtualSizeTooBig(storedSize);
  const virtualSize = Number(storedSize - (storedSize % 512n));

  const l2Entries = clusterSize / (extendedL2 ? 16 : 8);
  const l1Size = fixed.readUInt32BE(36);
  const l1Needed = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (l1Size > MAX_L1_ENTRIES) throw qcow2L1TooLarge(l1Size);
  if (l1Size < l1Needed) throw qcow2L1TooSmall(l1Size, l1Needed);
  const l1Offset = fixed.readBigUInt64BE(40);
  // qemu reads the whole L1 table at open, so a table cut short by the end of the file is refused
  // even where the virtual size does not reach the missing entries.
  if (l1Size > 0) {
    if (l1Offset % BigInt(clusterSize) !== 0n) throw qcow2Misaligned('the L1 table', l1Offset, clusterSize);
    if (l1Offset + BigInt(8 * l1Size) > BigInt(fileSize)) throw qcow2BeyondEnd('the L1 table', l1Offset, fileSize);
  }

  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    storedSize: Number(storedSize),
    l1Offset: Number(l1Offset),
    l1Size,
    l1Needed,
    l2Entries,
    extendedL2,
    compression,
    dirty: (incompatible & INCOMPAT_DIRTY) !== 0n,
    lazyRefcounts: (compatible & COMPAT_LAZY_REFCOUNTS) !== 0n,
    refcountBits: 2 ** refcountOrder,
    snapshots: fixed.readUInt32BE(60),
  };
}
