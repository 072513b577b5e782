// lib/disk/gpt.ts fixGpt on disk files (sgdisk and sfdisk read and write files as they do disks):
// the backup moved to the end of a larger disk, a sound GPT left alone, a damaged backup rewritten.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixGpt } from '../../lib/disk/gpt.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

const MiB = 1024 * 1024;
const SECTOR = 512;

/** The primary header's AlternateLBA and the backup header's signature at the file's last sector. */
function headers(file: string, bytes: number): { alternate: bigint; lastLba: bigint; backupSignature: string } {
  const fd = openSync(file, 'r');
  try {
    const primary = Buffer.alloc(SECTOR);
    readSync(fd, primary, 0, SECTOR, SECTOR);
    const backup = Buffer.alloc(SECTOR);
    readSync(fd, backup, 0, SECTOR, bytes - SECTOR);
    return {
      alternate: primary.readBigUInt64LE(32),
      lastLba: BigInt(bytes / SECTOR - 1),
      backupSignature: backup.toString('latin1', 0, 8),
    };
  } finally {
    closeSync(fd);
  }
}

/** One byte of the primary header's reserved field changed: its CRC no longer matches. */
function corruptPrimaryHeader(file: string): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from([1]), 0, 1, SECTOR + 20);
  closeSync(fd);
}

/** sgdisk -v's words, stdout and stderr. */
const verdict = (file: string) => execFileSync('sh', ['-c', 'sgdisk -v "$0" 2>&1', file], { encoding: 'utf8' });

describe.skipIf(skipWithout('sgdisk'))('fixGpt', () => {
  let dir: string;
  beforeAll(() => {
    assertCapable('sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-gpt-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A 64 MiB GPT image with two partitions, in a file of `bytes`. */
  function image(name: string, bytes: number): string {
    const file = join(dir, name);
    writeFileSync(file, '');
    truncateSync(file, 64 * MiB);
    execFileSync('sgdisk', ['-n', '1:0:+16M', '-t', '1:ef00', '-n', '2:0:0', file], { stdio: 'ignore' });
    truncateSync(file, bytes);
    return file;
  }

  it('moves the backup header and table to the end of a disk larger than the image', async () => {
    const file = image('larger', 96 * MiB);
    expect(headers(file, 96 * MiB).alternate).toBe(BigInt((64 * MiB) / SECTOR - 1));

    expect(await fixGpt(file, SECTOR, 96 * MiB)).toBe('moved-backup');

    const after = headers(file, 96 * MiB);
    expect(after.alternate).toBe(after.lastLba);
    expect(after.backupSignature).toBe('EFI PART');
    expect(verdict(file)).toContain('No problems found');
  });

  it('leaves a sound GPT whose backup is already at the end as it is', async () => {
    const file = image('same', 64 * MiB);
    const before = execFileSync('sha256sum', [file], { encoding: 'utf8' });

    expect(await fixGpt(file, SECTOR, 64 * MiB)).toBe('clean');
    expect(execFileSync('sha256sum', [file], { encoding: 'utf8' })).toBe(before);
  });

  it('rewrites a damaged backup that lies where the primary header says', async () => {
    const file = image('damaged', 64 * MiB);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(SECTOR), 0, SECTOR, 64 * MiB - SECTOR); // the backup header
    closeSync(fd);
    // sgdisk mends it in memory and says so, then finds "No problems" in what it mended.
    expect(verdict(file)).toContain('corrupt GPT');

    expect(await fixGpt(file, SECTOR, 64 * MiB)).toBe('moved-backup');

    expect(headers(file, 64 * MiB).backupSignature).toBe('EFI PART');
    expect(verdict(file)).toContain('No problems found');
    expect(verdict(file)).not.toMatch(/corrupt|CRCs don't match|invalid/);
  });

  it('repairs a corrupt primary header from the backup at the end', async () => {
    const file = image('primary', 64 * MiB);
    corruptPrimaryHeader(file);
    expect(verdict(file)).toContain('invalid main GPT header');

    expect(await fixGpt(file, SECTOR, 64 * MiB)).toBe('moved-backup');

    expect(verdict(file)).toContain('No problems found');
    expect(verdict(file)).not.toMatch(/corrupt|CRCs don't match|invalid/);
  });

  it("fails with OVH's sentence where neither header can be read", async () => {
    // The primary damaged, the backup at the image's end where no one looks for it on a larger disk.
    const file = image('unreadable', 96 * MiB);
    corruptPrimaryHeader(file);
    expect(verdict(file)).toContain('No problems found'); // of the empty table sgdisk made up

    await expect(fixGpt(file, SECTOR, 96 * MiB)).rejects.toThrow(
      'Can not move backup GPT data structures to the end of disk.',
    );
  });

  it('says there is no GPT where LBA 1 holds none', async () => {
    const file = join(dir, 'blank');
    writeFileSync(file, '');
    truncateSync(file, 8 * MiB);
    expect(await fixGpt(file, SECTOR, 8 * MiB)).toBe('no-gpt');
  });
});
