// npm run bench [-- --runs N --only convert|deploy|download|fleet --source]: byoi against the reference tools, in
// one run, reported as ratios (ours / reference; below 1.0 means byoi is faster).
// byoi runs as shipped: the bundle `npm run build` makes (what the container runs), built afresh
// from this checkout into a temporary directory. --source runs agent/byoi.ts through Node's type
// stripping instead (slower to start: it parses and strips every module on each run).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { bundle } from '../bundle.ts';
import { makeBenchImages } from './images.ts';
import { benchConvert, type Row } from './convert.ts';
import { benchDeploy } from './deploy.ts';
import { benchDownload } from './download.ts';
import { benchFleet } from './fleet.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
    dir: { type: 'string', default: '/var/tmp/byoi-bench' },
    source: { type: 'boolean', default: false },
    'fleet-agents': { type: 'string', default: '1000' },
    'fleet-customers': { type: 'string', default: '100' },
    'fleet-seconds': { type: 'string', default: '20' },
  },
});
const runs = Number(values.runs);
if (values.only === 'fleet') {
  // The API under a fleet's load (scripts/bench/fleet.ts): no images, no agent bundle.
  await benchFleet({ agents: Number(values['fleet-agents']), customers: Number(values['fleet-customers']), seconds: Number(values['fleet-seconds']) });
  process.exit(0);
}
const node = process.execPath;
const entry = fileURLToPath(new URL('../../agent/byoi.ts', import.meta.url));
// Its own directory: other checkouts may be benchmarking at the same time.
const bundleDir = mkdtempSync(join(tmpdir(), 'byoi-bench-agent-'));
process.on('exit', () => rmSync(bundleDir, { recursive: true, force: true }));
const byoi = values.source ? entry : (await bundle(entry, bundleDir, 'byoi.mjs'))[0]!;

const images = makeBenchImages(values.dir!);
const sizes = Object.fromEntries(Object.values(images.qcow2).map((f) => [f, statSync(f).size]));
const MiB = 1024 * 1024;
console.log(`byoi ${values.source ? 'from source (type stripping)' : 'as bundled'}; medians of ${runs} interleaved runs; reference: qemu-img convert -t writeback -n (convert), curl|sha256sum + qemu-img convert -t writeback + sgdisk -e (deploy), curl|sha256sum (download); the device is flushed and uncached before every run`);
console.log(`| case | byoi s | reference s | time ratio | byoi peak RSS MiB | image MiB | RSS - image MiB |`);
console.log(`|---|---|---|---|---|---|---|`);
/** Rows are printed as each benchmark ends: a later failure does not lose them. */
function print(rows: Row[]): void {
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.ours.seconds.toFixed(2)} | ${r.reference.seconds.toFixed(2)} | ${(r.ours.seconds / r.reference.seconds).toFixed(2)} | ` +
        `${(r.ours.peakRssBytes / MiB).toFixed(0)} | ${(r.imageBytes / MiB).toFixed(0)} | ${((r.ours.peakRssBytes - r.imageBytes) / MiB).toFixed(0)} |`,
    );
  }
}
if (!values.only || values.only === 'convert') print(await benchConvert(images, node, byoi, runs, sizes));
if (!values.only || values.only === 'deploy') print(await benchDeploy(images, node, byoi, runs));
if (!values.only || values.only === 'download') print(await benchDownload(images, node, runs));
if (!values.only) await benchFleet({ agents: Number(values['fleet-agents']), customers: Number(values['fleet-customers']), seconds: Number(values['fleet-seconds']) });
