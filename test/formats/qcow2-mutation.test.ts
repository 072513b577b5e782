// Hostile input: thousands of seeded random mutations of small qemu-made images (header fields,
// L1/L2 entries, compressed descriptors and data, random bytes). Every run must end in a clean
// refused-image ByoiError or in output that checks the extent contract; a sample of the decoded
// runs is compared with qemu-img convert of the same mutated file (qemu refusing a file we decode is
// tolerated: it checks refcount and snapshot tables, which a converter never reads). Reproduce a
// failure with its seed:
// QCOW2_MUTATION_SEED=<seed> npx vitest run test/formats/qcow2-mutation.test.ts
// Header fields take sizes at and around 2^52, 2^53, 2^63 and 2^64; decoded images with little data
// are also written to a sparse file. The long campaign (tens of thousands of runs, not in CI):
// npx node scripts/qcow2-mutation-campaign.ts [--runs N] [--seed S]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeQcow2Fixtures } from '../../scripts/fixtures/qcow2.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { layoutOf, type Layout } from '../helpers/qcow2-layout.ts';
import { prng, qemuSha256, type Outcome } from '../helpers/mutation-check.ts';
import { decode, mutate } from '../helpers/qcow2-mutate.ts';

const SEEDS = ['small-plain', 'small-v2', 'small-zlib', 'small-zstd', 'small-extl2'];
const RUNS = 2000;
/** Runs decoded in the worker pool instead of on the calling thread (pool start-up is slow-ish). */
const POOL_EVERY = 50;
/** Decoded runs compared with qemu-img convert. */
const QEMU_SAMPLES = 150;
const RUN_TIME_LIMIT_MS = 5_000;
const RSS_LIMIT = 1536 * 1024 * 1024;

describe.skipIf(skipWithout('qemu-img'))('qcow2 decoder under random mutation', () => {
  let dir: string;
  const seeds: { name: string; bytes: Buffer; layout: Layout }[] = [];

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-mutation-'));
    for (const f of makeQcow2Fixtures(dir, SEEDS))
      seeds.push({ name: f.name, bytes: readFileSync(f.path), layout: layoutOf(f.path) });
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`ends every one of ${RUNS} runs in a correct output or a clean refusal`, { timeout: 300_000 }, async () => {
    const only = process.env.QCOW2_MUTATION_SEED;
    const runSeeds = only ? [Number(only)] : Array.from({ length: RUNS }, (_, i) => 0x9e3779b9 + i);
    const tally = {
      refused: 0,
      capped: 0,
      decoded: 0,
      comparedWithQemu: 0,
      qemuRefusedWhatWeDecoded: 0,
      hostileSizes: 0,
    };
    for (const runSeed of runSeeds) {
      const random = prng(runSeed);
      const seed = seeds[Math.floor(random() * seeds.length)]!;
      const bytes = Buffer.from(seed.bytes);
      const mutations = Array.from({ length: 1 + Math.floor(random() * 3) }, () => mutate(bytes, seed.layout, random));
      const context = `seed ${runSeed} on ${seed.name}: ${mutations.join('; ')}`;
      if (bytes.readBigUInt64BE(24) >= 2n ** 52n) tally.hostileSizes++;
      const started = performance.now();
      let outcome: Outcome;
      try {
        outcome = await decode(bytes, runSeed % POOL_EVERY === 0 ? 2 : 0, join(dir, 'written.raw'));
      } catch (error) {
        throw new Error(`${context}: ${(error as Error).stack}`, { cause: error });
      }
      const elapsed = performance.now() - started;
      if (elapsed > RUN_TIME_LIMIT_MS) throw new Error(`${context}: took ${elapsed.toFixed(0)} ms`);
      tally[outcome.kind]++;
      // Not for zstd: corrupted zstd data has no one right decoding (no checksum in qemu's frames),
      // and Node's bundled libzstd and Debian's decode some corrupted entropy streams differently.
      const comparable = seed.name !== 'small-zstd';
      if (
        outcome.kind === 'decoded' &&
        outcome.sha256 &&
        comparable &&
        tally.comparedWithQemu < QEMU_SAMPLES &&
        runSeed % 4 === 0
      ) {
        const reference = qemuSha256(bytes, dir, 'qcow2');
        if (reference === undefined) tally.qemuRefusedWhatWeDecoded++;
        else {
          tally.comparedWithQemu++;
          if (reference !== outcome.sha256)
            throw new Error(`${context}: decoded ${outcome.sha256}, qemu-img ${reference}`);
        }
      }
      if (process.memoryUsage().rss > RSS_LIMIT) throw new Error(`${context}: RSS ${process.memoryUsage().rss}`);
    }
    console.log('qcow2 mutation runs:', JSON.stringify(tally));
    if (!only) {
      // The mix must exercise both ends, or the test proves little.
      expect(tally.refused).toBeGreaterThan(RUNS / 10);
      expect(tally.decoded).toBeGreaterThan(RUNS / 10);
      expect(tally.comparedWithQemu).toBeGreaterThan(50);
      expect(tally.hostileSizes).toBeGreaterThan(5);
    }
  });
});
