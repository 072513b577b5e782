// How much RAM an image may take: the whole image is held in memory before anything is written,
// and OVH's contract keeps 3 GiB for the rescue system ("smaller than the server RAM minus 3GiB").
import { readFileSync } from 'node:fs';

export const RESERVED_RAM = 3 * 1024 ** 3;

/** A line of /proc/meminfo (`Name:   N kB`), in bytes; undefined without it. */
function meminfoBytes(field: 'MemTotal' | 'MemAvailable', meminfo: string): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(meminfo);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** MemTotal of /proc/meminfo, in bytes. */
export function memTotal(meminfo = readFileSync('/proc/meminfo', 'utf8')): number {
  const bytes = meminfoBytes('MemTotal', meminfo);
  if (bytes === undefined) throw new Error('/proc/meminfo has no MemTotal line');
  return bytes;
}

/**
 * The largest image, in bytes, that may occupy RAM: smaller than MemTotal (or an override) minus
 * the reserve, as OVH words it, so an image of exactly that size is refused. Never negative.
 */
export function ramBudget(ramSize?: number): number {
  return Math.max(0, (ramSize ?? memTotal()) - RESERVED_RAM - 1);
}

/**
 * MemAvailable of /proc/meminfo, in bytes: the kernel's estimate of what it can give without
 * swapping, free RAM and the page cache it can drop (not tmpfs, which it cannot drop without swap).
 * 0 on a kernel older than 3.14, which has no such line: nothing is known to be available.
 */
export function memAvailable(meminfo = readFileSync('/proc/meminfo', 'utf8')): number {
  return meminfoBytes('MemAvailable', meminfo) ?? 0;
}

/**
 * RAM a deployment keeps for itself beyond the image and the decoded clusters it keeps: the
 * decompression threads, the batches in flight, the writer's buffers (~150-260 MiB over the image
 * measured on the bench's 2-8 GiB images with nothing kept: docs/performance.md).
 */
const WORKING_RAM = 512 * 1024 ** 2;

/** This machine's RAM budget and available RAM now. */
export interface MachineMemory {
  readonly budget: number;
  readonly available: number;
}

/**
 * Bytes of decompressed clusters a deployment may keep between its dry pass and its write (so
 * that the write does not decompress them again): what the budget leaves beside the image and the
 * deployment's working memory, and no more than the available RAM leaves once the image's bytes
 * still `toCome` have arrived. Available, not only free: with the page cache full, keeping by
 * dropping it still beat decompressing again (measured: docs/performance.md, "sixth round"); tmpfs,
 * which the kernel cannot drop without swap, is not counted. A budget from a job's ramSize larger
 * than this machine's counts as this machine's.
 */
export function roomForDecoded(
  budget: number,
  imageBytes: number,
  toCome: number,
  machine: MachineMemory = { budget: ramBudget(), available: memAvailable() },
): number {
  const beside = Math.min(budget, machine.budget) - imageBytes - WORKING_RAM;
  const available = machine.available - toCome - WORKING_RAM;
  return Math.max(0, Math.min(beside, available));
}

/** This process's /proc/self/limits, read once. */
let ownLimits: string | undefined;

/** /proc/self/limits, or nothing where it cannot be read (not Linux): then read as limited. */
function processLimits(): string {
  if (ownLimits === undefined) {
    try {
      ownLimits = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      ownLimits = '';
    }
  }
  return ownLimits;
}

/**
 * Whether this process's address space is limited (`ulimit -v`, "Max address space" in
 * /proc/self/limits). Each page-aligned WebAssembly memory reserves ~8 GiB of it
 * (lib/source/aligned-memory.ts), and a worker thread that finds none left ends the process.
 */
export function addressSpaceLimited(limits = processLimits()): boolean {
  const line = /^Max address space\s+(\S+)\s+/m.exec(limits);
  return line?.[1] !== 'unlimited';
}

/**
 * Whether this process can reserve address space freely, for many aligned memories at once
 * (lib/source/chunked-buffer.ts): on x86-64 (128 TiB of it for a process) and without a limit.
 */
export function addressSpaceUnlimited(limits = processLimits(), arch: string = process.arch): boolean {
  return arch === 'x64' && !addressSpaceLimited(limits);
}
