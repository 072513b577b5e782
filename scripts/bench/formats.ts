// What distributions and appliances publish, converted onto a loop device: an OVA holding a
// streamOptimized VMDK against `qemu-img convert` of that VMDK (`-t writeback`, and `-t none` as
// the direct column), and `.raw.xz` / `.raw.bz2` against `xz -d | dd` / `bzip2 -d | dd`; and a
// deployment of the `.raw.xz` against the peers' pipeline (curl | tee tmpfs | sha256sum, xz -d |
// dd, sgdisk -e) and the download alone. The disk is the first 512 MiB of the benchmark disk (kept
// small: xz and bzip2 are slow to make and to decode).
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Row } from './convert.ts';
import { diskDigest, GIGABIT, serve } from './deploy.ts';
import { sha256Of } from './convert.ts';
import type { BenchImages } from './images.ts';
import { flushDevice, interleaved, measure, settleFreedMemory, summary } from './measure.ts';
import { attachLoop, detachLoop } from '../../test/helpers/loop.ts';
import { makeOva } from '../../test/helpers/ova-fixtures.ts';

const MiB = 1024 * 1024;
const SIZE = 512 * MiB;
const RECIPE =
  'v2: first 512 MiB of the bench disk, its GPT fitted to it; xz -6 -T1, bzip2 -9, streamOptimized VMDK in an OVA';

interface FormatImages {
  raw: string;
  xz: string;
  bz2: string;
  vmdk: string;
  ova: string;
}

function makeFormatImages(images: BenchImages): FormatImages {
  const dir = join(images.raw, '..', 'formats');
  mkdirSync(dir, { recursive: true });
  const out: FormatImages = {
    raw: join(dir, 'disk.raw'),
    xz: join(dir, 'disk.raw.xz'),
    bz2: join(dir, 'disk.raw.bz2'),
    vmdk: join(dir, 'disk1.vmdk'),
    ova: join(dir, 'appliance.ova'),
  };
  const stamp = join(dir, 'recipe');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === RECIPE) return out;
  process.stderr.write('bench: making the format images (once)...\n');
  execFileSync('sh', ['-c', 'head -c "$1" "$2" > "$3"', 'sh', String(SIZE), images.raw, out.raw]);
  // A disk of its own (the deployment row writes it as one): the backup GPT at its end, the
  // partition ending there too.
  execFileSync('sgdisk', ['-e', '-d', '1', '-n', '1:2048:0', '-t', '1:8300', out.raw], { stdio: 'ignore' });
  execFileSync('sh', ['-c', 'xz -6 -T1 -c "$1" > "$2"', 'sh', out.raw, out.xz]);
  execFileSync('sh', ['-c', 'bzip2 -9 -c "$1" > "$2"', 'sh', out.raw, out.bz2]);
  execFileSync('qemu-img', [
    'convert',
    '-f',
    'raw',
    '-O',
    'vmdk',
    '-o',
    'subformat=streamOptimized',
    out.raw,
    out.vmdk,
  ]);
  makeOva(dir, 'appliance', [{ path: out.vmdk, capacity: SIZE, address: '0' }]);
  writeFileSync(stamp, RECIPE);
  return out;
}

