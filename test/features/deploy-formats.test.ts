// `byoi deploy` of what distributions and appliances publish: a GPT disk compressed by gzip, xz,
// zstd and bzip2 (type raw), and an OVA holding a streamOptimized VMDK (type ova), served over
// HTTP on 127.0.0.1 onto garbage-filled loop devices, compared with `qemu-img convert -O raw`.
// Refusals (a corrupt stream, a bomb, a compressed non-disk, a lying manifest, a VMDK declared
// qcow2 or raw) leave the disk byte for byte as it was.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { sh, sha256Of, sha256OfFile } from '../helpers/deploy.ts';
import {
  compressFile,
  deployWithStatus,
  expectGptImageDeployed,
  GPT_IMAGE_SIZE as IMAGE_SIZE,
  makeGptImage,
} from '../helpers/gpt-deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { detachAllLoops, detachLoop } from '../helpers/loop.ts';
import { makeOva } from '../helpers/ova-fixtures.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 1024 * 1024;
const DISK_SIZE = 40 * MiB;

let dir: string;
let server: TestServer;
let reference: Buffer;
/** name -> sha256 of the served file */
const served = new Map<string, string>();

function serve(name: string, file: string): void {
  served.set(name, sha256OfFile(file));
  server.serve(`/${name}`, { body: readFileSync(file) });
}

const garbageDisk = (name: string): string => garbageLoop(join(dir, `${name}.disk`), DISK_SIZE);

const deploy = (name: string, type: string, device: string) =>
  deployWithStatus({
    dir,
    name,
    url: `${server.url}/${name}`,
    type,
    sha256: served.get(name) ?? '0'.repeat(64),
    disk: device,
  });

describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))(
  'byoi deploy of compressed raw images and OVAs',
  () => {
    beforeAll(async () => {
      assertCapable('root', 'loop', 'qemu-img', 'sgdisk');
      dir = mkdtempSync(join(tmpdir(), 'byoi-deploy-formats-'));
      server = await startServer();
      const raw = join(dir, 'gpt.raw');
      reference = makeGptImage(raw);
      for (const [format, command] of [
        ['gz', 'gzip -6'],
        ['xz', 'xz -T1 -3'],
        ['zst', 'zstd -q -3'],
        ['bz2', 'bzip2 -9'],
      ] as const) {
        const file = join(dir, `gpt.raw.${format}`);
        compressFile(command, raw, file);
        serve(`gpt.raw.${format}`, file);
      }
      const vmdk = join(dir, 'disk1.vmdk');
      sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', raw, vmdk]);
      serve('disk.vmdk', vmdk);
      serve('appliance.ova', makeOva(dir, 'appliance', [{ path: vmdk, capacity: IMAGE_SIZE, address: '0' }]));
    }, 120_000);

    afterAll(async () => {
      detachAllLoops();
      await server?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it.each([
      ['gpt.raw.gz', 'raw'],
      ['gpt.raw.xz', 'raw'],
      ['gpt.raw.zst', 'raw'],
      ['gpt.raw.bz2', 'raw'],
      ['appliance.ova', 'ova'],
    ])('%s (type %s): the disk holds the image, its backup GPT at the end', async (name, type) => {
      const device = garbageDisk(name);
      const deployed = await deploy(name, type, device);
      expectGptImageDeployed(deployed, device, reference, DISK_SIZE);
      // A compressed raw disk is decoded while it downloads, and that pass is the one used.
      const inspected = deployed.result.stderr
        .split('\n')
        .find((line) => line.includes('"msg":"Inspecting image: finished"'));
      if (type === 'raw') expect(JSON.parse(inspected!).decodedWhileDownloading).toBe('used');
      detachLoop(device);
    });

    describe('refuses, leaving the disk byte for byte as it was', () => {
      let device: string;
      let before: string;

      beforeAll(async () => {
        device = garbageDisk('refusals');
        before = await sha256Of(device);
      });

      async function expectRefusal(name: string, type: string, message: string | RegExp): Promise<void> {
        const { result, status } = await deploy(name, type, device);
        expect(result.exitCode, result.stderr).toBe(1);
        if (typeof message === 'string') expect(result.lastLine).toBe(message);
        else expect(result.lastLine).toMatch(message);
        expect(status).toMatchObject({ status: 'error', message: result.lastLine });
        expect(await sha256Of(device)).toBe(before);
      }

      it('a corrupt xz stream whose checksum is right (found only by decoding it to the end)', async () => {
        const bytes = readFileSync(join(dir, 'gpt.raw.xz'));
        bytes[bytes.length - 4096]! ^= 0x10;
        const file = join(dir, 'corrupt.raw.xz');
        writeFileSync(file, bytes);
        serve('corrupt.raw.xz', file);
        await expectRefusal('corrupt.raw.xz', 'raw', /^Bad xz image: corrupt xz data/);
      });

      it('a decompression bomb: 1 GiB of zeros in a few KiB of zstd', async () => {
        const file = join(dir, 'bomb.zst');
        execFileSync('sh', ['-c', 'head -c 1G /dev/zero | zstd -q -19 > "$1"', 'sh', file]);
        serve('bomb.zst', file);
        await expectRefusal(
          'bomb.zst',
          'raw',
          `image provided decompresses (zstd) to more than ${DISK_SIZE} bytes which is larger than device of ${DISK_SIZE} bytes`,
        );
      });

      it('a compressed file that holds no disk', async () => {
        const qcow2 = join(dir, 'inside.qcow2');
        sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'gpt.raw'), qcow2]);
        const file = join(dir, 'inside.qcow2.gz');
        compressFile('gzip', qcow2, file);
        serve('inside.qcow2.gz', file);
        await expectRefusal(
          'inside.qcow2.gz',
          'raw',
          'image provided format is not of type raw because no partition table was found. It seems to contain: a qcow2 image, inside a gzip-compressed file',
        );
      });

      it('an OVA whose manifest lies', async () => {
        const work = join(dir, 'appliance.d');
        const manifest = readFileSync(join(work, 'appliance.mf'), 'utf8').replace(
          /(disk1\.vmdk\)= )([0-9a-f])/,
          (_m, head: string, d: string) => `${head}${d === 'a' ? 'b' : 'a'}`,
        );
        writeFileSync(join(work, 'appliance.mf'), manifest);
        const file = join(dir, 'lying.ova');
        execFileSync('tar', ['--format=ustar', '-cf', file, '-C', work, 'appliance.ovf', 'appliance.mf', 'disk1.vmdk']);
        serve('lying.ova', file);
        await expectRefusal(
          'lying.ova',
          'ova',
          /^Bad OVA image: its manifest gives SHA256 [0-9a-f]{64} for "disk1\.vmdk", the file has [0-9a-f]{64}\.$/,
        );
      });

      it('a VMDK declared qcow2 or raw', async () => {
        await expectRefusal(
          'disk.vmdk',
          'qcow2',
          'image provided format is vmdk which does not match expected qcow2 format',
        );
        await expectRefusal(
          'disk.vmdk',
          'raw',
          'image provided format is not of type raw because no partition table was found. It seems to contain: a VMDK image',
        );
      });
    });
  },
);
