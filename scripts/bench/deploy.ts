// `byoi deploy` end to end (download from a local HTTP server, verify, write, fix the GPT) against
// the way the peers do it in shell: curl | tee tmpfs | sha256sum, qemu-img convert, sgdisk -e.
import { createReadStream, openSync, closeSync, ftruncateSync, readSync, rmSync, statSync, mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { setTimeout } from 'node:timers/promises';
import { basename, dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { BenchImages } from './images.ts';
import { freshRun, interleaved, measure, summary } from './measure.ts';
import { sha256Of, type Row } from './convert.ts';
import { attachLoop, detachLoop } from '../../test/helpers/loop.ts';

/**
 * Serves `files` in 1 MiB writes; with `bytesPerSecond`, paced to that rate as a link of that
 * speed would deliver them (over loopback, the download is otherwise bound by the CPU alone).
 */
export function serve(files: string[], bytesPerSecond?: number): Promise<Server> {
  const byName = new Map(files.map((f) => [`/${basename(f)}`, f]));
  const server = createServer((req, res) => {
    const file = byName.get(req.url ?? '');
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': statSync(file).size, 'content-type': 'application/octet-stream' });
    const stream = createReadStream(file, { highWaterMark: MiB });
    if (bytesPerSecond === undefined) return void stream.pipe(res);
    void (async () => {
      const start = performance.now();
      let sent = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const due = start + (sent / bytesPerSecond) * 1000;
        const wait = due - performance.now(); // read once: a second reading may be past `due`
        if (wait > 0) await setTimeout(wait);
        if (res.destroyed) return void stream.destroy();
        sent += chunk.length;
        if (!res.write(chunk)) await once(res, 'drain');
      }
      res.end();
    })().catch(() => res.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function fileSha256(path: string): Promise<string> {
  return sha256Of(path, statSync(path).size);
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** A server's 1 Gbit/s link (what OVH's servers mostly have), for the rows where the network is the limit. */
export const GIGABIT = 125_000_000;

/**
 * sha256 of the whole disk but the protective MBR's CHS end address (bytes 451-453), where byoi's
 * `sfdisk --relocate` writes FF FF FF and the baseline's `sgdisk -e` a computed CHS: both valid.
 */
export async function diskDigest(device: string, size: number): Promise<string> {
  const mbr = Buffer.alloc(512);
  const fd = openSync(device, 'r');
  try {
    readSync(fd, mbr, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  mbr.fill(0, 451, 454);
  return createHash('sha256')
    .update(mbr)
    .update(await sha256Of(device, size, 512))
    .digest('hex');
}

export async function benchDeploy(images: BenchImages, node: string, byoi: string, runs: number): Promise<Row[]> {
  const diskSize = images.virtualSize + 1024 * MiB;
  // Its own directory: another checkout may be benchmarking at the same time.
  const shm = mkdtempSync('/dev/shm/byoi-bench-deploy-');
  const backing = join(shm, 'target');
  const download = join(shm, 'download');
  const fd = openSync(backing, 'w');
  ftruncateSync(fd, diskSize);
  closeSync(fd);
  const device = attachLoop(backing);
  const server = await serve(Object.values(images.qcow2));
  const paced = await serve(Object.values(images.qcow2), GIGABIT);
  const status = join(mkdtempSync(join(tmpdir(), 'byoi-bench-')), 'status.json');
  const port = (server.address() as AddressInfo).port;
  const pacedPort = (paced.address() as AddressInfo).port;
  try {
    // Moving the backup GPT to the end of the disk rewrites the primary header too (first MiB) and
    // the old backup (last MiB of the image): what lies between must be the image's own bytes.
    const middle = { start: MiB, end: images.virtualSize - MiB };
    const expected = await sha256Of(images.raw, middle.end, middle.start);
    const rows: Row[] = [];
    const cases = [
      ...Object.entries(images.qcow2).map(([name, image]) => ({ name, image, serverPort: port, link: '' })),
      // Where the network, not the CPU, is the limit: what comes after the last byte shows alone.
      ...Object.entries(images.qcow2).map(([name, image]) => ({
        name,
        image,
        serverPort: pacedPort,
        link: ', server paced to 1 Gbit/s',
      })),
    ];
    for (const { name, image, serverPort, link } of cases) {
      const url = `http://127.0.0.1:${serverPort}/${basename(image)}`;
      const checksum = await fileSha256(image);
      const prepare = () => freshRun(device, image, images);
      /** byoi deploy of this case's image onto the device, with `extra` flags. */
      const deploy =
        (...extra: string[]) =>
        () =>
          measure(node, [
            byoi,
            'deploy',
            ...['--url', url, '--type', 'qcow2', '--checksum', checksum, '--checksum-type', 'sha256'],
            ...['--disk', device, '--no-reboot', '--status-file', status],
            ...extra,
          ]);
      const ours = deploy();
      const pipeline = (cache: 'writeback' | 'none') => () =>
        measure('bash', [
          '-c',
          `set -eo pipefail; got=$(curl -sSf "$0" | tee "$1" | sha256sum | cut -d' ' -f1); [ "$got" = "$2" ];` +
            ` qemu-img convert -t ${cache} -n -f qcow2 -O raw "$1" "$3"; sgdisk -e "$3" >/dev/null; rm -f "$1"`,
          url,
          download,
          checksum,
          device,
        ]);
      const baseline = pipeline('writeback');
      const downloadAlone = () =>
        measure('bash', ['-c', 'set -o pipefail; curl -sSf "$0" | sha256sum >/dev/null', url]);
      // Correctness first: the image's bytes, and the whole disk as the baseline leaves it.
      await baseline();
      const baselineDisk = await diskDigest(device, diskSize);
      await ours();
      const got = await sha256Of(device, middle.end, middle.start);
      if (got !== expected) throw new Error(`byoi deploy of ${name} wrote ${got}, expected ${expected}`);
      const disk = await diskDigest(device, diskSize);
      if (disk !== baselineDisk)
        throw new Error(`byoi deploy of ${name} left a disk (${disk}) unlike the baseline's (${baselineDisk})`);
      const samples = await interleaved(
        runs,
        { ours, reference: baseline, direct: pipeline('none'), downloadAlone },
        prepare,
      );
      rows.push({
        name: `deploy qcow2 ${name}${link}`,
        ours: summary(samples.ours!),
        reference: summary(samples.reference!),
        direct: summary(samples.direct!),
        downloadAlone: summary(samples.downloadAlone!),
        imageBytes: statSync(image).size,
      });
      if (link === '' && name !== 'plain') {
        // RAM for the image and the deployment's working memory only (lib/system/memory.ts
        // roomForDecoded): no decoded cluster kept for the write, which decompresses them all again.
        const scarce = deploy('--ram-size', String(statSync(image).size + 3 * GiB + 512 * MiB + 1));
        await scarce();
        const tight = await interleaved(runs, { ours: scarce, reference: ours }, prepare);
        rows.push({
          name: `deploy qcow2 ${name}, RAM for the image only (reference: byoi with room to keep decoded clusters)`,
          ours: summary(tight.ours!),
          reference: summary(tight.reference!),
          imageBytes: statSync(image).size,
        });
      }
      if (rows.length === 1 && link === '') {
        // What --verify-write costs: the same deployment with and without reading the disk back
        // (the "reference" column of this row is byoi without it).
        const verifying = deploy('--verify-write');
        await verifying();
        const costs = await interleaved(runs, { ours: verifying, reference: ours }, prepare);
        rows.push({
          name: `deploy qcow2 ${name} --verify-write (reference: byoi without it)`,
          ours: summary(costs.ours!),
          reference: summary(costs.reference!),
          imageBytes: statSync(image).size,
        });
        // The same in the streaming mode, which records the written blocks in any order (lib/stream/block-record.ts).
        const streaming = (...extra: string[]) => deploy('--stream', ...extra);
        await streaming('--verify-write')();
        const streamed = await interleaved(
          runs,
          { ours: streaming('--verify-write'), reference: streaming() },
          prepare,
        );
        rows.push({
          name: `deploy --stream qcow2 ${name} --verify-write (reference: byoi --stream without it)`,
          ours: summary(streamed.ours!),
          reference: summary(streamed.reference!),
          imageBytes: statSync(image).size,
        });
      }
    }
    return rows;
  } finally {
    server.close();
    paced.close();
    detachLoop(device);
    rmSync(shm, { recursive: true, force: true });
    rmSync(dirname(status), { recursive: true, force: true });
  }
}
