// VMDK fixtures made by qemu-img from a small raw disk: streamOptimized and monolithicSparse,
// and the stream re-laid as VMware and OVF Tool write it (grain directory at the end, found
// through a footer), with the raw reference `qemu-img convert -O raw` makes of each.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { prng } from './mutation-check.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A raw disk with data, zero runs, and a capacity that ends inside a grain. Its data is the same on
 * every run (seeded, incompressible), so a mutation run that fails can be replayed from its seed.
 */
export function makeSmallDisk(path: string, size = 5 * MiB + 1536): void {
  const bytes = Buffer.alloc(size);
  const next = prng(0x5eed);
  for (const [at, length] of [
    [0, 4096],
    [100 * KiB, 200 * KiB],
    [2 * MiB + 512, 64 * KiB],
    [size - 1024, 1024],
  ] as const)
    for (let i = at; i < at + length; i++) bytes[i] = Math.floor(next() * 256);
  // Compressible data too, as real disks hold.
  Buffer.from('byoi '.repeat(40000)).copy(bytes, 3 * MiB);
  writeFileSync(path, bytes);
}

export function makeVmdk(raw: string, path: string, subformat: 'streamOptimized' | 'monolithicSparse'): string {
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat}`, raw, path]);
  return path;
}

/**
 * qemu's stream with the header's gdOffset set to "at the end", and a footer marker, a footer
 * (the original header, real gdOffset in it) and an end-of-stream marker appended, as VMware's
 * stream layout ends.
 */
export function toFooterLayout(streamOptimized: string, path: string): string {
  const bytes = readFileSync(streamOptimized);
  const header = Buffer.from(bytes.subarray(0, 512));
  const head = Buffer.from(bytes.subarray(0, 512));
  head.writeBigUInt64LE(0xffffffffffffffffn, 56);
  const footerMarker = Buffer.alloc(512);
  footerMarker.writeBigUInt64LE(1n, 0);
  footerMarker.writeUInt32LE(0, 8);
  footerMarker.writeUInt32LE(3, 12);
  writeFileSync(path, Buffer.concat([head, bytes.subarray(512), footerMarker, header, Buffer.alloc(512)]));
  return path;
}

export function qemuRaw(image: string, path: string, format = 'vmdk'): string {
  execFileSync('qemu-img', ['convert', '-f', format, '-O', 'raw', image, path]);
  return path;
}
