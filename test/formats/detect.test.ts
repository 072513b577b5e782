// Detection by content, over samples made by the real tools (mkfs, sgdisk, sfdisk, qemu-img, tar,
// compressors); file names carry no format hint.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectFormat, gptSectorSize } from '../../lib/formats/detect.ts';
import type { DetectedFormat } from '../../lib/formats/types.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { fileSource } from '../helpers/file-source.ts';
import { attachLoop, detachAllLoops, detachLoop } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
let dir: string;
let counter = 0;

function sh(command: string, args: string[], input?: string): void {
  execFileSync(command, args, { stdio: ['pipe', 'ignore', 'pipe'], input });
}

/** A new sparse file of `size` bytes with a name that says nothing. */
function blank(size: number): string {
  const path = join(dir, `sample-${counter++}`);
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

function detect(path: string): { format: DetectedFormat; description: string } {
  const source = fileSource(path);
  try {
    return detectFormat(source);
  } finally {
    source.close();
  }
}

function payload(): string {
  const path = join(dir, `payload-${counter++}`);
  writeFileSync(path, randomBytes(200_000));
  return path;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'byoi-detect-'));
});
afterAll(() => {
  detachAllLoops();
  rmSync(dir, { recursive: true, force: true });
});

describe('detectFormat on samples made by real tools', () => {
  const cases: [string, () => string, DetectedFormat, RegExp][] = [
    [
      'ext2',
      () => {
        const f = blank(16 * MiB);
        sh('mkfs.ext2', ['-F', '-q', f]);
        return f;
      },
      'filesystem',
      /^an ext2 filesystem$/,
    ],
    [
      'ext3',
      () => {
        const f = blank(16 * MiB);
        sh('mkfs.ext3', ['-F', '-q', f]);
        return f;
      },
      'filesystem',
      /^an ext3 filesystem$/,
    ],
    [
      'ext4',
      () => {
        const f = blank(16 * MiB);
        sh('mkfs.ext4', ['-F', '-q', f]);
        return f;
      },
      'filesystem',
      /^an ext4 filesystem$/,
    ],
    [
      'xfs',
      () => {
        const f = blank(320 * MiB);
        sh('mkfs.xfs', ['-q', '-f', f]);
        return f;
      },
      'filesystem',
      /xfs/,
    ],
    [
      'btrfs',
      () => {
        const f = blank(128 * MiB);
        sh('mkfs.btrfs', ['-q', '-f', f]);
        return f;
      },
      'filesystem',
      /btrfs/,
    ],
    [
      'vfat',
      () => {
        const f = blank(16 * MiB);
        sh('mkfs.fat', [f]);
        return f;
      },
      'filesystem',
      /FAT16 \(vfat\)/,
    ],
    [
      'vfat32',
      () => {
        const f = blank(64 * MiB);
        sh('mkfs.fat', ['-F', '32', f]);
        return f;
      },
      'filesystem',
      /FAT32 \(vfat\)/,
    ],
    [
      'ntfs',
      () => {
        const f = blank(16 * MiB);
        sh('mkntfs', ['-F', '-Q', '-q', f]);
        return f;
      },
      'filesystem',
      /NTFS/,
    ],
    [
      'swap',
      () => {
        const f = blank(16 * MiB);
        sh('mkswap', [f]);
        return f;
      },
      'filesystem',
      /swap/,
    ],
    [
      'luks',
      () => {
        const f = blank(32 * MiB);
        sh(
          'cryptsetup',
          ['luksFormat', '--batch-mode', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', '-', f],
          'secret',
        );
        return f;
      },
      'filesystem',
      /LUKS/,
    ],
    [
      'iso9660',
      () => {
        const tree = join(dir, `tree-${counter++}`);
        mkdirSync(tree);
        writeFileSync(join(tree, 'hello.txt'), 'hello');
        const f = join(dir, `sample-${counter++}`);
        sh('genisoimage', ['-quiet', '-o', f, tree]);
        return f;
      },
      'iso9660',
      /^an ISO 9660 image$/,
    ],
    [
      'MBR disk',
      () => {
        const f = blank(32 * MiB);
        sh('sfdisk', ['-q', f], 'start=2048, size=20480, type=83\n');
        return f;
      },
      'mbr',
      /MBR/,
    ],
    [
      'GPT disk',
      () => {
        const f = blank(32 * MiB);
        sh('sgdisk', ['-n', '1:2048:+8M', '-t', '1:8300', f]);
        return f;
      },
      'gpt',
      /GPT/,
    ],
    [
      'sparse VMDK',
      () => {
        const f = join(dir, `sample-${counter++}`);
        sh('qemu-img', ['create', '-q', '-f', 'vmdk', f, '64M']);
        return f;
      },
      'vmdk',
      /VMDK image/,
    ],
    [
      'VMDK descriptor',
      () => {
        const f = join(dir, `sample-${counter++}`);
        sh('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', f, '1M']);
        return f;
      },
      'vmdk',
      /descriptor/,
    ],
    [
      'qcow2',
      () => {
        const f = join(dir, `sample-${counter++}`);
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
        return f;
      },
      'qcow2',
      /qcow2/,
    ],
    [
      'tar (OVA)',
      () => {
        const f = join(dir, `sample-${counter++}`);
        sh('tar', ['-cf', f, '-C', dir, payloadName()]);
        return f;
      },
      'tar',
      /tar archive/,
    ],
    ['gzip', () => compressed('gzip'), 'gzip', /gzip/],
    ['xz', () => compressed('xz'), 'xz', /xz/],
    ['zstd', () => compressed('zstd'), 'zstd', /zstd/],
    ['bzip2', () => compressed('bzip2'), 'bzip2', /bzip2/],
    [
      'random bytes',
      () => {
        const f = join(dir, `sample-${counter++}`);
        writeFileSync(f, Buffer.concat([Buffer.from('xx'), randomBytes(MiB)]));
        return f;
      },
      'unknown',
      /unknown/,
    ],
    ['zeros', () => blank(4 * MiB), 'unknown', /unknown/],
    ['an empty file', () => blank(0), 'unknown', /empty/],
  ];

  function payloadName(): string {
    return payload().slice(dir.length + 1);
  }

  function compressed(tool: string): string {
    const input = payload();
    const output = join(dir, `sample-${counter++}`);
    execFileSync('sh', ['-c', `${tool} -c < "$1" > "$2"`, 'sh', input, output]);
    return output;
  }

  for (const [name, make, format, description] of cases) {
    it(`${name}: ${format}`, () => {
      const detected = detect(make());
      expect(detected.format).toBe(format);
      expect(detected.description).toMatch(description);
    });
  }

  it('tells a GPT made for 512-byte sectors', () => {
    const f = blank(32 * MiB);
    sh('sgdisk', ['-n', '1:2048:+8M', f]);
    expect(detect(f).format).toBe('gpt');
    const source = fileSource(f);
    expect(gptSectorSize(source)).toBe(512);
    source.close();
  });

  it('reports no GPT sector size for an MBR disk or a filesystem', () => {
    const mbr = blank(32 * MiB);
    sh('sfdisk', ['-q', mbr], 'start=2048, size=20480, type=83\n');
    const ext4 = blank(16 * MiB);
    sh('mkfs.ext4', ['-F', '-q', ext4]);
    for (const f of [mbr, ext4]) {
      const source = fileSource(f);
      expect(gptSectorSize(source)).toBeUndefined();
      source.close();
    }
  });
});

describe.skipIf(skipWithout('root', 'loop', 'sgdisk'))('GPT made on a 4096-byte-sector device', () => {
  beforeAll(() => assertCapable('root', 'loop', 'sgdisk'));

  it('is detected, and its sector size is 4096', () => {
    const f = blank(64 * MiB);
    const device = attachLoop(f, { sectorSize: 4096 });
    try {
      sh('sgdisk', ['-n', '1:256:+8M', '-t', '1:8300', device]);
    } finally {
      detachLoop(device);
    }
    const detected = detect(f);
    expect(detected.format).toBe('gpt');
    expect(detected.description).toMatch(/4096-byte sectors/);
    const source = fileSource(f);
    expect(gptSectorSize(source)).toBe(4096);
    source.close();
  });
});
