// A long seeded campaign of qcow2 mutations (not in CI; the CI-sized run is
// test/formats/qcow2-mutation.test.ts, with the same mutations and checks): every run must end in a
// clean refusal or in output that keeps the extent contract, and images with little data are also
// written to a sparse file. A failure prints the run's seed; replay one run with --only SEED.
//   npx node scripts/qcow2-mutation-campaign.ts [--runs 50000] [--seed 1] [--only SEED]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { layoutOf } from '../test/helpers/qcow2-layout.ts';
import { prng } from '../test/helpers/mutation-check.ts';
import { decode, mutate } from '../test/helpers/qcow2-mutate.ts';
import { makeQcow2Fixtures } from './fixtures/qcow2.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '50000' },
    seed: { type: 'string', default: '1' },
    only: { type: 'string' },
  },
});
const runs = Number(values.runs);
const first = Number(values.seed) * 0x10000;
const dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-campaign-'));
const bases = makeQcow2Fixtures(dir, ['small-plain', 'small-v2', 'small-zlib', 'small-zstd', 'small-extl2']).map(
  (f) => ({
    name: f.name,
    bytes: readFileSync(f.path),
    layout: layoutOf(f.path),
  }),
);
const tally = { refused: 0, capped: 0, decoded: 0, hostileSizes: 0 };
const seeds = values.only !== undefined ? [Number(values.only)] : Array.from({ length: runs }, (_, i) => first + i);
const started = performance.now();
try {
  for (const [index, runSeed] of seeds.entries()) {
    const random = prng(runSeed);
    const base = bases[Math.floor(random() * bases.length)]!;
    const bytes = Buffer.from(base.bytes);
    const mutations = Array.from({ length: 1 + Math.floor(random() * 3) }, () => mutate(bytes, base.layout, random));
    if (bytes.readBigUInt64BE(24) >= 2n ** 52n) tally.hostileSizes++;
    try {
      tally[(await decode(bytes, 0, join(dir, 'written.raw'))).kind]++;
    } catch (error) {
      console.error(`FAILED: seed ${runSeed} on ${base.name}: ${mutations.join('; ')}\n${(error as Error).stack}`);
      process.exitCode = 1;
      break;
    }
    if ((index + 1) % 5000 === 0)
      console.log(
        `${index + 1} runs, ${((performance.now() - started) / 1000).toFixed(0)} s: ${JSON.stringify(tally)}`,
      );
  }
  console.log(`done: ${JSON.stringify(tally)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
