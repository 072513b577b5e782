// The cloud image the end-to-end test deploys (scripts/image/build-cloud-image.sh), booted alone:
// SeaBIOS and OVMF each find GRUB on it, the kernel boots, and cloud-init applies a config drive
// made by `byoi configdrive` (attached as a second disk): hostname, SSH key, user-data script; one
// drive without network data booted with a NIC byoi never saw (DHCP), one with static addresses.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootDisk, ensureCloudImage, type Firmware } from '../../scripts/image/boot.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { expectCloudInitApplied, userDataScript } from '../helpers/boot-checks.ts';

const run = promisify(execFile);

describe.skipIf(skipWithout('root', 'qemu', 'mtools', 'ssh-keygen'))(
  'the cloud image boots with a config drive',
  () => {
    let dir = '';
    let image = '';
    let drive = '';
    let publicKey = '';
    let staticDrive = '';
    // A NIC byoi never saw: the plain drive carries no network data, so cloud-init configures the
    // first NIC by DHCP whatever its MAC.
    const unseenMac = `52:54:00:${randomBytes(3).toString('hex').match(/../g)!.join(':')}`;
    // The static drive names its NIC by MAC and gives it addresses on QEMU's user network.
    const staticMac = '52:54:00:b0:01:5a';
    const staticV4 = '10.0.2.77';
    const staticV6 = 'fd00:b0::77';
    const marker = `byoi-e2e-${randomBytes(6).toString('hex')}`;
    const hostname = 'e2e-image-node';

    beforeAll(async () => {
      assertCapable('root', 'qemu', 'mtools', 'ssh-keygen');
      image = await ensureCloudImage();
      dir = mkdtempSync(join(tmpdir(), 'byoi-image-boot-'));
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', marker, '-f', join(dir, 'key')]);
      publicKey = readFileSync(join(dir, 'key.pub'), 'utf8').trim();
      writeFileSync(join(dir, 'user-data'), userDataScript(marker));
      const fields = ['--hostname', hostname, '--ssh-key', publicKey, '--user-data', join(dir, 'user-data')];
      drive = join(dir, 'config-drive.img');
      await run('npx', ['byoi', 'configdrive', '--out', drive, ...fields]);
      staticDrive = join(dir, 'config-drive-static.img');
      await run('npx', [
        'byoi',
        'configdrive',
        '--out',
        staticDrive,
        ...fields,
        '--mac',
        staticMac,
        '--address',
        `${staticV4}/24`,
        '--gateway',
        '10.0.2.2',
        '--address',
        `${staticV6}/64`,
        '--dns',
        '10.0.2.3',
      ]);
    }, 30 * 60_000);

    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    // Two boots, one per firmware, each proving one network case.
    const cases = [
      {
        firmware: 'bios',
        drive: () => drive,
        mac: () => unseenMac,
        network: 'no network data: DHCP on a NIC byoi never saw',
      },
      {
        firmware: 'uefi',
        drive: () => staticDrive,
        mac: () => staticMac,
        network: 'static IPv4 and IPv6 on the NIC named by MAC',
      },
    ] as const;
    for (const c of cases) {
      it(`through ${c.firmware === 'bios' ? 'SeaBIOS' : 'OVMF'}, ${c.network}`, async () => {
        const { console } = await bootDisk({
          firmware: c.firmware as Firmware,
          disks: [{ file: image, format: 'qcow2', snapshot: true }, { file: c.drive() }],
          nicMacs: [c.mac()],
          until: /Cloud-init v\. \S+ finished at .*Datasource .*\n/,
          timeoutSeconds: 840,
        });
        // The second disk, whole.
        expectCloudInitApplied(console, {
          firmware: c.firmware as Firmware,
          marker,
          hostname,
          publicKey,
          configDrive: '/dev/vdb',
        });
        const addresses = new RegExp(`${marker} addresses=(.*)`).exec(console)?.[1]?.trim().split(/\s+/) ?? [];
        if (c.firmware === 'uefi') expect(addresses).toEqual(expect.arrayContaining([staticV4, staticV6]));
        else expect(addresses).toContain('10.0.2.15'); // QEMU's DHCP answer
      }, 900_000);
    }
  },
);
