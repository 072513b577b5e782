// A VMDK hosted sparse extent as a DiskImage: monolithicSparse (grains stored as they are) and
// streamOptimized (deflate grains behind markers, as OVAs carry them). Grains are found through
// the grain directory and tables, as qemu reads them: a stream whose directory is at its end is
// read through its footer. Every table, marker and grain is checked against the file when the
// image is opened; only the deflate data is checked later, as it is inflated.
import * as zlib from 'node:zlib';
import { vmdkBad } from '../errors.ts';
import { parseVmdkHeader, SECTOR, type VmdkHeader } from './vmdk-header.ts';
import type { DiskImage, Extent, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';

/** Longest run of contiguous stored grains or zeros handed on as one extent. */
const MAX_RUN = 16 * 1024 * 1024;
/** A compressed grain's marker: lba (u64) and size (u32), then the data. */
const MARKER = 12;

type Segment =
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'plain'; readonly offset: number; readonly length: number; readonly host: number }
  | {
      readonly kind: 'compressed';
      readonly offset: number;
      readonly length: number;
      readonly host: number;
      readonly size: number;
    };

interface Stats {
  allocatedBytes: number;
  compressedGrains: number;
}

const hex = (value: number): string => `0x${value.toString(16)}`;

/**
 * Guest grains in order, as segments; zero and contiguous stored grains merged up to MAX_RUN, stored
 * ones only within one block of the source's chunk size.
 */
function* grainSegments(source: ImageSource, h: VmdkHeader, stats?: Stats): Generator<Segment> {
  const grainBytes = h.grainSize * SECTOR;
  const size = h.capacity * SECTOR;
  const directory = source.read(h.gdOffset, h.gdEntries * 4);
  const tablesSeen = new Set<number>();
  // A merged stored run stays within one block of the source's cheapest read size, so it is no
  // longer than what a file source lends (a lone grain may straddle two: grains are at most 2 MiB).
  const view = source.chunkSize ?? MAX_RUN;
  const sameView = (from: number, to: number): boolean => Math.floor(from / view) === Math.floor((to - 1) / view);
  let pending: Segment | undefined;
  const push = function* (next: Segment): Generator<Segment> {
    if (pending && pending.offset + pending.length === next.offset && pending.length + next.length <= MAX_RUN) {
      if (pending.kind === 'zero' && next.kind === 'zero') {
        pending = { ...pending, length: pending.length + next.length };
        return;
      }
      if (
        pending.kind === 'plain' &&
        next.kind === 'plain' &&
        pending.host + pending.length === next.host &&
        sameView(pending.host, next.host + next.length)
      ) {
        pending = { ...pending, length: pending.length + next.length };
        return;
      }
    }
    if (pending) yield pending;
    pending = next;
  };
  for (let d = 0; d < h.gdEntries; d++) {
    const tableStart = d * h.gtEntries * grainBytes;
    const tableEnd = Math.min(size, tableStart + h.gtEntries * grainBytes);
    const tableSector = directory.readUInt32LE(d * 4);
    if (tableSector === 0) {
      yield* push({ kind: 'zero', offset: tableStart, length: tableEnd - tableStart });
      continue;
    }
    const tableOffset = tableSector * SECTOR;
    if (tableOffset + h.gtEntries * 4 > source.size)
      throw vmdkBad(
        `grain table ${d} at offset ${hex(tableOffset)} is beyond the end of the file (${source.size} bytes)`,
      );
    // Two directory entries sharing a table would make the work grow with the capacity, not the file.
    if (tablesSeen.has(tableOffset))
      throw vmdkBad(`grain table ${d} at offset ${hex(tableOffset)} is shared with another directory entry`);
    tablesSeen.add(tableOffset);
    const table = source.read(tableOffset, h.gtEntries * 4);
    for (let t = 0; t < h.gtEntries; t++) {
      const offset = tableStart + t * grainBytes;
      if (offset >= size) break;
      const length = Math.min(grainBytes, size - offset);
      const entry = table.readUInt32LE(t * 4);
      if (entry === 0 || (entry === 1 && h.zeroedGrainEntries)) {
        yield* push({ kind: 'zero', offset, length });
        continue;
      }
      const host = entry * SECTOR;
      if (!h.compressed) {
        if (host + length > source.size)
          throw vmdkBad(
            `the grain of guest offset ${hex(offset)} at file offset ${hex(host)} is beyond the end of the file (${source.size} bytes)`,
          );
        if (stats) stats.allocatedBytes += length;
        yield* push({ kind: 'plain', offset, length, host });
        continue;
      }
      yield* push(compressedGrain(source, h, offset, length, host));
      if (stats) {
        stats.allocatedBytes += length;
        stats.compressedGrains++;
      }
    }
  }
  if (pending) yield pending;
}

