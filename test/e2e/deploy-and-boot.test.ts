// The whole system in QEMU: the harness guest plays the rescue system of a server with a blank
// disk; `byoi deploy` fetches the cloud image (scripts/image/build-cloud-image.sh) from this test's
// HTTP server on the host, writes it with a config drive and reports done. Then the "server" boots
// its disk, once with SeaBIOS and once with OVMF, and cloud-init applies the config drive. A wrong
// checksum is reported as OVH's error and leaves the disk as it was.
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootDisk, ensureCloudImage, type Firmware } from '../../scripts/image/boot.ts';
import { ensureGuest, runInVm } from '../../scripts/vm/run.ts';
import { messages } from '../../lib/errors.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { expectCloudInitApplied, userDataScript } from './boot-checks.ts';

const run = promisify(execFile);
const GiB = 1024 ** 3;

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe.skipIf(skipWithout('root', 'qemu', 'ssh-keygen'))('byoi deploys a cloud image in a VM, which then boots it', () => {
  let dir = '';
  let image = '';
  let imageSha256 = '';
  let server: Server | undefined;
  let baseUrl = '';
  let publicKey = '';
  const marker = `byoi-e2e-${randomBytes(6).toString('hex')}`;
  const hostname = 'e2e-deployed-node';
  // The rule is RAM - 3 GiB >= what the download needs; the guest has less, so the test says 8 GiB.
  const ramSize = String(8 * GiB);

  beforeAll(async () => {
    assertCapable('root', 'qemu', 'ssh-keygen');
    [image] = await Promise.all([ensureCloudImage(), ensureGuest()]);
    imageSha256 = await sha256Of(image);
    dir = mkdtempSync(join(tmpdir(), 'byoi-e2e-'));
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', marker, '-f', join(dir, 'key')]);
    publicKey = readFileSync(join(dir, 'key.pub'), 'utf8').trim();
    server = createServer((request, response) => {
      if (request.url !== '/debian-12-byoi.qcow2') return void response.writeHead(404).end();
      response.writeHead(200, { 'content-length': statSync(image).size });
      createReadStream(image).pipe(response);
    });
    await new Promise<void>((listening) => server!.listen(0, '127.0.0.1', listening));
    baseUrl = `http://10.0.2.2:${(server.address() as AddressInfo).port}`;
  }, 30 * 60_000);

  afterAll(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function blankDisk(name: string): string {
    const file = join(dir, name);
    writeFileSync(file, '');
    truncateSync(file, 2 * GiB);
    return file;
  }

  function deployScript(checksum: string, configDrive: string): string {
    return `
      byoi deploy --url ${baseUrl}/debian-12-byoi.qcow2 --type qcow2 --checksum ${checksum} --checksum-type sha256 \\
        --disk /dev/disk/by-id/virtio-target --no-reboot --status-file /job/status.json --ram-size ${ramSize} ${configDrive}
      echo "deploy-exit: $?"
      cat /sys/class/net/eth0/address >/job/mac
    `;
  }

  it('reports a wrong checksum as OVH does and leaves the disk unchanged', async () => {
    const disk = blankDisk('wrong-checksum.img');
    writeFileSync(disk, randomBytes(1024 * 1024), { flag: 'r+' });
    const before = await sha256Of(disk);
    const exchangeDir = join(dir, 'wrong-checksum');
    mkdirSync(exchangeDir);
    const wrong = imageSha256.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const result = await runInVm({
      disks: [{ file: disk, serial: 'target' }],
      network: true,
      exchangeDir,
      memoryMiB: 1536,
      timeoutSeconds: 600,
      script: deployScript(wrong, ''),
    });
    expect(result.output).toContain('deploy-exit: 1');
    const report = JSON.parse(readFileSync(join(exchangeDir, 'status.json'), 'utf8'));
    expect(report.status).toBe('error');
    expect(report.message).toBe(messages.checksumMismatch('sha256', imageSha256, wrong));
    expect(await sha256Of(disk)).toBe(before);
  }, 700_000);

  describe('a deployment with a config drive', () => {
    let disk = '';
    let mac = '';

    it('is reported done', async () => {
      disk = blankDisk('target.img');
      const exchangeDir = join(dir, 'deploy');
      mkdirSync(exchangeDir);
      writeFileSync(join(exchangeDir, 'user-data'), userDataScript(marker));
      const result = await runInVm({
        disks: [{ file: disk, serial: 'target' }],
        network: true,
        exchangeDir,
        memoryMiB: 1536,
        timeoutSeconds: 900,
        script: deployScript(imageSha256, `--hostname ${hostname} --ssh-key '${publicKey}' --user-data /job/user-data`),
      });
      expect(result.output).toContain('deploy-exit: 0');
      const report = JSON.parse(readFileSync(join(exchangeDir, 'status.json'), 'utf8'));
      expect(report).toMatchObject({ status: 'done', checksum: imageSha256 });
      mac = readFileSync(join(exchangeDir, 'mac'), 'utf8').trim();
      // The disk now holds the image's partitions and, at its end, the config drive.
      const { stdout } = await run('sgdisk', ['-v', disk]);
      expect(stdout).toContain('No problems found');
    }, 1000_000);

    for (const firmware of ['bios', 'uefi'] as Firmware[]) {
      it(`boots through ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF'} and cloud-init applies the config drive`, async () => {
        expect(disk, 'the deployment ran').not.toBe('');
        const { console } = await bootDisk({
          firmware,
          // Each boot is the first one of this deployment: the disk file is left as byoi wrote it.
          disks: [{ file: disk, snapshot: true }],
          nicMacs: [mac],
          until: /Cloud-init v\. \S+ finished at .*Datasource .*\n/,
          timeoutSeconds: 840,
        });
        // The partition byoi added after the image's three.
        expectCloudInitApplied(console, { firmware, marker, hostname, publicKey, configDrive: '/dev/vda4' });
      }, 900_000);
    }
  });
});
