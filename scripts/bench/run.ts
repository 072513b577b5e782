// npm run bench [-- --runs N --only startup|convert|deploy|download|formats|fleet --size GiB --source]: byoi against the reference tools, in
// one run, reported as ratios (ours / reference; below 1.0 means byoi is faster).
// byoi runs as shipped: the bundle `npm run build` makes (what the container runs), built afresh
// from this checkout into a temporary directory. --source runs agent/byoi.ts through Node's type
// stripping instead (slower to start: it parses and strips every module on each run).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { bundle } from '../bundle.ts';
import { makeBenchImages } from './images.ts';
import { benchConvert, type Row } from './convert.ts';
import type { Measurement } from './measure.ts';
import { benchDeploy } from './deploy.ts';
import { benchDownload } from './download.ts';
import { benchFleet } from './fleet.ts';
import { benchStartup } from './startup.ts';
import { benchFormats } from './formats.ts';
import { checkSharedMemoryFree } from './preflight.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
    dir: { type: 'string', default: '/var/tmp/byoi-bench' },
    source: { type: 'boolean', default: false },
    'fleet-agents': { type: 'string', default: '1000' },
    'fleet-customers': { type: 'string', default: '100' },
    'fleet-seconds': { type: 'string', default: '20' },
    // The images' size in GiB (2, 4, 8...): time and RSS should grow linearly with it.
    size: { type: 'string', default: '2' },
  },
});
const runs = Number(values.runs);
if (values.only === 'fleet') {
  // The API under a fleet's load (scripts/bench/fleet.ts): no images, no agent bundle.
  await benchFleet({
    agents: Number(values['fleet-agents']),
    customers: Number(values['fleet-customers']),
    seconds: Number(values['fleet-seconds']),
  });
  process.exit(0);
}
checkSharedMemoryFree();
const node = process.execPath;
const entry = fileURLToPath(new URL('../../agent/byoi.ts', import.meta.url));
// Its own directory: other checkouts may be benchmarking at the same time.
const bundleDir = mkdtempSync(join(tmpdir(), 'byoi-bench-agent-'));
process.on('exit', () => rmSync(bundleDir, { recursive: true, force: true }));
const byoi = values.source ? entry : (await bundle(entry, bundleDir, 'byoi.mjs'))[0]!;
// The download benchmark's program, bundled alike (as byoi loads it: no type stripping at each start).
const downloadOnce = fileURLToPath(new URL('./download-once.ts', import.meta.url));
const downloader = values.source
  ? downloadOnce
  : (await bundle(downloadOnce, join(bundleDir, 'download'), 'download-once.mjs'))[0]!;

// Made (once) only when a benchmark needs them: the start-up rows do not.
const images = values.only === 'startup' ? undefined! : makeBenchImages(values.dir!, Number(values.size));
const sizes = images ? Object.fromEntries(Object.values(images.qcow2).map((f) => [f, statSync(f).size])) : {};
const MiB = 1024 * 1024;
const seconds = (m: Measurement | undefined) => (m ? m.seconds.toFixed(3) : '');
const ratio = (a: Measurement, b: Measurement | undefined) => (b ? (a.seconds / b.seconds).toFixed(2) : '');
console.log(
  `byoi ${values.source ? 'from source (type stripping)' : 'as bundled'}; ${Number(values.size)} GiB images; medians of ${runs} interleaved runs; load average before: ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log(
  'reference: qemu-img convert -t writeback -n (convert), curl|tee tmpfs|sha256sum + qemu-img convert -t writeback + sgdisk -e (deploy), curl|sha256sum (download); direct: the same with qemu-img -t none (O_DIRECT); before every run the device is flushed and uncached, the image read (served, converted) cached and the other images not, and (in a VM that reports free pages to its host) the memory the run before freed handed back',
);
console.log(
  `| case | byoi s | reference s | time ratio | direct s | ratio to direct | download alone s | ratio to download | byoi peak RSS MiB | image MiB | RSS - image MiB |`,
);
console.log(`|---|---|---|---|---|---|---|---|---|---|---|`);
/** Rows are printed as each benchmark ends: a later failure does not lose them. */
function print(rows: Row[]): void {
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.ours.seconds.toFixed(3)} | ${r.reference.seconds.toFixed(3)} | ${ratio(r.ours, r.reference)} | ${seconds(r.direct)} | ${ratio(r.ours, r.direct)} | ` +
        `${seconds(r.downloadAlone)} | ${ratio(r.ours, r.downloadAlone)} | ${(r.ours.peakRssBytes / MiB).toFixed(0)} | ${(r.imageBytes / MiB).toFixed(0)} | ${((r.ours.peakRssBytes - r.imageBytes) / MiB).toFixed(0)} |`,
    );
  }
}
if (!values.only || values.only === 'startup') print(await benchStartup(node, byoi, runs * 2));
if (!values.only || values.only === 'convert') print(await benchConvert(images, node, byoi, runs, sizes));
if (!values.only || values.only === 'deploy') print(await benchDeploy(images, node, byoi, runs));
if (!values.only || values.only === 'download') print(await benchDownload(images, node, downloader, runs));
if (!values.only || values.only === 'formats') print(await benchFormats(images, node, byoi, runs));
if (!values.only)
  await benchFleet({
    agents: Number(values['fleet-agents']),
    customers: Number(values['fleet-customers']),
    seconds: Number(values['fleet-seconds']),
  });
