// Random mutation of qcow2 images and the check of one run: shared by the CI-sized test
// (test/formats/qcow2-mutation.test.ts) and the long seeded campaign (scripts/qcow2-mutation-campaign.ts).
// The check of a run's extents is test/helpers/mutation-check.ts, shared with the VMDK test.
import { rmSync } from 'node:fs';
import { writeImage } from '../../lib/write/write-image.ts';
import { ByoiError } from '../../lib/errors.ts';
import { openQcow2 } from '../../lib/formats/qcow2.ts';
import { compressedExtent, isCompressed, type Layout } from './qcow2-layout.ts';
import { decodeMutant, type Outcome } from './mutation-check.ts';

/** Decoded runs with at most this much data are also written to a sparse file (the writer's arithmetic). */
const WRITTEN_DATA = 1024 * 1024;

/** [offset, width in bytes] of every header field. */
const FIELDS: [number, number][] = [
  [4, 4],
  [8, 8],
  [16, 4],
  [20, 4],
  [24, 8],
  [32, 4],
  [36, 4],
  [40, 8],
  [48, 8],
  [56, 4],
  [60, 4],
  [64, 8],
  [72, 8],
  [80, 8],
  [88, 8],
  [96, 4],
  [100, 4],
  [104, 1],
];

function interesting(random: () => number, width: number, current: bigint): bigint {
  const max = (1n << BigInt(8 * width)) - 1n;
  const choices = [
    0n,
    1n,
    max,
    max >> 1n,
    current + 1n,
    current - 1n,
    current + 512n,
    current - 512n,
    current * 2n,
    current / 2n,
    current ^ (1n << BigInt(Math.floor(random() * 8 * width))),
    1n << BigInt(Math.floor(random() * 8 * width)),
    BigInt(Math.floor(random() * 2 ** 32)) * (width > 4 ? BigInt(Math.floor(random() * 2 ** 32)) : 1n),
    2n ** 53n,
    2n ** 31n,
    2n ** 32n,
    9n,
    21n,
    22n,
    104n,
    112n,
    65536n,
    // Sizes at and around what byoi can represent and what the field can hold.
    2n ** 52n,
    2n ** 52n - 512n,
    2n ** 52n + 512n,
    2n ** 53n - 512n,
    2n ** 53n + 512n,
    2n ** 53n - 1n,
    2n ** 63n,
    2n ** 63n - 1n,
    2n ** 63n + 512n,
    2n ** 64n - 1n,
    2n ** 64n - 512n,
  ];
  return ((choices[Math.floor(random() * choices.length)]! % (max + 1n)) + max + 1n) % (max + 1n);
}

function writeUInt(bytes: Buffer, at: number, width: number, value: bigint): void {
  if (at + width > bytes.length) return;
  if (width === 8) bytes.writeBigUInt64BE(value, at);
  else if (width === 4) bytes.writeUInt32BE(Number(value), at);
  else bytes[at] = Number(value);
}

function readUInt(bytes: Buffer, at: number, width: number): bigint {
  if (at + width > bytes.length) return 0n;
  return width === 8 ? bytes.readBigUInt64BE(at) : width === 4 ? BigInt(bytes.readUInt32BE(at)) : BigInt(bytes[at]!);
}

/** Applies one random mutation; returns what it did, for the failure report. */
export function mutate(bytes: Buffer, layout: Layout, random: () => number): string {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const kind = Math.floor(random() * 7);
  if (kind === 0) {
    const [at, width] = pick(FIELDS);
    const value = interesting(random, width, readUInt(bytes, at, width));
    writeUInt(bytes, at, width, value);
    return `header field @${at} = ${value}`;
  }
  if (kind === 1) {
    const at = Math.floor(random() * Math.min(layout.clusterSize, 4096));
    bytes[at] = Math.floor(random() * 256);
    return `header byte @${at}`;
  }
  if (kind === 2) {
    const at = layout.l1Offset + 8 * Math.floor(random() * 4);
    const value = interesting(random, 8, readUInt(bytes, at, 8));
    writeUInt(bytes, at, 8, value);
    return `L1 entry @${at} = ${value}`;
  }
  if (kind === 3 && layout.l2.length > 0) {
    const entry = pick(layout.l2.filter((e) => e.word !== 0n || random() < 0.05));
    const at = layout.extendedL2 && random() < 0.4 ? entry.at + 8 : entry.at;
    const value = interesting(random, 8, readUInt(bytes, at, 8));
    writeUInt(bytes, at, 8, value);
    return `L2 word @${at} = ${value}`;
  }
  const compressed = layout.l2.filter(isCompressed);
  if (kind === 4 && compressed.length > 0) {
    // A compressed descriptor: flip one of its offset or length bits.
    const entry = pick(compressed);
    const bit = BigInt(Math.floor(random() * 62));
    writeUInt(bytes, entry.at, 8, entry.word ^ (1n << bit));
    return `compressed descriptor @${entry.at} bit ${bit}`;
  }
  if (kind === 5 && compressed.length > 0) {
    const { offset, length } = compressedExtent(layout, pick(compressed));
    const at = offset + Math.floor(random() * length);
    if (at < bytes.length) bytes[at] = Math.floor(random() * 256);
    return `compressed byte @${at}`;
  }
  const at = Math.floor(random() * bytes.length);
  bytes[at] = Math.floor(random() * 256);
  return `byte @${at}`;
}

/**
 * Decodes a mutated image; `writeTo`: a file path where a decoded image with little data is also
 * written, so that the writer meets whatever sizes the header check let through.
 */
export async function decode(bytes: Buffer, threads: number, writeTo?: string): Promise<Outcome> {
  return decodeMutant(
    bytes,
    (source) => openQcow2(source, { threads }),
    async (image, data, source) => {
      if (!(image.info.virtualSize <= 2 ** 52))
        throw new Error(`virtual size ${image.info.virtualSize} accepted, past 2^52`);
      if (writeTo && data <= WRITTEN_DATA) await writeChecked(openQcow2(source, { threads }), writeTo);
    },
  );
}

/** Writes the image to a sparse file: a refusal or the filesystem's own limit (EFBIG) is fine, a bug of byoi is not. */
async function writeChecked(image: ReturnType<typeof openQcow2>, path: string): Promise<void> {
  try {
    await writeImage(image, path);
  } catch (error) {
    if (!(error instanceof ByoiError) || error.message.startsWith('Internal error')) {
      throw new Error(
        `writing a decoded image of ${image.info.virtualSize} bytes: ${error instanceof ByoiError ? `${error.message} ${error.detail}` : (error as Error).stack}`,
        { cause: error },
      );
    }
  } finally {
    rmSync(path, { force: true });
  }
}