export async function benchFormats(images: BenchImages, node: string, byoi: string, runs: number): Promise<Row[]> {
  const files = makeFormatImages(images);
  const backing = '/dev/shm/byoi-bench-formats-target';
  const fd = openSync(backing, 'w');
  // Room after the disk for the deployment's backup GPT to move to; a convert writes the first SIZE bytes.
  ftruncateSync(fd, SIZE + 64 * MiB);
  closeSync(fd);
  const device = attachLoop(backing);
  try {
    const expected = await sha256Of(files.raw, SIZE);
    const dd = (decoder: string, file: string) => () =>
      measure('sh', [
        '-c',
        `${decoder} -d -c "$1" | dd of="$2" bs=4M iflag=fullblock conv=fdatasync status=none`,
        'sh',
        file,
        device,
      ]);
    const qemuImg = (cache: string) => () =>
      measure('qemu-img', ['convert', '-t', cache, '-n', '-f', 'vmdk', '-O', 'raw', files.vmdk, device]);
    // [name, image, reference, direct: the reference at its fastest (O_DIRECT), where it has one]
    const cases: [string, string, () => ReturnType<typeof measure>, (() => ReturnType<typeof measure>)?][] = [
      [
        'convert OVA (streamOptimized VMDK) vs qemu-img convert of the VMDK',
        files.ova,
        qemuImg('writeback'),
        qemuImg('none'),
      ],
      ['convert .raw.xz vs xz -d piped to dd', files.xz, dd('xz', files.xz)],
      ['convert .raw.bz2 vs bzip2 -d piped to dd', files.bz2, dd('bzip2', files.bz2)],
    ];
    const rows: Row[] = [];
    for (const [name, image, reference, direct] of cases) {
      await measure(node, [byoi, 'convert', image, device]);
      const got = await sha256Of(device, SIZE);
      if (got !== expected) throw new Error(`byoi convert of ${image} wrote ${got}, expected ${expected}`);
      const samples = await interleaved(
        runs,
        { ours: () => measure(node, [byoi, 'convert', image, device]), reference, ...(direct && { direct }) },
        () => flushDevice(device).then(settleFreedMemory),
      );
      rows.push({
        name,
        ours: summary(samples.ours!),
        reference: summary(samples.reference!),
        ...(samples.direct && { direct: summary(samples.direct) }),
        imageBytes: statSync(image).size,
      });
    }
    rows.push(await deployRow(files, node, byoi, runs, device));
    // Where the network is the limit, decoding as the bytes arrive shows: what is left after the last one.
    rows.push(await deployRow(files, node, byoi, runs, device, GIGABIT));
    return rows;
  } finally {
    detachLoop(device);
    rmSync(backing, { force: true });
  }
}

/**
 * `byoi deploy` of the .raw.xz from a local server (paced to `bytesPerSecond`, if given), against
 * the peers' shell pipeline and the download alone.
 */
async function deployRow(
  files: FormatImages,
  node: string,
  byoi: string,
  runs: number,
  device: string,
  bytesPerSecond?: number,
): Promise<Row> {
  const server = await serve([files.xz], bytesPerSecond);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${basename(files.xz)}`;
  const tmp = '/dev/shm/byoi-bench-formats-download';
  const status = '/dev/shm/byoi-bench-formats-status.json';
  try {
    const checksum = await sha256Of(files.xz, statSync(files.xz).size);
    const ours = () =>
      measure(node, [
        byoi,
        'deploy',
        ...['--url', url, '--type', 'raw', '--checksum', checksum, '--checksum-type', 'sha256'],
        ...['--disk', device, '--no-reboot', '--status-file', status],
      ]);
    const pipeline = () =>
      measure('bash', [
        '-c',
        `set -eo pipefail; got=$(curl -sSf "$0" | tee "$1" | sha256sum | cut -d' ' -f1); [ "$got" = "$2" ];` +
          ` xz -d -c "$1" | dd of="$3" bs=4M iflag=fullblock conv=fdatasync status=none; sgdisk -e "$3" >/dev/null; rm -f "$1"`,
        url,
        tmp,
        checksum,
        device,
      ]);
    const downloadAlone = () => measure('bash', ['-c', 'set -o pipefail; curl -sSf "$0" | sha256sum >/dev/null', url]);
    // Correctness first: both leave the same disk (but the protective MBR's CHS bytes, masked).
    const size = SIZE + 64 * MiB;
    await pipeline();
    const theirs = await diskDigest(device, size);
    await ours();
    const got = await diskDigest(device, size);
    if (got !== theirs)
      throw new Error(`byoi deploy of ${files.xz} left a disk (${got}) unlike the pipeline's (${theirs})`);
    const samples = await interleaved(runs, { ours, reference: pipeline, downloadAlone }, () =>
      flushDevice(device).then(settleFreedMemory),
    );
    return {
      name: `deploy .raw.xz vs curl|tee tmpfs|sha256sum, xz -d | dd, sgdisk -e${bytesPerSecond ? `, server paced to ${(bytesPerSecond * 8) / 1e9} Gbit/s` : ''}`,
      ours: summary(samples.ours!),
      reference: summary(samples.reference!),
      downloadAlone: summary(samples.downloadAlone!),
      imageBytes: statSync(files.xz).size,
    };
  } finally {
    server.close();
    rmSync(tmp, { force: true });
    rmSync(status, { force: true });
  }
}
