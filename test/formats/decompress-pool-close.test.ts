// Stopping a decode midway (a consumer that breaks out of extents(), as the inspect step does)
// closes the decompression pool while its workers are busy. Terminating them there aborted the
// whole process about once in a few dozen closes (Node asserts "close before init" in a worker's
// cleanup); the pool now lets each worker finish its batch and end.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MiB = 1024 * 1024;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'byoi-pool-close-'));
  // Compressible, varied bytes: the Node binary's first 64 MiB.
  writeFileSync(join(dir, 'disk.raw'), readFileSync(process.execPath).subarray(0, 64 * MiB));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('closing the decompression pool while it works', () => {
  for (const [codec, rounds] of [
    ['zstd', 100],
    ['zlib', 60],
  ] as const) {
    /** The compressed image, made by qemu-img on first use. */
    const imageOf = (): string => {
      const image = join(dir, `${codec}.qcow2`);
      if (!existsSync(image))
        execFileSync('qemu-img', [
          'convert',
          '-f',
          'raw',
          '-O',
          'qcow2',
          '-c',
          '-o',
          `compression_type=${codec}`,
          join(dir, 'disk.raw'),
          image,
        ]);
      return image;
    };

    it(`${codec}: ${rounds} early stops, the process ends normally`, () => {
      const image = imageOf();
      const run = spawnSync(
        process.execPath,
        [join(import.meta.dirname, '../helpers/stop-early.ts'), image, String(rounds)],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect(run.stderr).toBe('');
      expect(run.signal).toBeNull();
      expect(run.status).toBe(0);
      expect(run.stdout).toBe('done\n');
    }, 180_000);

    it(`${codec}: workers a finished dry pass leaves idle neither keep the process alive nor abort it`, () => {
      const image = imageOf();
      const run = spawnSync(process.execPath, [join(import.meta.dirname, '../helpers/check-then-end.ts'), image, '6'], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(run.stderr).toBe('');
      expect(run.signal).toBeNull();
      expect(run.status).toBe(0);
      expect(run.stdout).toBe('done\n');
    }, 180_000);
  }
});
