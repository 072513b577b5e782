// A disk that fails part-way through the write (no device-mapper here): a loop device over a
// sparse file on a small loop-mounted ext4 filesystem, which runs out of space mid-image.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { byoi, readAt, sh } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
const DISK_SIZE = 40 * MiB;

/** True when these bytes hold no MBR signature and no GPT header. */
function noPartitionTable(head: Buffer, tail: Buffer): boolean {
  const mbr = head[510] === 0x55 && head[511] === 0xaa;
  const gpt =
    head.toString('latin1', 512, 520) === 'EFI PART' ||
    tail.toString('latin1', tail.length - 512, tail.length - 504) === 'EFI PART';
  return !mbr && !gpt;
}

describe.skipIf(skipWithout('root', 'loop', 'sgdisk'))('byoi deploy onto a disk that fails mid-write', () => {
  let dir: string;
  let mountpoint: string;
  let mounted = false;
  let server: TestServer;

  beforeAll(async () => {
    assertCapable('root', 'loop', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-write-error-'));
    server = await startServer();
  });

  let diskDevice: string | undefined;

  afterAll(async () => {
    // The disk's loop device first, then the filesystem that holds its file, then its loop device.
    if (diskDevice) detachLoop(diskDevice);
    if (mounted) sh('umount', [mountpoint]);
    detachAllLoops();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("says Can't write, exits 1 and leaves no partition table", async () => {
    // 12 MiB of ext4 holds about 10 MiB of data: the 24 MiB of incompressible image cannot fit.
    const fsFile = join(dir, 'small.ext4');
    sh('truncate', ['-s', String(12 * MiB), fsFile]);
    sh('mkfs.ext4', ['-q', '-m', '0', fsFile]);
    const fsDevice = attachLoop(fsFile);
    mountpoint = join(dir, 'mnt');
    mkdirSync(mountpoint);
    sh('mount', [fsDevice, mountpoint]);
    mounted = true;

    // The disk: sparse, with an old GPT on it, as a previous install would leave.
    const diskFile = join(mountpoint, 'disk');
    sh('truncate', ['-s', String(DISK_SIZE), diskFile]);
    sh('sgdisk', ['-n1:0:0', diskFile]);
    diskDevice = attachLoop(diskFile);
    expect(noPartitionTable(readAt(diskDevice, 0, MiB), readAt(diskDevice, DISK_SIZE - MiB, MiB))).toBe(false);

    const image = join(dir, 'full.raw');
    sh('truncate', ['-s', String(24 * MiB), image]);
    sh('sgdisk', ['-n1:2048:0', image]);
    const bytes = readFileSync(image);
    randomBytes(22 * MiB).copy(bytes, MiB);
    writeFileSync(image, bytes);
    server.serve('/full.raw', { body: bytes });

    const status = join(dir, 'status.json');
    const result = await byoi([
      'deploy',
      '--url',
      `${server.url}/full.raw`,
      '--type',
      'raw',
      '--disk',
      diskDevice,
      '--no-reboot',
      '--status-file',
      status,
    ]);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.lastLine).toBe("Can't write raw on disk.");
    const report = JSON.parse(readFileSync(status, 'utf8'));
    expect(report).toMatchObject({ status: 'error', message: "Can't write raw on disk.", phase: 'write' });
    expect(report.detail).toMatch(/.+/);

    expect(noPartitionTable(readAt(diskDevice, 0, MiB), readAt(diskDevice, DISK_SIZE - MiB, MiB))).toBe(true);
    // And in the backing file itself, past the loop device's cache.
    detachLoop(diskDevice);
    diskDevice = undefined;
    expect(noPartitionTable(readAt(diskFile, 0, MiB), readAt(diskFile, DISK_SIZE - MiB, MiB))).toBe(true);
  });
});
