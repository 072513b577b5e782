// npm run bench [-- --runs N --only convert|deploy|download]: byoi against the reference tools, in one run,
// reported as ratios (ours / reference; below 1.0 means byoi is faster).
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { makeBenchImages } from './images.ts';
import { benchConvert, type Row } from './convert.ts';
import { benchDeploy } from './deploy.ts';
import { benchDownload } from './download.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    only: { type: 'string' },
    dir: { type: 'string', default: '/var/tmp/byoi-bench' },
  },
});
const runs = Number(values.runs);
const node = process.execPath;
const byoi = fileURLToPath(new URL('../../agent/byoi.ts', import.meta.url));

const images = makeBenchImages(values.dir!);
const sizes = Object.fromEntries(Object.values(images.qcow2).map((f) => [f, statSync(f).size]));
const rows: Row[] = [];
if (!values.only || values.only === 'convert') rows.push(...(await benchConvert(images, node, byoi, runs, sizes)));
if (!values.only || values.only === 'deploy') rows.push(...(await benchDeploy(images, node, byoi, runs)));
if (!values.only || values.only === 'download') rows.push(...(await benchDownload(images, node, runs)));

const MiB = 1024 * 1024;
const lines = [
  `| case | byoi s | reference s | time ratio | byoi peak RSS MiB | image MiB | RSS - image MiB |`,
  `|---|---|---|---|---|---|---|`,
  ...rows.map((r) =>
    `| ${r.name} | ${r.ours.seconds.toFixed(2)} | ${r.reference.seconds.toFixed(2)} | ${(r.ours.seconds / r.reference.seconds).toFixed(2)} | ` +
    `${(r.ours.peakRssBytes / MiB).toFixed(0)} | ${(r.imageBytes / MiB).toFixed(0)} | ${((r.ours.peakRssBytes - r.imageBytes) / MiB).toFixed(0)} |`),
];
console.log(`medians of ${runs} interleaved runs; reference: qemu-img convert -n (convert), curl|sha256sum + qemu-img convert + sgdisk -e (deploy), curl|sha256sum (download)`);
console.log(lines.join('\n'));
