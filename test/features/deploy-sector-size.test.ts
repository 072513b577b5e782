// A GPT or an MBR made for one sector size is refused on a disk of the other, before anything is written
// (research: 512-byte images on 4Kn disks are a classic field failure of the peers). The matching
// cases deploy (test/features/deploy.test.ts for 512, test/features/deploy-configdrive.test.ts for 4096).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { byoi, sh, sha256Of } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MiB = 1024 * 1024;

describe.skipIf(skipWithout('root', 'loop', 'qemu-img'))('sector size of the image against the disk', () => {
  let dir: string;
  let server: TestServer;

  beforeAll(async () => {
    assertCapable('root', 'loop', 'qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-sector-'));
    server = await startServer();
    for (const sector of [512, 4096] as const) {
      const file = join(dir, `gpt${sector}.raw`);
      writeFileSync(file, Buffer.alloc(0));
      sh('truncate', ['-s', String(16 * MiB), file]);
      const device = attachLoop(file, { sectorSize: sector });
      sh('sh', ['-c', `printf 'label: gpt\\n,4MiB,U\\n,,L\\n' | sfdisk -q ${device}`]);
      detachAllLoops();
      server.serve(`/gpt${sector}.raw`, { body: readFileSync(file) });
      sh('qemu-img', ['convert', '-O', 'qcow2', file, join(dir, `gpt${sector}.qcow2`)]);
      server.serve(`/gpt${sector}.qcow2`, { body: readFileSync(join(dir, `gpt${sector}.qcow2`)) });
      // An MBR image: its partitions fit the image at either sector size once it is small enough,
      // so what tells is where its first partition's filesystem lies.
      const mbr = join(dir, `mbr${sector}.raw`);
      writeFileSync(mbr, Buffer.alloc(0));
      sh('truncate', ['-s', String(16 * MiB), mbr]);
      const mbrDevice = attachLoop(mbr, { sectorSize: sector });
      sh('sh', ['-c', `printf 'label: dos\n,4MiB,L\n,,L\n' | sfdisk -q ${mbrDevice}`]);
      detachAllLoops();
      sh('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', `offset=${MiB}`, mbr, '4M']);
      server.serve(`/mbr${sector}.raw`, { body: readFileSync(mbr) });
      sh('qemu-img', ['convert', '-O', 'qcow2', mbr, join(dir, `mbr${sector}.qcow2`)]);
      server.serve(`/mbr${sector}.qcow2`, { body: readFileSync(join(dir, `mbr${sector}.qcow2`)) });
    }
  });

  afterEach(() => detachAllLoops());
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [made, disk] of [
    [512, 4096],
    [4096, 512],
  ] as const) {
    for (const type of ['raw', 'qcow2'] as const) {
      it(`refuses a ${type} GPT made for ${made}-byte sectors on a ${disk}-byte disk, disk untouched`, async () => {
        const file = join(dir, `disk-${made}-${type}`);
        writeFileSync(file, randomBytes(32 * MiB));
        const device = attachLoop(file, { sectorSize: disk });
        const before = await sha256Of(device);
        const result = await byoi([
          'deploy',
          '--url',
          `${server.url}/gpt${made}.${type}`,
          '--type',
          type,
          '--disk',
          device,
          '--no-reboot',
        ]);
        expect(result.exitCode).toBe(1);
        expect(result.lastLine).toBe(
          `image provided has a GPT for ${made}-byte sectors which does not match device of ${disk}-byte sectors`,
        );
        expect(await sha256Of(device)).toBe(before);
      });

      it(`refuses a ${type} MBR image made for ${made}-byte sectors on a ${disk}-byte disk, disk untouched`, async () => {
        const file = join(dir, `mbr-disk-${made}-${type}`);
        writeFileSync(file, randomBytes(32 * MiB));
        const device = attachLoop(file, { sectorSize: disk });
        const before = await sha256Of(device);
        const result = await byoi([
          'deploy',
          '--url',
          `${server.url}/mbr${made}.${type}`,
          '--type',
          type,
          '--disk',
          device,
          '--no-reboot',
        ]);
        expect(result.lastLine).toBe(
          `image provided has an MBR for ${made}-byte sectors which does not match device of ${disk}-byte sectors`,
        );
        expect(result.exitCode).toBe(1);
        expect(await sha256Of(device)).toBe(before);
      });
    }
  }

  for (const sector of [512, 4096] as const) {
    it(`deploys an MBR image made for ${sector}-byte sectors on a ${sector}-byte disk; the kernel finds its ext4 partition`, async () => {
      const file = join(dir, `mbr-ok-${sector}`);
      writeFileSync(file, Buffer.alloc(0));
      sh('truncate', ['-s', String(32 * MiB), file]);
      const device = attachLoop(file, { sectorSize: sector });
      const result = await byoi([
        'deploy',
        '--url',
        `${server.url}/mbr${sector}.qcow2`,
        '--type',
        'qcow2',
        '--disk',
        device,
        '--no-reboot',
      ]);
      expect(result.exitCode, result.lastLine).toBe(0);
      expect(sh('blkid', ['-p', '-O', String(MiB), '-s', 'TYPE', '-o', 'value', device]).trim()).toBe('ext4');
      expect(sh('sfdisk', ['--dump', device])).toMatch(
        new RegExp(`${device}p1 : start=\\s+${MiB / sector}, size=\\s+${(4 * MiB) / sector}`),
      );
    });
  }
});
