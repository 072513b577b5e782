// Page-aligned buffers: proven aligned the only way that counts, by a device taking them in direct
// writes that it refuses from a buffer one byte off; and ordinary memory, not vouched for, where
// the address space is limited or the engine refuses one (each reserves ~8 GiB of it).
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignedBuffers, isPageAligned, PAGE_SIZE, sharedAlignedMemory } from '../../lib/source/aligned-memory.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { attachLoop, detachLoop } from '../helpers/loop.ts';

describe('alignedBuffers', () => {
  it('gives zero-filled buffers of the size asked, each its own range', () => {
    const [a, b] = alignedBuffers(2 * PAGE_SIZE, 2) as [Buffer, Buffer];
    expect(a.length).toBe(2 * PAGE_SIZE);
    expect(a.every((byte) => byte === 0) && b.every((byte) => byte === 0)).toBe(true);
    a.fill(1);
    expect(b.every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a size that is not whole pages', () => {
    expect(() => alignedBuffers(PAGE_SIZE + 512, 1)).toThrow(RangeError);
  });

  it('vouches only for its own buffers, at page offsets, in whole pages', () => {
    const [buffer] = alignedBuffers(4 * PAGE_SIZE, 1) as [Buffer];
    expect(isPageAligned(buffer)).toBe(true);
    expect(isPageAligned(buffer.subarray(PAGE_SIZE, 3 * PAGE_SIZE))).toBe(true);
    expect(isPageAligned(buffer.subarray(512, 512 + PAGE_SIZE))).toBe(false);
    expect(isPageAligned(buffer.subarray(0, PAGE_SIZE + 1))).toBe(false);
    expect(isPageAligned(Buffer.allocUnsafeSlow(PAGE_SIZE))).toBe(false);
  });
});

describe('alignedBuffers where the address space is short', () => {
  const module = JSON.stringify(join(import.meta.dirname, '../../lib/source/aligned-memory.ts'));
  /** Runs `body` (an ES module's, after the import) in a child Node, under `shell` first; its stdout as JSON. */
  const child = (body: string, shell = '') =>
    JSON.parse(
      execFileSync(
        'bash',
        [
          '-c',
          `${shell} exec "$0" --expose-gc --input-type=module -e "$1"`,
          process.execPath,
          `import { alignedBuffers, isPageAligned } from ${module};\n${body}`,
        ],
        { encoding: 'utf8' },
      ),
    ) as unknown;

  it('gives ordinary memory, not vouched for, under an address-space limit (`ulimit -v`)', () => {
    const result = child(
      `const buffers = [1, 2, 3].map(() => alignedBuffers(1 << 20, 2)).flat();
       for (const buffer of buffers) buffer.fill(7);
       process.stdout.write(JSON.stringify(buffers.map((b) => [isPageAligned(b), b.length, b.every((byte) => byte === 7)])));`,
      'ulimit -v 40000000 &&',
    );
    expect(result).toEqual(Array.from({ length: 6 }, () => [false, 1 << 20, true]));
  });

  it('after the engine refuses one: ordinary memory, none asked for until one made here is collected', () => {
    // More than a WebAssembly memory may hold (4 GiB): refused as running out of address space would be.
    const result = child(
      `let kept = alignedBuffers(1 << 20, 1);
       const before = isPageAligned(kept[0]);
       const [huge] = alignedBuffers(64 << 20, 65);
       const after = isPageAligned(alignedBuffers(1 << 20, 1)[0]);
       kept = undefined;
       for (let i = 0; i < 2; i++) {
         globalThis.gc();
         await new Promise((resolve) => setTimeout(resolve, 50));
       }
       const again = isPageAligned(alignedBuffers(1 << 20, 1)[0]);
       process.stdout.write(JSON.stringify([before, isPageAligned(huge), huge.length, after, again]));`,
    );
    expect(result).toEqual([true, false, 64 << 20, false, true]);
  });
});

describe.skipIf(skipWithout('root', 'loop'))('alignedBuffers on a device', () => {
  let dir: string;
  let device: string;
  beforeAll(() => {
    assertCapable('root', 'loop');
    dir = mkdtempSync(join(tmpdir(), 'byoi-aligned-'));
    writeFileSync(join(dir, 'disk'), '');
    truncateSync(join(dir, 'disk'), 1024 * 1024);
    device = attachLoop(join(dir, 'disk'));
  });
  afterAll(() => {
    if (device) detachLoop(device);
    rmSync(dir, { recursive: true, force: true });
  });

  it('are taken by O_DIRECT writes, which refuse the same bytes one byte off', () => {
    const fd = openSync(device, constants.O_WRONLY | constants.O_DIRECT);
    try {
      const [buffer] = alignedBuffers(2 * PAGE_SIZE, 1) as [Buffer];
      expect(writeSync(fd, buffer, 0, PAGE_SIZE, PAGE_SIZE)).toBe(PAGE_SIZE);
      expect(writeSync(fd, buffer, PAGE_SIZE, PAGE_SIZE, 0)).toBe(PAGE_SIZE);
      expect(() => writeSync(fd, buffer, 1, PAGE_SIZE, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    } finally {
      closeSync(fd);
    }
  });

  it('shared memory too: every slot is taken by O_DIRECT writes, and vouched for', () => {
    const fd = openSync(device, constants.O_WRONLY | constants.O_DIRECT);
    try {
      const memory = sharedAlignedMemory(3 * PAGE_SIZE, 3);
      expect(memory).toBeInstanceOf(SharedArrayBuffer);
      for (let slot = 0; slot < 3; slot++) {
        const bytes = Buffer.from(memory, slot * 3 * PAGE_SIZE, 3 * PAGE_SIZE);
        expect(isPageAligned(bytes)).toBe(true);
        expect(writeSync(fd, bytes, 0, 3 * PAGE_SIZE, slot * 3 * PAGE_SIZE)).toBe(3 * PAGE_SIZE);
        expect(() => writeSync(fd, bytes, 1, PAGE_SIZE, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
      }
    } finally {
      closeSync(fd);
    }
  });
});
