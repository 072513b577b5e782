// The streaming mode (`byoi deploy --stream`), with --ram-size far below the image's size, onto
// garbage-filled loop devices: raw, gzip/xz/zstd/bzip2-compressed raw and qcow2 (plain and compressed,
// laid out by qemu-img convert) land byte for byte as `qemu-img convert -O raw` makes them, and so
// does a raw image whose transfer drops twice (resumed with Range/If-Range); a wrong checksum and a
// stream cut mid-way by a server that cannot resume leave no partition table at either end of the
// disk and say so;
// what the mode cannot decode (an OVA, a qcow2 whose L1 table follows its L2 tables) is refused
// before anything is written (bzip2 without the native decoders: test/stream/decode-stream.test.ts).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { readAt, sh, sha256Of, sha256OfFile } from '../helpers/deploy.ts';
import { compressFile, deployWithStatus, expectGptImageDeployed, makeGptImage } from '../helpers/gpt-deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { detachAllLoops, detachLoop } from '../helpers/loop.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const DISK_SIZE = 40 * MiB;
/** 1 MiB of RAM budget (3 GiB are kept for the rescue system): the normal mode refuses these images. */
const RAM_SIZE = String(3 * GiB + MiB);

let dir: string;
let server: TestServer;
let reference: Buffer;
const served = new Map<string, string>();

function serve(name: string, file: string, cut?: number): void {
  served.set(name, sha256OfFile(file));
  const body = readFileSync(file);
  server.serve(`/${name}`, cut === undefined ? { body } : { body, mode: 'cut', bytes: cut });
}

/** Served with an ETag and ranges; the first two requests drop the connection part-way. */
function serveDropping(name: string, file: string): void {
  served.set(name, sha256OfFile(file));
  server.serve(`/${name}`, {
    body: readFileSync(file),
    mode: 'faulty',
    faults: [{ drop: 5 * MiB }, { drop: 13 * MiB }],
  });
}

const garbageDisk = (name: string): string => garbageLoop(join(dir, `${name}.disk`), DISK_SIZE);

const deploy = (name: string, type: string, device: string, checksum = served.get(name)!) =>
  deployWithStatus({ dir, name, url: `${server.url}/${name}`, type, sha256: checksum, disk: device }, [
    '--stream',
    '--ram-size',
    RAM_SIZE,
    '--download-attempts',
    '3',
  ]);

const isZeros = (bytes: Buffer): boolean => bytes.every((b) => b === 0);

describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))('byoi deploy --stream', () => {
  beforeAll(async () => {
    assertCapable('root', 'loop', 'qemu-img', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-deploy-stream-'));
    server = await startServer();
    const raw = join(dir, 'gpt.raw');
    reference = makeGptImage(raw, (bytes) => randomBytes(4096).copy(bytes, 20 * MiB));
    serve('gpt.raw', raw);
    for (const [format, command] of [
      ['gz', 'gzip'],
      ['xz', 'xz -T1'],
      ['zst', 'zstd -q'],
      ['bz2', 'bzip2'],
    ] as const) {
      const file = join(dir, `gpt.raw.${format}`);
      compressFile(command, raw, file);
      serve(`gpt.raw.${format}`, file);
    }
    for (const [name, options] of [
      ['plain.qcow2', []],
      ['zlib.qcow2', ['-c']],
      ['small-clusters.qcow2', ['-o', 'cluster_size=4096']],
    ] as const) {
      const file = join(dir, name);
      sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, raw, file]);
      serve(name, file);
    }
    // An L1 table moved behind the L2 tables: 512-byte clusters, then a resize that outgrows the
    // L1's cluster, which qemu re-allocates at the end of the file.
    const moved = join(dir, 'moved-l1.qcow2');
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', moved, '1M']);
    sh('qemu-io', ['-c', 'write -P 0x5a 0 64k', moved]);
    sh('qemu-img', ['resize', '-q', moved, '16M']);
    serve('moved-l1.qcow2', moved);
    serve('cut.raw', raw, 12 * MiB);
    serveDropping('dropping.raw', raw);
    compressFile('gzip', join(dir, 'plain.qcow2'), join(dir, 'plain.qcow2.gz'));
    serve('plain.qcow2.gz', join(dir, 'plain.qcow2.gz'));
    const ova = join(dir, 'x.ova');
    execFileSync('tar', ['--format=ustar', '-cf', ova, '-C', dir, 'gpt.raw']);
    serve('x.ova', ova);
  }, 120_000);

  afterAll(async () => {
    detachAllLoops();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['gpt.raw', 'raw'],
    ['dropping.raw', 'raw'],
    ['gpt.raw.gz', 'raw'],
    ['gpt.raw.xz', 'raw'],
    ['gpt.raw.zst', 'raw'],
    ['gpt.raw.bz2', 'raw'],
    ['plain.qcow2', 'qcow2'],
    ['zlib.qcow2', 'qcow2'],
    ['small-clusters.qcow2', 'qcow2'],
  ])('%s (type %s) with 1 MiB of RAM budget: the disk holds the image', async (name, type) => {
    const device = garbageDisk(name);
    expectGptImageDeployed(await deploy(name, type, device), device, reference, DISK_SIZE);
    detachLoop(device);
  });

  describe('a failure after writing began leaves no partition table, and says so', () => {
    async function expectNoPartitionTable(
      name: string,
      type: string,
      message: RegExp,
      checksum?: string,
    ): Promise<void> {
      const device = garbageDisk(`${name}-fail`);
      const { result, status } = await deploy(name, type, device, checksum);
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.lastLine).toMatch(message);
      expect(result.lastLine).toMatch(new RegExp(`Streaming mode: ${device} was left with no partition table\\.$`));
      expect(status).toMatchObject({ status: 'error', message: result.lastLine });
      expect(isZeros(readAt(device, 0, MiB))).toBe(true);
      expect(isZeros(readAt(device, DISK_SIZE - MiB, MiB))).toBe(true);
      detachLoop(device);
    }

    it('a wrong checksum', async () => {
      const wrong = 'e'.repeat(64);
      await expectNoPartitionTable(
        'gpt.raw.xz',
        'raw',
        new RegExp(`^Bad sha256 for downloaded file, got: ${served.get('gpt.raw.xz')} while expecting ${wrong}\\.`),
        wrong,
      );
    });

    it('a stream cut mid-way', async () => {
      await expectNoPartitionTable(
        'cut.raw',
        'raw',
        /^Could not download image located: http:\/\/127\.0\.0\.1:\d+\/cut\.raw\./,
      );
    });
  });

  describe('refuses what the mode cannot decode, before writing', () => {
    async function expectUntouched(name: string, type: string, message: string | RegExp): Promise<void> {
      const device = garbageDisk(`${name}-refused`);
      const before = await sha256Of(device);
      const { result } = await deploy(name, type, device);
      expect(result.exitCode, result.stderr).toBe(1);
      if (typeof message === 'string') expect(result.lastLine).toBe(message);
      else expect(result.lastLine).toMatch(message);
      expect(await sha256Of(device)).toBe(before);
      detachLoop(device);
    }

    it('an OVA', async () => {
      await expectUntouched(
        'x.ova',
        'ova',
        'Can not deploy an OVA (its disk is read through the whole archive) in streaming mode; deploy it without streaming (it must then fit in RAM).',
      );
    });

    it('a compressed file that holds no disk (its first MiB is decoded before anything is written)', async () => {
      await expectUntouched(
        'plain.qcow2.gz',
        'raw',
        'image provided format is not of type raw because no partition table was found. It seems to contain: a qcow2 image, inside a gzip-compressed file',
      );
    });

    it('a raw image declared qcow2', async () => {
      await expectUntouched(
        'gpt.raw',
        'qcow2',
        'image provided format is raw which does not match expected qcow2 format',
      );
    });
  });

  it('a qcow2 whose L1 table follows its L2 tables: refused naming the mode, no partition table left', async () => {
    const device = garbageDisk('moved-l1');
    const { result } = await deploy('moved-l1.qcow2', 'qcow2', device);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.lastLine).toMatch(
      /^Can not deploy a qcow2 image whose tables do not all precede the clusters they map .* in streaming mode; deploy it without streaming/,
    );
    expect(isZeros(readAt(device, 0, MiB))).toBe(true);
    detachLoop(device);
  });
});
