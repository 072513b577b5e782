// `byoi convert` and `byoi inspect` end to end, through the CLI: raw images into sparse files and
// onto garbage-filled loop devices (512- and 4096-byte sectors), refusals that leave the target
// untouched, usage errors, a real I/O error (a loop device over a file on a full filesystem), and
// a compressed image written under an address-space limit.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  truncateSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';
import { cli, cliWithAddressSpace, fillWithGarbage, lastLine, makeRawImage, sha256 } from '../helpers/convert.ts';

const MiB = 1024 * 1024;
let dir: string;

let raw: string;
let rawSize: number;
let rawData: number;
let rawSha: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'byoi-convert-'));
  raw = join(dir, 'disk.raw');
  ({ size: rawSize, dataBytes: rawData } = makeRawImage(raw));
  rawSha = sha256(raw);
});
afterAll(() => {
  detachAllLoops();
  rmSync(dir, { recursive: true, force: true });
});

describe('byoi convert into a regular file', () => {
  it('writes the raw disk byte for byte, with holes where it is zero', async () => {
    const target = join(dir, 'out-new.raw');
    const result = await cli('convert', raw, target);
    expect(result.code, result.stderr).toBe(0);
    expect(statSync(target).size).toBe(rawSize);
    expect(sha256(target)).toBe(rawSha);
    // Allocated blocks: the data (rounded to blocks), plus at most the first MiB written whole.
    const allocated = statSync(target).blocks * 512;
    expect(allocated).toBeLessThan(rawData + MiB + 64 * 4096);
    expect(allocated).toBeGreaterThanOrEqual(rawData - 4096);
  });

  it('replaces an existing larger file, truncated to the virtual size', async () => {
    const target = join(dir, 'out-existing.raw');
    writeFileSync(target, '');
    truncateSync(target, 64 * MiB);
    fillWithGarbage(target, 64 * MiB);
    const result = await cli('convert', '--type', 'raw', raw, target);
    expect(result.code, result.stderr).toBe(0);
    expect(statSync(target).size).toBe(rawSize);
    expect(sha256(target)).toBe(rawSha);
  });
});

describe('refusals and usage errors', () => {
  it('refuses a gzip-compressed qcow2 (not a disk) without creating the target file', async () => {
    const qcow2 = join(dir, 'disk-for-gzip.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
    const gz = join(dir, 'disk.qcow2.gz');
    execFileSync('sh', ['-c', 'gzip -1 -c < "$1" > "$2"', 'sh', qcow2, gz]);
    const target = join(dir, 'never-created.raw');
    const result = await cli('convert', gz, target);
    expect(result.code).toBe(1);
    expect(lastLine(result.stderr)).toBe(
      'image provided format is gzip-compressed qcow2 (a qcow2 image, inside a gzip-compressed file) which byoi cannot convert, expected: qcow2, raw, ova, vmdk.',
    );
    expect(existsSync(target)).toBe(false);
  });

  it('refuses --type qcow2 on a raw disk, leaving an existing target byte-identical', async () => {
    const target = join(dir, 'kept.raw');
    writeFileSync(target, randomBytes(3 * MiB));
    const before = sha256(target);
    const result = await cli('convert', '--type', 'qcow2', raw, target);
    expect(result.code).toBe(1);
    expect(lastLine(result.stderr)).toBe('image provided format is raw which does not match expected qcow2 format');
    expect(sha256(target)).toBe(before);
  });

  it('refuses a VMDK descriptor without its extent in inspect and convert', async () => {
    const vmdk = join(dir, 'disk.vmdk');
    execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', vmdk, '16M']);
    const inspect = await cli('inspect', vmdk);
    expect(inspect.code).toBe(1);
    expect(lastLine(inspect.stderr)).toBe(
      'Unsupported VMDK image: a VMDK descriptor file; byoi reads monolithicSparse and streamOptimized VMDKs, one file each.',
    );
    const convert = await cli('convert', vmdk, join(dir, 'no.raw'));
    expect(convert.code).toBe(1);
    expect(existsSync(join(dir, 'no.raw'))).toBe(false);
  });

  it('exits 2 on usage errors', async () => {
    for (const args of [
      ['convert'],
      ['convert', raw],
      ['convert', '--type', 'vhd', raw, join(dir, 'x')],
      ['inspect'],
    ]) {
      const result = await cli(...args);
      expect(result.code, args.join(' ')).toBe(2);
    }
    const directory = join(dir, 'a-directory');
    mkdirSync(directory, { recursive: true });
    const result = await cli('convert', raw, directory);
    expect(result.code).toBe(2);
    expect(lastLine(result.stderr)).toMatch(/it is a directory/);
    const missing = await cli('convert', join(dir, 'no-such-image'), join(dir, 'y'));
    expect(missing.code).toBe(2);
    expect(lastLine(missing.stderr)).toMatch(/no such file/);
  });
});

describe('byoi inspect', () => {
  it('reports a raw disk as JSON', async () => {
    const result = await cli('inspect', '--json', raw);
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.format).toBe('raw');
    expect(report.virtualSize).toBe(rawSize);
    expect(report.detected.format).toBe('unknown'); // random bytes at 0, no partition table
    // Counted in 64 KiB blocks: every data byte is in an allocated block, and no block is all zeros.
    expect(report.allocatedBytes).toBeGreaterThanOrEqual(rawData);
    expect(report.allocatedBytes).toBeLessThan(rawData + 7 * 64 * 1024);
  });

  it('ends every time: 40 runs in a row, none hanging at exit', async () => {
    // process.exit() hung about one run in fifteen (nodejs/node#54918): agent/run.ts lets the event
    // loop end instead. At that rate, 40 clean runs in a row happen by chance about once in 16;
    // a hung run fails the test by its timeout.
    for (let i = 0; i < 40; i++) {
      const result = await cli('inspect', '--json', raw);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe(''); // nothing left open for agent/run.ts to name
    }
  }, 200_000);
  it('names the content of a GPT disk', async () => {
    const disk = join(dir, 'gpt.raw');
    writeFileSync(disk, '');
    truncateSync(disk, 16 * MiB);
    execFileSync('sgdisk', ['-n', '1:2048:0', disk], { stdio: 'ignore' });
    const result = await cli('inspect', disk);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/content:\s+a disk image with a GPT partition table/);
  });
});

