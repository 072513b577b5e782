// Helpers for the convert tests: run the CLI, hash files and devices, make disks and garbage.
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const MiB = 1024 * 1024;
const byoi = join(import.meta.dirname, '..', '..', 'agent', 'byoi.ts');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...args: string[]): Promise<CliResult> {
  return run(process.execPath, [byoi, ...args]);
}

/** As `cli`, under an address-space limit (`ulimit -v`, in KiB). */
export async function cliWithAddressSpace(kib: number, ...args: string[]): Promise<CliResult> {
  return run('bash', ['-c', `ulimit -v ${kib} && exec "$@"`, 'bash', process.execPath, byoi, ...args]);
}

async function run(file: string, argv: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, argv, { maxBuffer: 16 * MiB });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export function lastLine(text: string): string {
  return text.trimEnd().split('\n').at(-1) ?? '';
}

/** sha256 of the first `length` bytes of a file or device. */
export function sha256(path: string, length?: number): string {
  const fd = openSync(path, 'r');
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(4 * MiB);
  let position = 0;
  const end = length ?? statSync(path).size;
  try {
    while (position < end) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, end - position), position);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      position += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * A raw disk with data in the first MiB, long zero runs (MiB-aligned and not), short data runs at
 * odd offsets, and a size that is not a multiple of any sector or block size.
 */
export function makeRawImage(path: string): { size: number; dataBytes: number } {
  const size = 40 * MiB + 3000;
  const pieces: [number, number][] = [
    [0, 512],
    [64 * 1024, 4096], // boot sector, something inside the first MiB
    [1 * MiB, 2 * MiB], // right after the head
    [10 * MiB + 100 * 1024, 200 * 1024], // unaligned island in a zero sea
    [20 * MiB, 4 * MiB + 777],
    [30 * MiB + 4096, 65536],
    [size - 3000, 3000], // the odd tail
  ];
  writeFileSync(path, '');
  truncateSync(path, size);
  const fd = openSync(path, 'r+');
  let dataBytes = 0;
  for (const [offset, length] of pieces) {
    writeSync(fd, randomBytes(length), 0, length, offset);
    dataBytes += length;
  }
  closeSync(fd);
  return { size, dataBytes };
}

/** Fills a device or file with non-zero garbage, so zero ranges must really be zeroed. */
export function fillWithGarbage(path: string, size: number): void {
  const pattern = Buffer.alloc(MiB, 0xa5);
  randomBytes(4096).copy(pattern, 0);
  const fd = openSync(path, 'r+');
  for (let at = 0; at < size; at += MiB) writeSync(fd, pattern, 0, Math.min(MiB, size - at), at);
  execFileSync('sync');
  closeSync(fd);
}
