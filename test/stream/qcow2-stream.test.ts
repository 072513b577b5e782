// The streaming qcow2 decoder on qemu-made images fed in chunks of random sizes: the disk it
// writes (pieces at their offsets, zeros last) equals `qemu-img convert -O raw`, or the image is
// refused naming the streaming mode; under random mutation every run ends in a clean refusal or
// in pieces that stay inside the disk.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';
import { qcow2StreamPieces } from '../../lib/stream/qcow2-stream.ts';
import { makeQcow2Fixtures, qemuRawSha256 } from '../../scripts/fixtures/qcow2.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { prng } from '../helpers/mutation-check.ts';

const NAMES = [
  'small-plain',
  'small-v2',
  'small-zlib',
  'small-zstd',
  'empty',
  'size-not-512',
  // Extended L2 entries, partly allocated subclusters (qemu-io's small writes after the convert).
  'small-extl2',
  'extl2-64k',
  'extl2-16k-odd',
  'zstd-extl2',
];
const RUNS = 600;

async function* chunks(bytes: Buffer, random: () => number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length;) {
    const n = 1 + Math.floor(random() * 20000);
    yield Buffer.from(bytes.subarray(at, at + n));
    at += n;
  }
}

/** The disk the pieces make, or the refusal. */
async function streamDecode(bytes: Buffer, random: () => number): Promise<{ disk: Buffer } | { refused: ByoiError }> {
  try {
    const { virtualSize, pieces } = await qcow2StreamPieces(chunks(bytes, random), bytes.length);
    if (virtualSize > 64 * 1024 * 1024)
      return { refused: new ByoiError('refused-image', 'image-larger-than-device', 'too big for this test') };
    const disk = Buffer.alloc(virtualSize, 0xee);
    for await (const piece of pieces) {
      if (piece.offset < 0 || piece.offset + piece.data.length > virtualSize)
        throw new Error(`piece [${piece.offset}, +${piece.data.length}) outside ${virtualSize}`);
      piece.data.copy(disk, piece.offset);
    }
    return { disk };
  } catch (error) {
    if (error instanceof ByoiError && error.kind === 'refused-image') return { refused: error };
    throw error;
  }
}

describe.skipIf(skipWithout('qemu-img'))('streaming qcow2 decoder', () => {
  let dir: string;
  const seeds: { name: string; bytes: Buffer; sha256: string }[] = [];

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-stream-'));
    for (const f of makeQcow2Fixtures(dir, NAMES))
      seeds.push({ name: f.name, bytes: readFileSync(f.path), sha256: qemuRawSha256(f.path, dir) });
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('decodes what qemu-img wrote as qemu-img convert -O raw does, whatever the chunk sizes', async () => {
    const decoded = new Set<string>();
    for (const seed of seeds) {
      for (let run = 0; run < 3; run++) {
        const outcome = await streamDecode(seed.bytes, prng(run + 1));
        if ('refused' in outcome) {
          // qemu-io's edits after the convert may put a table after its clusters: only those may be refused.
          expect(outcome.refused.message, seed.name).toMatch(/in streaming mode/);
          expect(seed.name).not.toMatch(/zlib|zstd|empty/);
          continue;
        }
        expect(createHash('sha256').update(outcome.disk).digest('hex'), seed.name).toBe(seed.sha256);
        decoded.add(seed.name);
      }
    }
    expect([...decoded].sort()).toEqual(
      expect.arrayContaining([
        'empty',
        'size-not-512',
        'small-zlib',
        'small-zstd',
        'small-extl2',
        'extl2-64k',
        'extl2-16k-odd',
        'zstd-extl2',
      ]),
    );
    console.log('streamed as qemu-img converts them:', [...decoded].join(', '));
  });

  it(
    `ends each of ${RUNS} mutated runs in a clean refusal or a disk inside its bounds`,
    { timeout: 120_000 },
    async () => {
      const tally = { refused: 0, decoded: 0 };
      for (let i = 0; i < RUNS; i++) {
        const random = prng(0x7f4a7c15 + i);
        const seed = seeds[Math.floor(random() * seeds.length)]!;
        const bytes = Buffer.from(seed.bytes);
        const mutations: string[] = [];
        for (let m = 1 + Math.floor(random() * 3); m > 0; m--) {
          // Mostly the first clusters (header, L1, L2 tables), sometimes anywhere.
          const span = random() < 0.7 ? Math.min(bytes.length, 5 * 4096) : bytes.length;
          const at = Math.floor(random() * span);
          bytes[at] = Math.floor(random() * 256);
          mutations.push(`@${at}`);
        }
        let outcome;
        try {
          outcome = await streamDecode(bytes, random);
        } catch (error) {
          throw new Error(`run ${i} on ${seed.name} (${mutations.join(', ')}): ${(error as Error).stack}`, {
            cause: error,
          });
        }
        tally['refused' in outcome ? 'refused' : 'decoded']++;
      }
      console.log('streaming qcow2 mutation runs:', JSON.stringify(tally));
      expect(tally.refused).toBeGreaterThan(RUNS / 20);
      expect(tally.decoded).toBeGreaterThan(RUNS / 10);
    },
  );
});
