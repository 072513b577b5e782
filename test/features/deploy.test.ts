// `byoi deploy` end to end onto loop devices pre-filled with garbage, images served by a real HTTP
// server on 127.0.0.1, made by sgdisk and qemu-img, compared with `qemu-img convert -O raw`.
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../../scripts/bundle.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import {
  byoi,
  byoiWithAddressSpace,
  gptHeaders,
  readAt,
  sh,
  sha256Of,
  sha256OfFile,
  deployArgs,
} from '../helpers/deploy.ts';
import { closedPort, startServer, type TestServer } from '../helpers/http.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';
import { ramBudget, roomForDecoded } from '../../lib/system/memory.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const IMAGE_SIZE = 24 * MiB;
const DISK_SIZE = 40 * MiB;

let dir: string;
let server: TestServer;
/** name -> the file, its sha256, and its raw output by qemu-img (a file) and that output's sha256 */
const images = new Map<
  string,
  { file: string; sha256: string; reference: string; rawSha256: string; virtualSize: number }
>();

function makeRawGpt(path: string): void {
  sh('truncate', ['-s', String(IMAGE_SIZE), path]);
  sh('sgdisk', ['-n1:2048:+4M', '-t1:ef00', '-n2:0:0', '-t2:8300', path]);
  // Data in both partitions, zeros between: the garbage under the zeros must be overwritten.
  const fd = readFileSync(path);
  randomBytes(512 * 1024).copy(fd, 1 * MiB + 4096);
  randomBytes(MiB).copy(fd, 6 * MiB);
  randomBytes(300 * 1024).copy(fd, 15 * MiB + 12345);
  writeFileSync(path, fd);
}

function addImage(name: string, file: string): void {
  const raw = join(dir, `${name}.reference.raw`);
  sh('qemu-img', ['convert', '-O', 'raw', file, raw]);
  const virtualSize = readFileSync(raw).length;
  images.set(name, { file, sha256: sha256OfFile(file), reference: raw, rawSha256: sha256OfFile(raw), virtualSize });
  server.serve(`/${name}`, { body: readFileSync(file) });
}

/** A disk file full of random bytes, on a loop device. */
function garbageDisk(name: string, size = DISK_SIZE): string {
  const file = join(dir, `${name}.disk`);
  writeFileSync(file, randomBytes(size));
  return attachLoop(file);
}

/**
 * The written range is `qemu-img convert`'s output, except what moving the backup GPT rewrites:
 * the protective MBR's partition entry and the primary header (LBA 0's bytes 446-511, LBA 1).
 */
function expectGptImageWritten(device: string, name: string): void {
  const image = images.get(name)!;
  const written = readAt(device, 0, image.virtualSize);
  const reference = readFileSync(image.reference);
  expect(written.subarray(0, 446).equals(reference.subarray(0, 446))).toBe(true);
  expect(written.subarray(1024).equals(reference.subarray(1024))).toBe(true);
}

/** The host offset of the last compressed cluster of a qcow2 file (its first L1 entry's L2 table). */
function lastCompressedCluster(file: Buffer): number {
  const clusterBits = file.readUInt32BE(20);
  const l2 = Number(file.readBigUInt64BE(Number(file.readBigUInt64BE(40))) & 0x00fffffffffffe00n);
  const offsetBits = 62n - BigInt(clusterBits - 8);
  let found = -1;
  for (let i = 0; i < 2 ** (clusterBits - 3); i++) {
    const entry = file.readBigUInt64BE(l2 + 8 * i);
    if (entry & (1n << 62n)) found = Number(entry & ((1n << offsetBits) - 1n));
  }
  if (found < 0) throw new Error('no compressed cluster');
  return found;
}

describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))('byoi deploy', () => {
  beforeAll(async () => {
    assertCapable('root', 'loop', 'qemu-img', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-deploy-'));
    server = await startServer();
    const raw = join(dir, 'gpt.raw');
    makeRawGpt(raw);
    addImage('gpt.raw', raw);
    for (const [name, options] of [
      ['plain.qcow2', []],
      ['zlib.qcow2', ['-c']],
      ['zstd.qcow2', ['-c', '-o', 'compression_type=zstd']],
    ] as const) {
      const file = join(dir, name);
      sh('qemu-img', ['convert', '-O', 'qcow2', ...options, raw, file]);
      addImage(name, file);
    }
    const mbr = join(dir, 'mbr.raw');
    sh('truncate', ['-s', String(8 * MiB), mbr]);
    sh('parted', ['-s', mbr, 'mklabel', 'msdos', 'mkpart', 'primary', 'ext4', '1MiB', '7MiB']);
    addImage('mbr.raw', mbr);
  }, 120_000);

  afterAll(async () => {
    detachAllLoops();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe.each(['gpt.raw', 'plain.qcow2', 'zlib.qcow2', 'zstd.qcow2'])('of %s', (name) => {
    it('writes the image, moves the backup GPT to the end of the disk and reports done', async () => {
      const image = images.get(name)!;
      const device = garbageDisk(name);
      const status = join(dir, `${name}.status.json`);
      const type = name.endsWith('.qcow2') ? 'qcow2' : 'raw';
      const result = await byoi([
        ...deployArgs({
          url: `${server.url}/${name}`,
          type,
          sha256: image.sha256,
          disk: device,
          statusFile: status,
        }),
      ]);
      expect(result.stderr).not.toMatch(/"level":50/);
      expect(result.exitCode, result.stderr).toBe(0);

      expectGptImageWritten(device, name);
      expect(sh('sgdisk', ['-v', device])).toContain('No problems found');
      const gpt = gptHeaders(device, DISK_SIZE);
      expect(gpt.backupSignature).toBe('EFI PART');
      expect(gpt.backupMyLba).toBe(gpt.lastLba);
      expect(gpt.primaryAlternate).toBe(gpt.lastLba);

      const report = JSON.parse(readFileSync(status, 'utf8'));
      expect(report).toMatchObject({ status: 'done', checksum: image.sha256, phase: 'done' });
      // The dry pass ran while the image downloaded, and its result was the one used.
      const inspected = result.stderr.split('\n').find((line) => line.includes('"msg":"Inspecting image: finished"'));
      expect(JSON.parse(inspected!).decodedWhileDownloading).toBe('used');
      detachLoop(device);
    });
  });

  it('keeps the clusters the early pass decoded for the write where RAM allows, none where the budget holds only the image', async () => {
    const name = 'zlib.qcow2';
    const image = images.get(name)!;
    const size = statSync(image.file).size;
    // Kept only from the decompression threads' memory, and only where the budget and the available
    // RAM leave room beside the image: a few MiB here, on any machine that runs this suite.
    const roomy = availableParallelism() > 1 && roomForDecoded(ramBudget(), size, size) > 2 * image.virtualSize;
    if (process.env.CI) expect(roomy).toBe(true);
    const keptBy = async (...extra: string[]): Promise<number | undefined> => {
      const device = garbageDisk(`kept-${extra.length}`);
      const args = deployArgs({
        url: `${server.url}/${name}`,
        type: 'qcow2',
        sha256: image.sha256,
        disk: device,
        statusFile: join(dir, 'kept.status.json'),
      });
      const result = await byoi([...args, ...extra]);
      expect(result.exitCode, result.stderr).toBe(0);
      expectGptImageWritten(device, name);
      detachLoop(device);
      const inspected = result.stderr.split('\n').find((line) => line.includes('"msg":"Inspecting image: finished"'));
      return JSON.parse(inspected!).decodedKeptBytes as number | undefined;
    };
    const kept = await keptBy();
    if (roomy) {
      expect(kept).toBeGreaterThan(0);
      expect(kept! % (64 * 1024)).toBe(0); // whole clusters
      expect(kept).toBeLessThanOrEqual(image.virtualSize);
    }
    // RAM for the image and the working memory only (lib/system/memory.ts): nothing kept, the same bytes written.
    expect(await keptBy('--ram-size', String(size + 3 * GiB + 512 * MiB + 1))).toBeUndefined();
  });

  it('writes a zstd qcow2 under an address-space limit (`ulimit -v`)', async () => {
    // ~19 GiB: each page-aligned memory would reserve ~8 GiB of it, leaving none for the worker
    // threads (whose start then ended the process); under a limit none is made (aligned-memory.ts).
    // The bundle, as servers run it: from the sources, Node's own TypeScript stripping is
    // WebAssembly too, with a memory in each thread that loads a .ts file.
    const program = (await bundle('agent/byoi.ts', join(dir, 'bundle'), 'byoi.mjs'))[0]!;
    const name = 'zstd.qcow2';
    const device = garbageDisk('limited');
    const args = deployArgs({
      url: `${server.url}/${name}`,
      type: 'qcow2',
      sha256: images.get(name)!.sha256,
      disk: device,
      statusFile: join(dir, 'limited.status.json'),
    });
    const result = await byoiWithAddressSpace(20_000_000, program, args);
    expect(result.exitCode, result.stderr).toBe(0);
    expectGptImageWritten(device, name);
    detachLoop(device);
  });

  it('writes a raw MBR image as it is', async () => {
    const image = images.get('mbr.raw')!;
    const device = garbageDisk('mbr');
    const result = await byoi([
      'deploy',
      '--url',
      `${server.url}/mbr.raw`,
      '--type',
      'raw',
      '--disk',
      device,
      '--no-reboot',
    ]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await sha256Of(device, image.virtualSize)).toBe(image.rawSha256);
    expect(sh('sfdisk', ['--dump', device])).toMatch(/label: dos/);
    detachLoop(device);
  });

  describe('refuses, leaving the disk byte for byte as it was', () => {
    let device: string;
    let before: string;
    const status = () => join(dir, 'failure.status.json');

    beforeAll(async () => {
      device = garbageDisk('failures');
      before = await sha256Of(device);
    });

    async function expectFailure(args: string[], exitCode: number, message: string | RegExp): Promise<void> {
      const result = await byoi(['deploy', ...args, '--disk', device, '--no-reboot', '--status-file', status()]);
      expect(result.exitCode, result.stderr).toBe(exitCode);
      if (typeof message === 'string') expect(result.lastLine).toBe(message);
      else expect(result.lastLine).toMatch(message);
      const report = JSON.parse(readFileSync(status(), 'utf8'));
      expect(report.status).toBe('error');
      expect(report.message).toBe(result.lastLine);
      expect(await sha256Of(device)).toBe(before);
    }

    const plain = () => images.get('plain.qcow2')!;

    it('on a 404', async () => {
      await expectFailure(
        ['--url', `${server.url}/missing.qcow2`, '--type', 'qcow2'],
        1,
        `Could not download image located: ${server.url}/missing.qcow2.`,
      );
    });

    it('on a refused connection', async () => {
      const url = `http://127.0.0.1:${await closedPort()}/x.qcow2`;
      await expectFailure(
        ['--url', url, '--type', 'qcow2', '--download-attempts', '2'],
        1,
        `Could not download image located: ${url}.`,
      );
    });

    it('on a bad number of download connections, before any download', async () => {
      for (const value of ['0', '17', '2.5']) {
        await expectFailure(
          ['--url', `${server.url}/plain.qcow2`, '--type', 'qcow2', '--download-connections', value],
          2,
          'Bad --download-connections, expected: an integer from 1 to 16.',
        );
      }
    });

    it('on a body cut mid-way', async () => {
      server.serve('/cut.qcow2', { body: readFileSync(plain().file), mode: 'cut', bytes: 256 * 1024 });
      await expectFailure(
        ['--url', `${server.url}/cut.qcow2`, '--type', 'qcow2', '--download-attempts', '2'],
        1,
        `Could not download image located: ${server.url}/cut.qcow2.`,
      );
    });

    it('on a checksum mismatch', async () => {
      const wrong = 'f'.repeat(64);
      await expectFailure(
        ['--url', `${server.url}/plain.qcow2`, '--type', 'qcow2', '--checksum', wrong, '--checksum-type', 'sha256'],
        1,
        `Bad sha256 for downloaded file, got: ${plain().sha256} while expecting ${wrong}.`,
      );
    });

    it('on an image too big for the RAM budget, by Content-Length or while downloading', async () => {
      const ramSize = String(3 * GiB + MiB);
      const message = 'Could not download, qcow2 image is too big to download in memory.';
      await expectFailure(['--url', `${server.url}/plain.qcow2`, '--type', 'qcow2', '--ram-size', ramSize], 1, message);
      server.serve('/chunked.qcow2', { body: readFileSync(plain().file), mode: 'chunked' });
      await expectFailure(
        ['--url', `${server.url}/chunked.qcow2`, '--type', 'qcow2', '--ram-size', ramSize],
        1,
        message,
      );
    });

    it('on a malformed qcow2', async () => {
      const bytes = readFileSync(plain().file);
      bytes.writeBigUInt64BE(0x7fff0000n, 40); // l1_table_offset far past the end of the file
      server.serve('/bad-l1.qcow2', { body: bytes });
      await expectFailure(
        ['--url', `${server.url}/bad-l1.qcow2`, '--type', 'qcow2'],
        1,
        /^Bad qcow2 image: .*L1.*beyond the end of the file/,
      );
    });

    it('on a compressed cluster that does not inflate (found by decoding only), and on a checksum mismatch first', async () => {
      const bytes = readFileSync(images.get('zlib.qcow2')!.file);
      const at = lastCompressedCluster(bytes);
      bytes.fill(0xff, at, at + 64);
      server.serve('/bad-cluster.qcow2', { body: bytes });
      const url = `${server.url}/bad-cluster.qcow2`;
      await expectFailure(
        ['--url', url, '--type', 'qcow2'],
        1,
        /^Bad qcow2 image: the zlib data of guest offset 0x[0-9a-f]+ does not decompress to exactly one cluster/,
      );
      // The checksum is judged before the decoding, however early the decoding ran.
      const wrong = '0'.repeat(64);
      await expectFailure(
        ['--url', url, '--type', 'qcow2', '--checksum', wrong, '--checksum-type', 'sha256'],
        1,
        /^Bad sha256 for downloaded file/,
      );
    });

    it('on a raw image declared qcow2', async () => {
      await expectFailure(
        ['--url', `${server.url}/gpt.raw`, '--type', 'qcow2'],
        1,
        'image provided format is raw which does not match expected qcow2 format',
      );
    });

    it('on a qcow2 or a bare filesystem declared raw', async () => {
      await expectFailure(
        ['--url', `${server.url}/plain.qcow2`, '--type', 'raw'],
        1,
        'image provided format is not of type raw because no partition table was found. It seems to contain: a qcow2 image',
      );
      const fs = join(dir, 'bare.ext4');
      sh('truncate', ['-s', String(8 * MiB), fs]);
      sh('mkfs.ext4', ['-q', fs]);
      server.serve('/bare.ext4', { body: readFileSync(fs) });
      await expectFailure(
        ['--url', `${server.url}/bare.ext4`, '--type', 'raw'],
        1,
        /^image provided format is not of type raw because no partition table was found\. It seems to contain: .*ext4/,
      );
    });

    it('on a qcow2 whose disk holds no partition table (a bare filesystem, or nothing), as a raw one is', async () => {
      const fs = join(dir, 'bare-fs.ext4');
      sh('truncate', ['-s', String(8 * MiB), fs]);
      sh('mkfs.ext4', ['-q', fs]);
      sh('qemu-img', ['convert', '-O', 'qcow2', fs, join(dir, 'bare-fs.qcow2')]);
      server.serve('/bare-fs.qcow2', { body: readFileSync(join(dir, 'bare-fs.qcow2')) });
      await expectFailure(
        ['--url', `${server.url}/bare-fs.qcow2`, '--type', 'qcow2'],
        1,
        /^image provided is of type qcow2 but its disk has no partition table\. It seems to contain: .*ext4/,
      );
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'empty.qcow2'), String(8 * MiB)]);
      server.serve('/empty.qcow2', { body: readFileSync(join(dir, 'empty.qcow2')) });
      await expectFailure(
        ['--url', `${server.url}/empty.qcow2`, '--type', 'qcow2'],
        1,
        'image provided is of type qcow2 but its disk has no partition table. It seems to contain: a file of unknown format',
      );
    });

    it('on an image of exactly the server RAM minus 3 GiB ("smaller than" is the contract)', async () => {
      const ramSize = String(3 * GiB + statSync(plain().file).size);
      const message = 'Could not download, qcow2 image is too big to download in memory.';
      await expectFailure(['--url', `${server.url}/plain.qcow2`, '--type', 'qcow2', '--ram-size', ramSize], 1, message);
      server.serve('/chunked-exact.qcow2', { body: readFileSync(plain().file), mode: 'chunked' });
      await expectFailure(
        ['--url', `${server.url}/chunked-exact.qcow2`, '--type', 'qcow2', '--ram-size', ramSize],
        1,
        message,
      );
    });

    it('on an image larger than the disk', async () => {
      const image = join(dir, 'large.qcow2');
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(DISK_SIZE + MiB)]);
      server.serve('/large.qcow2', { body: readFileSync(image) });
      await expectFailure(
        ['--url', `${server.url}/large.qcow2`, '--type', 'qcow2'],
        1,
        `image provided has a size of ${DISK_SIZE + MiB} bytes which is larger than device of ${DISK_SIZE} bytes`,
      );
    });

    it('on an invalid job, with exit code 2', async () => {
      await expectFailure(
        ['--url', `${server.url}/plain.qcow2`, '--type', 'vmdk'],
        2,
        'Bad format image, expected: qcow2, raw, ova.',
      );
      await expectFailure(
        ['--url', `${server.url}/plain.qcow2`, '--type', 'qcow2', '--checksum', plain().sha256],
        2,
        'Please provide checkSum AND checkSumType or none of them',
      );
      await expectFailure(
        [
          '--url',
          `${server.url}/plain.qcow2`,
          '--type',
          'qcow2',
          '--checksum',
          plain().sha256,
          '--checksum-type',
          'crc',
        ],
        2,
        'Bad checkSumType, expected: md5, sha1, sha256, sha512.',
      );
    });
  });

  it("fails with OVH's GPT sentence when sgdisk cannot make the GPT sound", async () => {
    // Two partitions that overlap, with every CRC right: sgdisk -e cannot repair that.
    const file = join(dir, 'overlap.raw');
    sh('truncate', ['-s', String(8 * MiB), file]);
    sh('sgdisk', ['-n1:2048:8191', '-n2:8192:12287', file]);
    const bytes = readFileSync(file);
    for (const headerAt of [512, bytes.length - 512]) {
      const entriesAt = Number(bytes.readBigUInt64LE(headerAt + 72)) * 512;
      const entrySize = bytes.readUInt32LE(headerAt + 84);
      const entriesLength = bytes.readUInt32LE(headerAt + 80) * entrySize;
      bytes.writeBigUInt64LE(4096n, entriesAt + entrySize + 32); // partition 2 now starts inside partition 1
      bytes.writeUInt32LE(crc32(bytes.subarray(entriesAt, entriesAt + entriesLength)), headerAt + 88);
      bytes.writeUInt32LE(0, headerAt + 16);
      bytes.writeUInt32LE(crc32(bytes.subarray(headerAt, headerAt + 92)), headerAt + 16);
    }
    server.serve('/overlap.raw', { body: bytes });
    const device = garbageDisk('overlap');
    const result = await byoi([
      'deploy',
      '--url',
      `${server.url}/overlap.raw`,
      '--type',
      'raw',
      '--disk',
      device,
      '--no-reboot',
    ]);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.lastLine).toBe('Can not move backup GPT data structures to the end of disk.');
    detachLoop(device);
  });

  it('reads a job body from stdin and never shows a secret, even while retrying and resuming', async () => {
    const image = images.get('zstd.qcow2')!;
    const secrets = { header: 'Sup3rSecretHeaderValue', password: 'Passw0rdInUrl', token: 'QueryT0kenValue' };
    const size = readFileSync(image.file).length;
    server.serve('/private.qcow2', {
      body: readFileSync(image.file),
      mode: 'faulty',
      faults: [{ drop: Math.floor(size / 3) }, { status: 503 }, { drop: Math.floor((2 * size) / 3) }],
    });
    const device = garbageDisk('secrets');
    const status = join(dir, 'secrets.status.json');
    const base = `http://deployer:${secrets.password}@${server.url.slice('http://'.length)}`;
    const body = (path: string) =>
      JSON.stringify({
        operatingSystem: 'byoi_64',
        customizations: {
          imageURL: `${base}${path}?token=${secrets.token}`,
          imageType: 'qcow2',
          httpHeaders: { 'X-Api-Key': secrets.header },
        },
      });
    const outputs: string[] = [];
    const ok = await byoi(
      ['deploy', '--job', '-', '--disk', device, '--no-reboot', '--status-file', status],
      body('/private.qcow2'),
    );
    expect(ok.exitCode, ok.stderr).toBe(0);
    expectGptImageWritten(device, 'zstd.qcow2');
    const requests = server.requests.filter((r) => r.path === '/private.qcow2');
    expect(requests.map((r) => r.headers.range)).toEqual([
      undefined,
      `bytes=${Math.floor(size / 3)}-`,
      `bytes=${Math.floor(size / 3)}-`,
      `bytes=${Math.floor((2 * size) / 3)}-`,
    ]);
    for (const request of requests) expect(request.headers['x-api-key']).toBe(secrets.header);
    const lines = ok.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; time: number; progress?: { etaSeconds: number | null } });
    expect(lines.filter((l) => l.msg === 'download interrupted: retrying')).toHaveLength(3);
    // Progress events carry an ETA and come at most twice a second.
    const progress = lines.filter((l) => l.msg === 'progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((l) => l.progress && 'etaSeconds' in l.progress)).toBe(true);
    for (let i = 1; i < progress.length; i++)
      expect(progress[i]!.time - progress[i - 1]!.time).toBeGreaterThanOrEqual(500);
    // Decoding the image before the write (seconds for a large compressed one) has its progress too.
    const inspected = lines.find((l) => l.msg === 'Inspecting image: finished');
    expect(inspected?.progress).toMatchObject({ done: image.virtualSize, total: image.virtualSize });
    outputs.push(ok.stdout, ok.stderr, readFileSync(status, 'utf8'));

    const failure = await byoi(
      ['deploy', '--job', '-', '--disk', device, '--no-reboot', '--status-file', status],
      body('/nowhere.qcow2'),
    );
    expect(failure.exitCode).toBe(1);
    expect(failure.lastLine).toBe(
      `Could not download image located: http://***@${server.url.slice('http://'.length)}/nowhere.qcow2?token=***.`,
    );
    outputs.push(failure.stdout, failure.stderr, readFileSync(status, 'utf8'));

    for (const output of outputs) for (const secret of Object.values(secrets)) expect(output).not.toContain(secret);
    detachLoop(device);
  });
});
