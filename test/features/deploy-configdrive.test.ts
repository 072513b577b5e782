// `byoi deploy` with a config drive, onto loop devices of 512- and 4096-byte sectors, GPT and MBR
// images: the image's own partitions are untouched, the drive is the last partition, inside the
// disk, and cloud-init's own reader finds the hostname, key, metadata and user data in it.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { probe, readConfigDrive, sshKeygen } from '../helpers/cloud-init.ts';
import { byoi, readAt, sh, sha256Of, sha256OfFile, deployArgs } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

const MiB = 1024 * 1024;
const IMAGE_SIZE = 24 * MiB;
const DISK_SIZE = 128 * MiB;
const needs = ['root', 'loop', 'sgdisk', 'mtools', 'cloud-init', 'ssh-keygen'] as const;

interface Partition {
  node: string;
  start: number;
  size: number;
  type: string;
  name?: string;
}

/** The partition table as sfdisk reads it, in bytes. */
function partitions(device: string): { label: string; partitions: Partition[] } {
  const { partitiontable: table } = JSON.parse(sh('sfdisk', ['--json', device])) as {
    partitiontable: { label: string; sectorsize?: number; partitions: Partition[] };
  };
  const sector = table.sectorsize ?? 512;
  return {
    label: table.label,
    partitions: table.partitions.map((p) => ({ ...p, start: p.start * sector, size: p.size * sector })),
  };
}

