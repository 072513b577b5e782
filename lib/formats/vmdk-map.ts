// A VMDK's grains in guest order: found through the grain directory and tables, as qemu reads
// them, and each table, marker and grain checked against the file as it is walked.
import { vmdkBad } from '../errors.ts';
import { SECTOR, type VmdkHeader } from './vmdk-header.ts';
import type { ImageSource } from '../source/image-source.ts';

/** Longest run of contiguous stored grains or zeros handed on as one extent. */
const MAX_RUN = 16 * 1024 * 1024;
/** A compressed grain's marker: lba (u64) and size (u32), then the data. */
const MARKER = 12;

export type Segment =
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'plain'; readonly offset: number; readonly length: number; readonly host: number }
  | {
      readonly kind: 'compressed';
      readonly offset: number;
      readonly length: number;
      readonly host: number;
      readonly size: number;
    };

export interface Stats {
  allocatedBytes: number;
  compressedGrains: number;
}

export const hex = (value: number): string => `0x${value.toString(16)}`;

/**
 * Guest grains in order, as segments; zero and contiguous stored grains merged up to MAX_RUN, stored
 * ones only within one block of the source's chunk size.
 */
export function* grainSegments(source: ImageSource, h: VmdkHeader, stats?: Stats): Generator<Segment> {
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
