// The partition table read from an image's guest bytes: tables made by sfdisk and sgdisk (the
// names, types and extents they wrote), filesystem labels made by mkfs.fat and genisoimage, the
// sector size an MBR was made for, and hostile header fields that must not be trusted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferSource, guestReader } from '../../lib/formats/guest.ts';
import { ESP_GUID, filesystemLabel, readImageTable } from '../../lib/formats/image-partitions.ts';
import { openRaw } from '../../lib/formats/raw.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

const MiB = 1024 * 1024;

function tableOf(bytes: Buffer) {
  const source = bufferSource(bytes);
  return readImageTable(guestReader(openRaw(source), source));
}

describe.skipIf(skipWithout('sgdisk', 'mtools'))('image partition tables', () => {
  let dir: string;
  beforeAll(() => {
    assertCapable('sgdisk', 'mtools');
    dir = mkdtempSync(join(tmpdir(), 'byoi-image-table-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function image(name: string, size: number, make: (file: string) => void): Buffer {
    const file = join(dir, name);
    writeFileSync(file, Buffer.alloc(size));
    make(file);
    return readFileSync(file);
  }

  it('a GPT made by sgdisk: numbers, extents, type GUIDs, names', async () => {
    const bytes = image('gpt', 32 * MiB, (f) =>
      execFileSync(
        'sgdisk',
        [
          '-n',
          '1:2048:+4M',
          '-t',
          '1:EF00',
          '-c',
          '1:EFI system',
          '-n',
          '3:0:+8M',
          '-t',
          '3:8300',
          '-c',
          '3:config-2',
          f,
        ],
        { stdio: 'ignore' },
      ),
    );
    const table = await tableOf(bytes);
    expect(table).toMatchObject({
      label: 'gpt',
      sectorSize: 512,
      gpt: { firstUsable: 34, entryCount: 128, entrySize: 128 },
    });
    expect(table!.partitions).toEqual([
      { number: 1, start: 2048, sectors: 8192, type: ESP_GUID, name: 'EFI system' },
      { number: 3, start: 10240, sectors: 16384, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', name: 'config-2' },
    ]);
  });

  it('a hostile GPT header (an entry array of 4 GiB, an entry ending before it starts) is not trusted', async () => {
    const bytes = image('gpt-hostile', 8 * MiB, (f) =>
      execFileSync('sgdisk', ['-n', '1:2048:+1M', '-n', '2:0:+1M', f], { stdio: 'ignore' }),
    );
    const swapped = Buffer.from(bytes);
    // Entry 2: last LBA below first LBA.
    swapped.writeBigUInt64LE(100n, 1024 + 128 + 40);
    expect((await tableOf(swapped))!.partitions.map((p) => p.number)).toEqual([1]);
    const huge = Buffer.from(bytes);
    huge.writeUInt32LE(0xffffffff, 512 + 80);
    expect(await tableOf(huge)).toMatchObject({ label: 'gpt', partitions: [] });
  });

  it('an MBR: its primaries, an extended partition counted as one; 512-byte sectors, as at 4096 it would run past the image', async () => {
    const bytes = image('mbr', 16 * MiB, (f) =>
      execFileSync('sh', ['-c', `printf 'label: dos\\n,2MiB,83\\n,2MiB,ef\\n,,5\\n,1MiB,83\\n' | sfdisk -q ${f}`]),
    );
    const table = await tableOf(bytes);
    expect(table).toMatchObject({ label: 'dos', sectorSize: 512 });
    expect(table!.partitions.map((p) => [p.number, p.type])).toEqual([
      [1, '83'],
      [2, 'ef'],
      [3, '05'],
    ]);
  });

  it('an MBR that fits at both sector sizes: told by where a filesystem starts, or not told at all', async () => {
    const layout = (f: string) => execFileSync('sh', ['-c', `printf 'label: dos\\n2048,2048,83\\n' | sfdisk -q ${f}`]);
    expect(await tableOf(image('mbr-empty', 64 * MiB, layout))).toMatchObject({ sectorSize: undefined });
    const at512 = image(
      'mbr-512',
      64 * MiB,
      (f) => (layout(f), execFileSync('mkfs.fat', ['--offset', '2048', f, '1024'], { stdio: 'ignore' })),
    );
    expect(await tableOf(at512)).toMatchObject({ sectorSize: 512 });
    const at4096 = image(
      'mbr-4096',
      64 * MiB,
      (f) => (
        layout(f),
        execFileSync('mkfs.ext4', ['-q', '-F', '-E', `offset=${2048 * 4096}`, f, '4M'], { stdio: 'ignore' })
      ),
    );
    expect(await tableOf(at4096)).toMatchObject({ sectorSize: 4096 });
    // A 512-byte image whose first partition holds nothing known and whose second starts where the
    // first would at 4096: not mistaken for a 4096-byte image (not told: accepted on either disk).
    // (100 MiB: both sizes fit, so only the content can tell.)
    const twoParts = image('mbr-two', 100 * MiB, (f) => {
      execFileSync('sh', ['-c', `printf 'label: dos\\n2048,14336,83\\n16384,8192,83\\n' | sfdisk -q ${f}`]);
      execFileSync('mkfs.ext4', ['-q', '-F', '-E', `offset=${16384 * 512}`, f, '4M'], { stdio: 'ignore' });
    });
    expect(await tableOf(twoParts)).toMatchObject({ sectorSize: undefined });
  });

  it('a protective MBR without a GPT is no table', async () => {
    const bytes = image('protective', 4 * MiB, (f) =>
      execFileSync('sh', ['-c', `printf 'label: dos\\n,,ee\\n' | sfdisk -q ${f}`]),
    );
    expect(await tableOf(bytes)).toBeUndefined();
  });

  it('FAT labels (FAT12/16 and FAT32) as cloud-init looks for them', () => {
    for (const [fat, size] of [
      ['12', 4],
      ['16', 32],
      ['32', 64],
    ] as const) {
      const bytes = image(`fat${fat}`, size * MiB, (f) =>
        execFileSync('mkfs.fat', ['-F', fat, '-n', 'config-2', f], { stdio: 'ignore' }),
      );
      expect(filesystemLabel(bytes)).toBe('config-2');
    }
    const unlabelled = image('fat-nolabel', 4 * MiB, (f) => execFileSync('mkfs.fat', [f], { stdio: 'ignore' }));
    expect(filesystemLabel(unlabelled)).toBeUndefined();
    expect(filesystemLabel(Buffer.alloc(64 * 1024))).toBeUndefined();
  });
});