describe.skipIf(skipWithout(...needs))('byoi deploy with a config drive', () => {
  let dir: string;
  let server: TestServer;
  let key: string;
  const script = '#!/bin/sh\necho byoi-user-data-ran\n';

  beforeAll(async () => {
    assertCapable(...needs);
    dir = mkdtempSync(join(tmpdir(), 'byoi-deploy-cd-'));
    server = await startServer();
    key = sshKeygen('ed25519', 'operator@byoi');
    writeFileSync(join(dir, 'user-data'), Buffer.from(script).toString('base64')); // as OVH recommends sending it
  });

  afterEach(() => detachAllLoops());

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A raw image with data in each partition, its table made for `sector`-byte sectors. */
  function makeImage(
    name: string,
    label: 'gpt' | 'dos',
    sector: 512 | 4096,
    size = IMAGE_SIZE,
    layout = label === 'gpt' ? ',4MiB,U\n,,L\n' : ',4MiB,ef\n,,83\n',
  ): Buffer {
    const file = join(dir, `${name}.raw`);
    writeFileSync(file, Buffer.alloc(0));
    sh('truncate', ['-s', String(size), file]);
    const device = attachLoop(file, { sectorSize: sector });
    sh('sh', ['-c', `printf 'label: ${label}\n${layout}' | sfdisk -q ${device}`]);
    detachAllLoops();
    const bytes = readFileSync(file);
    for (const p of [2 * MiB, 6 * MiB, size - 3 * MiB]) randomBytes(256 * 1024).copy(bytes, p);
    writeFileSync(file, bytes);
    server.serve(`/${name}`, { body: bytes });
    return bytes;
  }

  async function deployOnto(name: string, sector: 512 | 4096, extra: string[] = []) {
    const file = join(dir, `${name}.disk`);
    writeFileSync(file, randomBytes(DISK_SIZE));
    const device = attachLoop(file, { sectorSize: sector });
    const before = await sha256Of(device);
    const image = readFileSync(join(dir, `${name}.raw`));
    const status = join(dir, `${name}.status.json`);
    const result = await byoi([
      ...deployArgs({
        url: `${server.url}/${name}`,
        type: 'raw',
        sha256: sha256OfFile(join(dir, `${name}.raw`)),
        disk: device,
        statusFile: status,
      }),
      '--hostname',
      `node-${name}.example.net`,
      '--ssh-key',
      key,
      '--user-data',
      join(dir, 'user-data'),
      '--user-metadata',
      'role=byoi-test',
      ...extra,
    ]);
    return { device, image, result, status, before };
  }

  for (const [label, sector] of [
    ['gpt', 512],
    ['gpt', 4096],
    ['dos', 512],
    ['dos', 4096],
  ] as const) {
    it(`adds a readable drive after a ${label} image on ${sector}-byte sectors`, async () => {
      const name = `${label}${sector}`;
      makeImage(name, label, sector);
      const { device, image, result, status } = await deployOnto(name, sector);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(JSON.parse(readFileSync(status, 'utf8')).status).toBe('done');

      const table = partitions(device);
      expect(table.partitions).toHaveLength(3);
      const [first, second, drive] = table.partitions as [Partition, Partition, Partition];
      // The image's own partitions are byte for byte what it carried.
      for (const p of [first, second])
        expect(readAt(device, p.start, p.size).equals(image.subarray(p.start, p.start + p.size))).toBe(true);
      expect(drive.start).toBeGreaterThanOrEqual(IMAGE_SIZE - MiB);
      expect(drive.start + drive.size).toBeLessThanOrEqual(DISK_SIZE);
      if (label === 'gpt') {
        expect(drive.name).toBe('config-2');
        expect(sh('sgdisk', ['-v', device])).toContain('No problems found');
      } else {
        expect(drive.type).toBe('c');
      }
      expect(probe(device, drive.start)).toMatchObject({ LABEL: 'config-2', TYPE: 'vfat' });

      const seen = readConfigDrive(device, drive.start);
      expect(seen.localHostname).toBe(`node-${name}.example.net`);
      expect(seen.publicKeys).toEqual([key]);
      expect(seen.meta).toEqual({ role: 'byoi-test' });
      expect(Buffer.from(seen.userData, 'base64').toString()).toBe(script);
    });
  }

  it('refuses a bad hostname before anything is written', async () => {
    makeImage('badhost', 'gpt', 512);
    const file = join(dir, 'badhost.disk');
    writeFileSync(file, randomBytes(DISK_SIZE));
    const device = attachLoop(file);
    const before = await sha256Of(device);
    const result = await byoi([
      'deploy',
      '--url',
      `${server.url}/badhost`,
      '--type',
      'raw',
      '--disk',
      device,
      '--no-reboot',
      '--hostname',
      'bad_host!',
    ]);
    expect(result.exitCode).toBe(2);
    expect(result.lastLine).toMatch(/hostname/i);
    expect(await sha256Of(device)).toBe(before);
  });

  for (const sector of [512, 4096] as const) {
    it(`fails with OVH sentence, before writing, when an MBR image already has four primary partitions (${sector}-byte sectors)`, async () => {
      makeImage(`four${sector}`, 'dos', sector, IMAGE_SIZE, ',4MiB,83\n,4MiB,83\n,4MiB,83\n,4MiB,83\n');
      const { device, result, status, before } = await deployOnto(`four${sector}`, sector);
      expect(result.exitCode).toBe(1);
      expect(result.lastLine).toBe('Could not create configdrive on disk.');
      expect(JSON.parse(readFileSync(status, 'utf8'))).toMatchObject({
        status: 'error',
        message: 'Could not create configdrive on disk.',
      });
      expect(JSON.parse(readFileSync(status, 'utf8')).detail).toMatch(/primar/i);
      expect(await sha256Of(device)).toBe(before);
    });
  }

  it('fails with OVH sentence, before writing, when the image leaves no room at the end of the disk', async () => {
    makeImage('full', 'gpt', 512, DISK_SIZE);
    const { device, result, status, before } = await deployOnto('full', 512);
    expect(result.exitCode).toBe(1);
    expect(result.lastLine).toBe('Could not create configdrive on disk.');
    expect(JSON.parse(readFileSync(status, 'utf8'))).toMatchObject({
      status: 'error',
      message: 'Could not create configdrive on disk.',
    });
    expect(JSON.parse(readFileSync(status, 'utf8')).detail).toMatch(/free at the end/);
    expect(await sha256Of(device)).toBe(before);
  });

  it('fails with OVH sentence, before writing, when the image already has two config-2 partitions (one named, one labelled)', async () => {
    const bytes = makeImage(
      'twocd',
      'gpt',
      512,
      IMAGE_SIZE,
      'size=4MiB, type=L, name=config-2\nsize=4MiB, type=L\ntype=L\n',
    );
    const file = join(dir, 'twocd.raw');
    // The second partition holds a vfat labelled config-2 (mkfs.fat at its offset, as a tool would).
    sh('mkfs.fat', ['--offset', String((5 * MiB) / 512), '-n', 'config-2', file, String(4 * 1024)]);
    server.serve('/twocd', { body: readFileSync(file) });
    expect(bytes.length).toBe(IMAGE_SIZE);
    const { device, result, status, before } = await deployOnto('twocd', 512);
    expect(result.exitCode).toBe(1);
    expect(result.lastLine).toBe('Could not create configdrive on disk.');
    expect(JSON.parse(readFileSync(status, 'utf8')).detail).toMatch(/2 config-2 partitions \(1, 2\)/);
    expect(await sha256Of(device)).toBe(before);
  });
});
