// The QEMU harness itself: md RAID1 + LVM + ext4 built inside the guest (this machine's kernel has
// neither md nor device-mapper), the project's Node 24 and modules usable there, disks that keep
// what the guest wrote for a second boot, exit codes and files that reach the host, and a timeout
// that leaves no QEMU behind.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuest, runInVm, VmError, type VmDisk } from '../../scripts/vm/run.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

describe.skipIf(skipWithout('root', 'qemu'))('QEMU VM harness', () => {
  let dir: string;
  let disks: VmDisk[];

  beforeAll(async () => {
    assertCapable('root', 'qemu');
    dir = mkdtempSync(join(tmpdir(), 'byoi-vm-test-'));
    disks = ['a', 'b'].map((name) => {
      const file = join(dir, `${name}.img`);
      writeFileSync(file, '');
      truncateSync(file, 64 * 1024 * 1024);
      return { file, serial: `byoi-${name}` };
    });
    await ensureGuest(); // a cold build (fresh machine) takes a few minutes; cached, seconds
  }, 15 * 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('builds md RAID1 + LVM + ext4 over two disks and runs the project with Node 24', async () => {
    const result = await runInVm({
      disks,
      timeoutSeconds: 240,
      script: `set -euo pipefail
        mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 \\
          /dev/disk/by-id/virtio-byoi-a /dev/disk/by-id/virtio-byoi-b
        pvcreate -q /dev/md0
        vgcreate -q byoivg /dev/md0
        lvcreate -q --yes -n data -l 100%FREE byoivg
        mkfs.ext4 -q /dev/byoivg/data
        mount /dev/byoivg/data /mnt
        echo written-in-guest >/mnt/proof
        echo "mounted: $(findmnt -n -o SOURCE /mnt) $(cat /mnt/proof)"
        cat /proc/mdstat
        lvs --noheadings -o vg_name,lv_name,devices
        echo "node: $(node --version)"
        node -e "import('/byoi/lib/disk/lsblk.ts').then(async ({ readLsblk }) => {
          for (const disk of await readLsblk()) {
            const holders = (disk.children ?? []).map((md) => [md.name, ...(md.children ?? []).map((lv) => lv.name)].join('>'));
            console.log('lsblk:', disk.name, holders.join(','));
          }
        })"
        umount /mnt
        vgchange -q -an byoivg
        mdadm --stop /dev/md0
      `,
    });
    expect(result.output).toContain('mounted: /dev/mapper/byoivg-data written-in-guest');
    expect(result.output).toMatch(/^md0 : active raid1 vd[ab]\[1\] vd[ab]\[0\]$/m);
    expect(result.output).toMatch(/\[2\/2\] \[UU\]/);
    expect(result.output).toMatch(/^\s*byoivg\s+data\s+\/dev\/md0\(0\)\s*$/m);
    expect(result.output).toContain('node: v24.');
    // The project's own lsblk reader, run by the project's Node, sees the holder stack.
    expect(result.output).toMatch(/^lsblk: vda md0>byoivg-data$/m);
    expect(result.output).toMatch(/^lsblk: vdb md0>byoivg-data$/m);
    expect(result.exitCode).toBe(0);
    console.log(`VM boot ${result.bootSeconds.toFixed(1)} s, whole run ${result.totalSeconds.toFixed(1)} s`);
  }, 300_000);

  it('finds the array and volume group on the same disks in a second boot, and returns files, exit codes and the host over the network; disks on every bus', async () => {
    const exchangeDir = join(dir, 'exchange');
    mkdirSync(exchangeDir);
    const server = createServer((_request, response) => response.end('hello from the host'));
    await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
    const { port } = server.address() as AddressInfo;
    const others: VmDisk[] = [
      { file: join(dir, 'nvme.img'), bus: 'nvme', serial: 'byoi-nvme', logicalBlockSize: 4096 },
      { file: join(dir, 'scsi.img'), bus: 'scsi', serial: 'byoi-scsi' },
      { file: join(dir, 'sata.img'), bus: 'sata', serial: 'byoi-sata' },
    ];
    for (const { file } of others) {
      writeFileSync(file, '');
      truncateSync(file, 16 * 1024 * 1024);
    }
    const result = await runInVm({
      disks: [...disks, ...others],
      exchangeDir,
      network: true,
      timeoutSeconds: 240,
      script: `
        mdadm --examine /dev/vda
        pvs --noheadings -o pv_name,vg_name
        lvs --noheadings -o vg_name,lv_name,lv_active
        blkid /dev/vdb
        lsblk --json -o NAME,TYPE,FSTYPE >/job/lsblk.json
        for id in nvme-QEMU_NVMe_Ctrl_byoi-nvme scsi-0QEMU_QEMU_HARDDISK_byoi-scsi ata-QEMU_HARDDISK_byoi-sata; do
          echo "by-id: $id $(blockdev --getss /dev/disk/by-id/$id)"
        done
        echo "http: $(busybox wget -q -O - http://10.0.2.2:${port}/)"
        exit 7
      `,
    }).finally(() => server.close());
    expect(result.exitCode).toBe(7);
    expect(result.output).toContain('http: hello from the host');
    expect(result.output).toContain('by-id: nvme-QEMU_NVMe_Ctrl_byoi-nvme 4096');
    expect(result.output).toContain('by-id: scsi-0QEMU_QEMU_HARDDISK_byoi-scsi 512');
    expect(result.output).toContain('by-id: ata-QEMU_HARDDISK_byoi-sata 512');
    expect(result.output).toMatch(/Version : 1\.2/);
    expect(result.output).toMatch(/Raid Level : raid1/);
    // udev assembled the array and activated the volume group at boot, as in a rescue system.
    expect(result.output).toMatch(/^\s*\/dev\/md\d+\s+byoivg\s*$/m);
    expect(result.output).toMatch(/^\s*byoivg\s+data\s+active\s*$/m);
    expect(result.output).toMatch(/\/dev\/vdb: .*TYPE="linux_raid_member"/);
    const lsblk = JSON.parse(readFileSync(join(exchangeDir, 'lsblk.json'), 'utf8')) as {
      blockdevices: { name: string; fstype: string | null }[];
    };
    expect(
      lsblk.blockdevices
        .filter((d) => d.fstype === 'linux_raid_member')
        .map((d) => d.name)
        .sort(),
    ).toEqual(['vda', 'vdb']);
  }, 300_000);

  it('kills QEMU on timeout and leaves no process behind', async () => {
    const exchangeDir = join(dir, 'timeout');
    mkdirSync(exchangeDir);
    await expect(runInVm({ script: 'sleep 600', exchangeDir, timeoutSeconds: 3 })).rejects.toThrow(VmError);
    const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(processes).not.toContain(exchangeDir);
  }, 60_000);
});