function compressedGrain(source: ImageSource, h: VmdkHeader, offset: number, length: number, host: number): Segment {
  const grainBytes = h.grainSize * SECTOR;
  if (!h.markers) {
    // No marker: the deflate data starts at the entry and is at most two grains long (qemu's bound).
    if (host >= source.size)
      throw vmdkBad(
        `the grain of guest offset ${hex(offset)} at file offset ${hex(host)} is beyond the end of the file (${source.size} bytes)`,
      );
    return { kind: 'compressed', offset, length, host, size: Math.min(2 * grainBytes, source.size - host) };
  }
  if (host + MARKER > source.size)
    throw vmdkBad(
      `the grain marker of guest offset ${hex(offset)} at file offset ${hex(host)} is beyond the end of the file (${source.size} bytes)`,
    );
  const marker = source.read(host, MARKER);
  const lba = marker.readBigUInt64LE(0);
  const size = marker.readUInt32LE(8);
  if (lba !== BigInt(offset / SECTOR))
    throw vmdkBad(
      `the grain marker at file offset ${hex(host)} is for sector ${lba}, not for guest offset ${hex(offset)} (sector ${offset / SECTOR})`,
    );
  if (size === 0 || size > 2 * grainBytes)
    throw vmdkBad(
      `the grain of guest offset ${hex(offset)} claims ${size} bytes of deflate data (1 to ${2 * grainBytes} allowed)`,
    );
  if (host + MARKER + size > source.size)
    throw vmdkBad(`the grain of guest offset ${hex(offset)} runs past the end of the file (${source.size} bytes)`);
  return { kind: 'compressed', offset, length, host: host + MARKER, size };
}

/** A zlib stream (RFC 1950) starts with a CM=8 byte and a header check; otherwise raw deflate. */
function isZlibHeader(bytes: Buffer): boolean {
  return bytes.length >= 2 && (bytes[0]! & 0x0f) === 8 && (bytes[0]! * 256 + bytes[1]!) % 31 === 0;
}

function inflateGrain(source: ImageSource, h: VmdkHeader, segment: Extract<Segment, { kind: 'compressed' }>): Buffer {
  const grainBytes = h.grainSize * SECTOR;
  const input = source.read(segment.host, segment.size);
  let output: Buffer;
  try {
    // One output chunk a little larger than a grain: the grain lies in memory of its own (no
    // second chunk, no concatenation), which `freeGrain` gives back once it is written.
    const options = { maxOutputLength: grainBytes, chunkSize: grainChunk(h), finishFlush: zlib.constants.Z_SYNC_FLUSH };
    output = isZlibHeader(input) ? zlib.inflateSync(input, options) : zlib.inflateRawSync(input, options);
  } catch (error) {
    throw vmdkBad(
      `the deflate data of guest offset ${hex(segment.offset)} does not inflate to one grain (${grainBytes} bytes): ${(error as Error).message}`,
    );
  }
  // A whole grain, or for the last grain of a capacity that is not a multiple of it, what is left.
  if (output.length !== grainBytes && output.length !== segment.length) {
    throw vmdkBad(
      `the deflate data of guest offset ${hex(segment.offset)} inflates to ${output.length} bytes, not one grain (${grainBytes} bytes)`,
    );
  }
  return output.subarray(0, segment.length);
}

/** The size of the one chunk a grain is inflated into. */
function grainChunk(h: VmdkHeader): number {
  return h.grainSize * SECTOR + 64;
}

/**
 * Frees a grain's memory now, not when the garbage collector gets to it: malloc then hands the same
 * memory to the next grain, where fresh memory would cost a page fault every 4 KiB (a grain is
 * inflated on the main thread). Only a chunk larger than Buffer's pool, so never a slice of it (a
 * grain of a few sectors is, and freeing the pool would empty every buffer in it), and only the
 * very chunk zlib allocated.
 */
function freeGrain(h: VmdkHeader, grain: Buffer): void {
  const chunk = grainChunk(h);
  if (chunk > Buffer.poolSize && grain.buffer.byteLength === chunk) (grain.buffer as ArrayBuffer).transfer(0);
}

export function openVmdk(source: ImageSource): DiskImage {
  const header = parseVmdkHeader(source);
  const stats: Stats = { allocatedBytes: 0, compressedGrains: 0 };
  // Every table and marker is walked now, so that a refusal comes before the first extent.
  for (const _segment of grainSegments(source, header, stats));
  const info: ImageInfo = {
    format: 'vmdk',
    virtualSize: header.capacity * SECTOR,
    fileSize: source.size,
    allocatedBytes: stats.allocatedBytes,
    clusterSize: header.grainSize * SECTOR,
    ...(header.compressed && { compression: 'zlib' as const }),
    features: { createType: header.createType, version: header.version, compressedGrains: stats.compressedGrains },
  };
  return { info, extents: () => vmdkExtents(source, header) };
}

async function* vmdkExtents(source: ImageSource, header: VmdkHeader): AsyncGenerator<Extent> {
  for (const segment of grainSegments(source, header)) {
    if (segment.kind === 'zero') yield { offset: segment.offset, length: segment.length, zero: true };
    else if (segment.kind === 'compressed') {
      const data = inflateGrain(source, header, segment);
      yield { offset: segment.offset, length: segment.length, data, release: () => freeGrain(header, data) };
    } else {
      const data = lendOrRead(source, segment.host, segment.length);
      yield { offset: segment.offset, length: segment.length, data, release: () => source.recycle?.(data) };
    }
  }
}
