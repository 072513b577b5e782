// How much RAM an image may take: the whole image is held in memory before anything is written,
// and OVH's contract keeps 3 GiB for the rescue system ("smaller than the server RAM minus 3GiB").
import { readFileSync } from 'node:fs';

export const RESERVED_RAM = 3 * 1024 ** 3;

/** MemTotal of /proc/meminfo, in bytes. */
export function memTotal(meminfo = readFileSync('/proc/meminfo', 'utf8')): number {
  const match = /^MemTotal:\s+(\d+)\s+kB$/m.exec(meminfo);
  if (!match) throw new Error('/proc/meminfo has no MemTotal line');
  return Number(match[1]) * 1024;
}

/**
 * The largest image, in bytes, that may occupy RAM: smaller than MemTotal (or an override) minus
 * the reserve, as OVH words it, so an image of exactly that size is refused. Never negative.
 */
export function ramBudget(ramSize?: number): number {
  return Math.max(0, (ramSize ?? memTotal()) - RESERVED_RAM - 1);
}
