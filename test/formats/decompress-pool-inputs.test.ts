// The decompression pool's input buffers, kept for the next batches, stay bounded when every batch
// is a little larger than the last (a hostile VMDK or qcow2 from RAM: one 2 MiB grain a batch, each
// claiming a few more bytes): kept all, they held one buffer per batch, gigabytes for a small file.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DecompressPool } from '../../lib/formats/decompress-pool.ts';
import { SlotArena } from '../../lib/formats/slot-arena.ts';
import { nativeModulePath } from '../../lib/system/native-module.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

function collect(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('the decompression pool', () => {
  it('keeps a bounded number of input buffers, however the batches grow', async () => {
    const grain = 64 * KiB;
    const stream = zlib.deflateSync(Buffer.alloc(grain));
    const pool = new DecompressPool('deflate', grain, 2, new SlotArena(grain));
    try {
      collect();
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < 64; i++) {
        // The stream, then bytes past its end (ignored, as qemu ignores them): 2 MiB + 16 KiB more each time.
        const input = Buffer.alloc(2 * MiB + i * 16 * KiB);
        stream.copy(input);
        const result = await pool.decompress([input], false);
        expect(result).toEqual({ pieces: [] });
      }
      collect();
      const held = process.memoryUsage().arrayBuffers - before;
      // Eight spares at most (two workers, four batches in flight each) of ~3 MiB; all 64 would be ~160 MiB.
      expect(held).toBeLessThan(40 * MiB);
    } finally {
      await pool.close();
    }
  });

  // In CI the native cluster decoders are built: a worker that failed to load them (a wrong path in
  // its settings, a symbol the node binary lacks) would fall back to Node's without a word.
  it.runIf(nativeModulePath('cluster-decoders') !== undefined || process.env.CI)(
    'decodes in its workers with the native cluster decoders where they load here',
    async () => {
      const pool = new DecompressPool('zlib', 64 * KiB, 1, new SlotArena(64 * KiB));
      try {
        const stream = zlib.deflateRawSync(Buffer.alloc(64 * KiB, 3), { windowBits: 12 });
        const result = await pool.decompress([stream], true);
        expect('pieces' in result && result.pieces[0]!.equals(Buffer.alloc(64 * KiB, 3))).toBe(true);
        expect(pool.decodedNatively).toBe(true);
      } finally {
        await pool.close();
      }
    },
  );
});
