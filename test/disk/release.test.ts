// Releasing a held disk on a loop device: a mounted ext4 partition and active swap, as a rescue
// system finds them, are released and every signature is wiped. md/LVM/dm-crypt need a kernel with
// md and device-mapper: they are tested in the QEMU VM (test/vm/).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { discoverDisks, type Disk } from '../../lib/disk/discover.ts';
import { releaseDisk, surveyDisk } from '../../lib/disk/release.ts';
import { chooseDisk } from '../../lib/disk/select.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { addPartitions, attachLoop, detachAllLoops } from '../helpers/loop.ts';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
const isMounted = (dir: string) =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
const isSwap = (dev: string) =>
  readFileSync('/proc/swaps', 'utf8')
    .split('\n')
    .some((l) => l.startsWith(`${dev} `));

describe.skipIf(skipWithout('root', 'loop', 'sgdisk'))('releasing a held disk', () => {
  let work: string;
  let mnt: string;
  let busy: ChildProcess | undefined;

  beforeAll(() => {
    assertCapable('root', 'loop', 'sgdisk');
    work = mkdtempSync(join(tmpdir(), 'byoi-release-'));
    mnt = join(work, 'mnt');
    sh('mkdir', [mnt]);
  });

  afterEach(() => {
    busy?.kill('SIGKILL');
    busy = undefined;
    if (isMounted(mnt)) sh('umount', ['-l', mnt]);
    for (const line of readFileSync('/proc/swaps', 'utf8').split('\n').slice(1)) {
      const dev = line.split(/\s+/)[0];
      if (dev && /^\/dev\/loop\d+p\d+$/.test(dev)) execFileSync('swapoff', [dev]);
    }
    detachAllLoops();
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** A disk as a previous install left it: GPT, ext4 mounted, swap active. */
  async function heldDisk(): Promise<{ device: string; disk: () => Promise<Disk> }> {
    const file = join(work, 'disk.img');
    rmSync(file, { force: true });
    writeFileSync(file, '');
    truncateSync(file, 256 * 1024 * 1024);
    sh('sgdisk', ['-n', '1:0:+64M', '-t', '1:8300', '-n', '2:0:+32M', '-t', '2:8200', '-n', '3:0:0', file]);
    const device = attachLoop(file);
    await addPartitions(device);
    sh('mkfs.ext4', ['-q', '-F', `${device}p1`]);
    sh('mkswap', [`${device}p2`]);
    sh('mount', [`${device}p1`, mnt]);
    sh('swapon', [`${device}p2`]);
    return { device, disk: async () => chooseDisk(await discoverDisks(), { disk: device }) };
  }

  it.each([
    ['surveying the disk itself', () => undefined],
    // As a deployment does: the survey read while the image is inspected, the disk still held.
    ['given a survey taken while the disk was held', (held: Disk) => surveyDisk(held)],
  ])('unmounts, swaps off and wipes every signature, %s', async (_name, surveyFirst) => {
    const { device, disk } = await heldDisk();
    const before = await disk();
    expect(before.holders.map((h) => h.kind).sort()).toEqual(['mount', 'swap']);
    const survey = surveyFirst(before);
    if (survey) expect(await survey).toEqual({ partitions: [1, 2, 3].map((n) => `${device}p${n}`), mdMembers: [] });

    const report = await releaseDisk(before, survey ? { survey } : {});

    expect(report.released).toEqual([`${device}p1 mounted on ${mnt}`, `swap ${device}p2`]);
    expect(isMounted(mnt)).toBe(false);
    expect(isSwap(`${device}p2`)).toBe(false);
    expect(sh('wipefs', ['--noheadings', device]).trim()).toBe('');
    expect((await disk()).holders).toEqual([]);
  });

  it('wipes what the survey it is given names (a deployment takes it before the release)', async () => {
    const { device, disk } = await heldDisk();
    const partitions = [`${device}p2`, `${device}p3`]; // not p1, whose ext4 then stays

    await releaseDisk(await disk(), { survey: Promise.resolve({ partitions, mdMembers: [] }) });

    expect(sh('wipefs', ['--noheadings', '--output', 'TYPE', `${device}p1`]).trim()).toBe('ext4');
    expect(sh('wipefs', ['--noheadings', `${device}p2`]).trim()).toBe('');
  });

  it('names what still holds the disk when it cannot be released, and wipes nothing', async () => {
    const { device, disk } = await heldDisk();
    busy = spawn('sleep', ['60'], { cwd: mnt, stdio: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 200));

    await expect(releaseDisk(await disk())).rejects.toThrow(
      `Could not release disk ${device}: it is still held by ${device}p1 mounted on ${mnt}.`,
    );
    expect(sh('wipefs', ['--noheadings', '--output', 'TYPE', `${device}p1`]).trim()).toBe('ext4');
    expect(sh('wipefs', ['--noheadings', '--output', 'TYPE', device]).trim().split('\n')).toContain('gpt');
  });
});

describe('a disk the running system needs', () => {
  it('is refused before any command runs', async () => {
    const disk = {
      name: 'sdz',
      path: '/dev/sdz',
      byId: undefined,
      size: 1e12,
      logicalSectorSize: 512,
      physicalSectorSize: 512,
      rotational: false,
      transport: 'sata',
      media: 'SSD',
      model: undefined,
      serial: undefined,
      wwn: undefined,
      excluded: undefined,
      holders: [{ kind: 'mount', device: '/dev/sdz1', mountpoint: '/', system: true, depth: 1 }],
    } satisfies Disk;
    await expect(releaseDisk(disk)).rejects.toThrow(
      'Refusing to write to /dev/sdz: it holds /, a filesystem of the running system.',
    );
  });
});