describe.skipIf(skipWithout('root', 'loop'))('byoi convert onto loop devices', () => {
  beforeAll(() => assertCapable('root', 'loop'));

  function garbageDevice(size: number, sectorSize: 512 | 4096): string {
    const backing = join(dir, `device-${sectorSize}-${size}-${randomBytes(3).toString('hex')}`);
    writeFileSync(backing, '');
    truncateSync(backing, size);
    const device = attachLoop(backing, { sectorSize });
    fillWithGarbage(device, size);
    return device;
  }

  for (const sectorSize of [512, 4096] as const) {
    it(`writes the disk onto a garbage-filled device with ${sectorSize}-byte sectors`, async () => {
      const device = garbageDevice(64 * MiB, sectorSize);
      try {
        const result = await cli('convert', raw, device);
        expect(result.code, result.stderr).toBe(0);
        expect(sha256(device, rawSize)).toBe(rawSha);
        // The old backup GPT area at the end of the device is gone too.
        const tail = Buffer.alloc(MiB);
        const fd = openSync(device, 'r');
        readSync(fd, tail, 0, MiB, 63 * MiB);
        closeSync(fd);
        expect(tail.every((b) => b === 0)).toBe(true);
      } finally {
        detachLoop(device);
      }
    });
  }

  it('writes zeros itself on a device that cannot zero a range by offload', async () => {
    // A loop device over tmpfs loses write-zeroes offload once BLKZEROOUT finds tmpfs lacks
    // ZERO_RANGE: then fallocate(PUNCH_HOLE) on it fails, and the writer must write the zeros.
    const backing = join('/dev/shm', `byoi-test-${randomBytes(4).toString('hex')}`);
    writeFileSync(backing, '');
    truncateSync(backing, 64 * MiB);
    const device = attachLoop(backing);
    try {
      fillWithGarbage(device, 64 * MiB);
      execFileSync('blkdiscard', ['--force', '--zeroout', '--length', String(MiB), device], { stdio: 'ignore' });
      expect(() =>
        execFileSync('fallocate', ['--punch-hole', '--length', String(MiB), device], { stdio: 'ignore' }),
      ).toThrow();
      fillWithGarbage(device, 64 * MiB);
      const result = await cli('convert', raw, device);
      expect(result.code, result.stderr).toBe(0);
      expect(sha256(device, rawSize)).toBe(rawSha);
    } finally {
      detachLoop(device);
      rmSync(backing, { force: true });
    }
  });

  it('writes a compressed image where the address space runs out (`ulimit -v`), byte for byte', async () => {
    // ~19 GiB: aligned memories (each reserves ~8 GiB) for the writer's staging, the lending slab
    // and the decompression arena would not all fit; none is made (aligned-memory.ts).
    const zstd = join(dir, 'disk-zstd.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd', raw, zstd]);
    const device = garbageDevice(64 * MiB, 4096);
    try {
      const result = await cliWithAddressSpace(20_000_000, 'convert', zstd, device);
      expect(result.code, result.stderr).toBe(0);
      expect(sha256(device, rawSize)).toBe(rawSha);
    } finally {
      detachLoop(device);
    }
  });

  it('refuses a device that holds a mounted filesystem, leaving it untouched', async () => {
    const backing = join(dir, 'mounted-device');
    writeFileSync(backing, '');
    truncateSync(backing, 64 * MiB);
    execFileSync('mkfs.ext4', ['-F', '-q', backing]);
    const device = attachLoop(backing);
    const mountpoint = join(dir, 'mounted');
    mkdirSync(mountpoint);
    execFileSync('mount', [device, mountpoint]);
    try {
      execFileSync('sync');
      const before = sha256(device);
      const result = await cli('convert', raw, device);
      expect(result.code).toBe(1);
      expect(lastLine(result.stderr)).toBe(
        `Can not write to ${device}: the device is in use (mounted, or held by another program).`,
      );
      expect(sha256(device)).toBe(before);
    } finally {
      execFileSync('umount', [mountpoint]);
      detachLoop(device);
    }
  });

  it('refuses a device smaller than the image before writing anything', async () => {
    const device = garbageDevice(32 * MiB, 512);
    try {
      const before = sha256(device);
      const result = await cli('convert', raw, device);
      expect(result.code).toBe(1);
      expect(lastLine(result.stderr)).toBe(
        `image provided has a size of ${rawSize} bytes which is larger than device of ${32 * MiB} bytes`,
      );
      expect(sha256(device)).toBe(before);
    } finally {
      detachLoop(device);
    }
  });

  it('leaves the device byte-identical for a refused image', async () => {
    const device = garbageDevice(64 * MiB, 512);
    const xz = join(dir, 'disk.raw.xz');
    execFileSync('sh', ['-c', 'xz -0 -T1 -c < "$1" > "$2"', 'sh', raw, xz]);
    // One byte flipped in the middle of the stream: found only by decoding it to the end.
    const bytes = readFileSync(xz);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x55;
    writeFileSync(xz, bytes);
    try {
      const before = sha256(device);
      const result = await cli('convert', xz, device);
      expect(result.code).toBe(1);
      expect(lastLine(result.stderr)).toMatch(/^Bad xz image: corrupt xz data/);
      expect(sha256(device)).toBe(before);
    } finally {
      detachLoop(device);
    }
  });

  it('exits 1 with the message last on an I/O error', async () => {
    // A loop device over a sparse 64 MiB file on an 8 MiB ext4 filesystem: writeback fails once it fills.
    const fsImage = join(dir, 'tiny-ext4');
    writeFileSync(fsImage, '');
    truncateSync(fsImage, 8 * MiB);
    execFileSync('mkfs.ext4', ['-F', '-q', fsImage]);
    const mountpoint = join(dir, 'tiny-mount');
    mkdirSync(mountpoint);
    const fsDevice = attachLoop(fsImage);
    execFileSync('mount', [fsDevice, mountpoint]);
    let device: string | undefined;
    try {
      const backing = join(mountpoint, 'disk');
      writeFileSync(backing, '');
      truncateSync(backing, 64 * MiB);
      device = attachLoop(backing);
      const random = join(dir, 'random.raw');
      writeFileSync(random, randomBytes(32 * MiB));
      const result = await cli('convert', random, device);
      expect(result.code).toBe(1);
      expect(lastLine(result.stderr)).toBe("Can't write raw on disk.");
    } finally {
      if (device) detachLoop(device);
      execFileSync('umount', [mountpoint]);
      detachLoop(fsDevice);
    }
  });
});
