// The cloud image the end-to-end test deploys (scripts/image/build-cloud-image.sh), booted alone:
// SeaBIOS and OVMF each find GRUB on it, the kernel boots, and cloud-init applies a config drive
// made by `byoi configdrive` (attached as a second disk): hostname, SSH key, user-data script.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootDisk, ensureCloudImage, type Firmware } from '../../scripts/image/boot.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { expectCloudInitApplied, userDataScript } from './boot-checks.ts';

const run = promisify(execFile);

describe.skipIf(skipWithout('root', 'qemu', 'mtools', 'ssh-keygen'))('the cloud image boots with a config drive', () => {
  let dir = '';
  let image = '';
  let drive = '';
  let publicKey = '';
  let nicMacs: string[] = [];
  const marker = `byoi-e2e-${randomBytes(6).toString('hex')}`;
  const hostname = 'e2e-image-node';

  beforeAll(async () => {
    assertCapable('root', 'qemu', 'mtools', 'ssh-keygen');
    image = await ensureCloudImage();
    dir = mkdtempSync(join(tmpdir(), 'byoi-image-boot-'));
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', marker, '-f', join(dir, 'key')]);
    publicKey = readFileSync(join(dir, 'key.pub'), 'utf8').trim();
    writeFileSync(join(dir, 'user-data'), userDataScript(marker));
    drive = join(dir, 'config-drive.img');
    await run('npx', ['byoi', 'configdrive', '--out', drive, '--hostname', hostname, '--ssh-key', publicKey,
      '--user-data', join(dir, 'user-data')]);
    // The drive describes this machine's NICs; the VM gets NICs with the same MACs, as the server would.
    const { stdout } = await run('mtype', ['-i', drive, '::/openstack/latest/network_data.json']).catch(() => ({ stdout: '{"links":[]}' }));
    nicMacs = (JSON.parse(stdout) as { links: { ethernet_mac_address?: string }[] }).links
      .flatMap((link) => (link.ethernet_mac_address ? [link.ethernet_mac_address] : []));
  }, 30 * 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const firmware of ['bios', 'uefi'] as Firmware[]) {
    it(`through ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF'}`, async () => {
      const { console } = await bootDisk({
        firmware,
        disks: [{ file: image, format: 'qcow2', snapshot: true }, { file: drive }],
        nicMacs,
        until: /Cloud-init v\. \S+ finished at .*Datasource .*\n/,
        timeoutSeconds: 840,
      });
      // The second disk, whole.
        expectCloudInitApplied(console, { firmware, marker, hostname, publicKey, configDrive: '/dev/vdb' });
    }, 900_000);
  }
});
