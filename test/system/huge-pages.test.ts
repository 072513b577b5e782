// lib/system/huge-pages.ts and its native helper: advised memory is backed by transparent huge pages
// when first touched, and the project's large buffers (aligned-memory.ts) are advised. Each case
// runs in a child process of its own: /proc/self/smaps_rollup counts the whole process.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { adviseHugePages } from '../../lib/system/huge-pages.ts';
import { inCI } from '../helpers/capabilities.ts';

const root = resolve(import.meta.dirname, '../..');
const built = existsSync(resolve(root, 'build/native/huge-pages.node')); // scripts/setup.sh builds it
const thpSetting = '/sys/kernel/mm/transparent_hugepage/enabled';
/** The kernel's mode: always, madvise or never; undefined without transparent huge pages at all. */
const mode = existsSync(thpSetting) ? /\[(\w+)\]/.exec(readFileSync(thpSetting, 'utf8'))?.[1] : undefined;

/** KiB of AnonHugePages gained by touching each page of 64 MiB advised, not advised, and from alignedBuffers. */
const probe = `
import { readFileSync } from 'node:fs';
import { adviseHugePages } from '${root}/lib/system/huge-pages.ts';
import { alignedBuffers } from '${root}/lib/source/aligned-memory.ts';
const hugeKiB = () => Number(/AnonHugePages:\\s+(\\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]);
const gained = (memory) => {
  const before = hugeKiB();
  const bytes = new Uint8Array(memory);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = 1;
  return hugeKiB() - before;
};
const size = 64 * 1024 * 1024;
const advised = new SharedArrayBuffer(size);
const taken = adviseHugePages(advised);
const plain = new SharedArrayBuffer(size);
const aligned = alignedBuffers(4 * 1024 * 1024, 16)[0].buffer;
console.log(JSON.stringify({ taken, advised: gained(advised), plain: gained(plain), aligned: gained(aligned) }));
`;

describe.skipIf(!inCI && !built)('huge pages', () => {
  it('backs advised memory with huge pages, and only advised memory where the kernel waits to be told', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', probe]);
    const result = JSON.parse(stdout) as { taken: boolean; advised: number; plain: number; aligned: number };
    expect(result.taken).toBe(mode !== undefined);
    if (mode === 'always' || mode === 'madvise') {
      // At least one 2 MiB page each: how many depends on the free memory the kernel finds contiguous.
      expect(result.advised).toBeGreaterThanOrEqual(2048);
      expect(result.aligned).toBeGreaterThanOrEqual(2048);
    }
    if (mode === 'madvise') expect(result.plain).toBe(0);
  });

  it('does not advise memory smaller than a huge page', () => {
    expect(adviseHugePages(new SharedArrayBuffer(2 * 1024 * 1024 - 4096))).toBe(false);
    expect(adviseHugePages(new ArrayBuffer(0))).toBe(false);
  });
});
