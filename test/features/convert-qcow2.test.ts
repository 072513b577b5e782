// `byoi convert` of qcow2 images made by qemu-img (plain, zlib, zstd, small clusters), into files
// and onto garbage-filled loop devices, compared with `qemu-img convert -O raw` of the same file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { cli, fillWithGarbage, makeRawImage, sha256 } from '../helpers/convert.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
const variants: Record<string, string[]> = {
  plain: [],
  zlib: ['-c'],
  zstd: ['-c', '-o', 'compression_type=zstd'],
  'v2, 4 KiB clusters': ['-o', 'compat=0.10,cluster_size=4096'],
};

let dir: string;
const images: Record<string, { path: string; rawSha: string; size: number }> = {};

describe.skipIf(skipWithout('qemu-img'))('byoi convert of qcow2 images made by qemu-img', () => {
  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-convert-qcow2-'));
    const raw = join(dir, 'source.raw');
    makeRawImage(raw);
    for (const [name, options] of Object.entries(variants)) {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.qcow2`);
      execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', ...options, raw, path]);
      // The reference: what qemu itself reads out of the qcow2 (its virtual size is floored to 512).
      const reference = join(dir, `${name.replace(/\W+/g, '-')}.reference.raw`);
      execFileSync('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', path, reference]);
      const size = Number(
        JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path], { encoding: 'utf8' }))['virtual-size'],
      );
      images[name] = { path, rawSha: sha256(reference), size };
    }
  });
  afterAll(() => {
    detachAllLoops();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const name of Object.keys(variants)) {
    it(`${name}: into a new file`, async () => {
      const { path, rawSha, size } = images[name]!;
      const target = join(dir, `${name.replace(/\W+/g, '-')}.out`);
      const result = await cli('convert', path, target);
      expect(result.code, result.stderr).toBe(0);
      expect(sha256(target)).toBe(rawSha);
      expect(sha256(target, size)).toBe(rawSha);
    });

    it(`${name}: inspect names it qcow2`, async () => {
      const result = await cli('inspect', '--json', images[name]!.path);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report.format).toBe('qcow2');
      expect(report.detected.format).toBe('qcow2');
      expect(report.virtualSize).toBe(images[name]!.size);
      if (name === 'zlib' || name === 'zstd') expect(report.compression).toBe(name);
    });
  }

  describe.skipIf(skipWithout('root', 'loop'))('onto garbage-filled loop devices', () => {
    beforeAll(() => assertCapable('root', 'loop'));

    for (const name of Object.keys(variants)) {
      for (const sectorSize of [512, 4096] as const) {
        it(`${name}, ${sectorSize}-byte sectors`, async () => {
          const { path, rawSha, size } = images[name]!;
          const backing = join(dir, `device-${sectorSize}`);
          writeFileSync(backing, '');
          truncateSync(backing, 48 * MiB);
          const device = attachLoop(backing, { sectorSize });
          try {
            fillWithGarbage(device, 48 * MiB);
            const result = await cli('convert', '--type', 'qcow2', path, device);
            expect(result.code, result.stderr).toBe(0);
            expect(sha256(device, size)).toBe(rawSha);
          } finally {
            detachLoop(device);
          }
        });
      }
    }
  });
});
