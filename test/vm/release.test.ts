// Releasing disks the way a rescue system finds them, in a QEMU guest (this machine's kernel has no
// md and no device-mapper): md RAID1 (metadata 1.0 and 1.2) assembled at boot and holding the
// target, active LVM on it, mounted ext4, active swap. byoi deploy releases each target, deploys,
// and a fresh boot finds nothing old on it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuest, runInVm, type VmDisk } from '../../scripts/vm/run.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

const MiB = 1024 * 1024;
const IMAGE_SIZE = 32 * MiB;

async function sha256(file: string, start: number, end: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { start, end: end - 1 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// The image's bytes between its primary GPT (LBAs 0-33) and its backup GPT (its last 33 LBAs):
// moving the backup header to the end of the disk rewrites both headers, nothing else.
const GPT_HEAD = 34 * 512;
const GPT_TAIL = 33 * 512;
const imageBody = (file: string) => sha256(file, GPT_HEAD, IMAGE_SIZE - GPT_TAIL);

describe.skipIf(skipWithout('root', 'qemu', 'sgdisk'))('releasing md, LVM, mounts and swap in a rescue system', () => {
  let dir: string;
  let server: Server;
  let disks: VmDisk[];
  let image: string;
  let imageSha: string;

  beforeAll(async () => {
    assertCapable('root', 'qemu', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-vm-release-'));
    // The image to deploy: a GPT disk whose partitions hold recognisable bytes.
    image = join(dir, 'image.raw');
    writeFileSync(image, '');
    truncateSync(image, IMAGE_SIZE);
    execFileSync('sgdisk', ['-n', '1:2048:+8M', '-t', '1:ef00', '-n', '2:0:0', '-t', '2:8300', image]);
    execFileSync('dd', [
      'if=/dev/urandom',
      `of=${image}`,
      'bs=1M',
      'seek=2',
      'count=20',
      'conv=notrunc',
      'status=none',
    ]);
    imageSha = await imageBody(image);
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': IMAGE_SIZE });
      createReadStream(image).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    disks = ['a', 'b', 'c', 'd'].map((name) => {
      const file = join(dir, `${name}.img`);
      writeFileSync(file, '');
      truncateSync(file, 256 * MiB);
      return { file, serial: `byoi-${name}` };
    });
    await ensureGuest();
  }, 15 * 60_000);

  afterAll(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'leaves the targets deployed and free of every old holder and signature',
    async () => {
      // Boot 1: what a previous install left. a: md RAID1 (1.0) with b, LVM on it, swap, ext4.
      // c: md RAID1 (1.2) with d holding ext4, and an LVM volume group on a partition.
      const setup = await runInVm({
        disks,
        timeoutSeconds: 300,
        script: `set -euo pipefail
        for d in a b c d; do sgdisk -n 1:0:+128M -t 1:fd00 -n 2:0:+32M -n 3:0:0 /dev/disk/by-id/virtio-byoi-$d >/dev/null; done
        for d in vda vdb vdc vdd; do partx -u /dev/$d; done; udevadm settle
        for d in vda vdb vdc vdd; do for n in 1 2 3; do
          for i in $(seq 100); do [ -b /dev/$d$n ] && break; sleep 0.1; done
        done; done
        mdadm --create /dev/md0 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.0 /dev/vda1 /dev/vdb1
        mdadm --create /dev/md1 --run --assume-clean --level=1 --raid-devices=2 --metadata=1.2 /dev/vdc1 /dev/vdd1
        pvcreate -q /dev/md0; vgcreate -q vga /dev/md0; lvcreate -q --yes -n root -l 100%FREE vga; mkfs.ext4 -q /dev/vga/root
        mkswap /dev/vda2 >/dev/null; mkfs.ext4 -q /dev/vda3
        mkfs.ext4 -q /dev/md1
        pvcreate -q /dev/vdc2; vgcreate -q vgc /dev/vdc2; lvcreate -q --yes -n data -l 100%FREE vgc; mkfs.ext4 -q /dev/vgc/data
        vgchange -q -an vga vgc; mdadm --stop /dev/md0 /dev/md1
        echo setup-done`,
      });
      expect(setup.output).toContain('setup-done');
      expect(setup.exitCode).toBe(0);

      // Boot 2: the rescue system assembles the arrays and activates LVM by itself; an operator
      // mounted things and swap is on. byoi deploys onto a, then c.
      const { port } = server.address() as AddressInfo;
      const deploy = (disk: string, status: string) =>
        `byoi deploy --url http://10.0.2.2:${port}/image.raw --type raw --checksum $SHA --checksum-type sha256 ` +
        `--disk ${disk} --no-reboot --ram-size ${4 * 1024 * MiB} --status-file /job/${status} 2>/job/${status}.log; echo "deploy ${disk}: $?"`;
      const fullSha = await sha256(image, 0, IMAGE_SIZE);
      const rescue = await runInVm({
        disks,
        network: true,
        exchangeDir: dir,
        timeoutSeconds: 600,
        memoryMiB: 1024,
        script: `set -uo pipefail
        SHA=${fullSha}
        mkdir -p /mnt/root /mnt/three /mnt/md1 /mnt/data
        mount /dev/vga/root /mnt/root && mount /dev/vda3 /mnt/three && swapon /dev/vda2 && mount /dev/md1 /mnt/md1 && mount /dev/vgc/data /mnt/data
        echo "held: $(cat /proc/mdstat | grep -c '^md') arrays, $(lvs --noheadings | wc -l) volumes, $(findmnt -rn -o TARGET | grep -c '^/mnt/') mounts, $(tail -n +2 /proc/swaps | wc -l) swaps"
        ${deploy('/dev/vda', 'a.json')}
        ${deploy('/dev/vdc', 'c.json')}
        echo "after: $(grep -c '^md' /proc/mdstat) arrays, $(lvs --noheadings 2>/dev/null | wc -l) volumes, $(findmnt -rn -o TARGET | grep -c '^/mnt/') mounts, $(tail -n +2 /proc/swaps | wc -l) swaps"`,
      });
      expect(rescue.output).toContain('held: 2 arrays, 2 volumes, 4 mounts, 1 swaps');
      expect(rescue.output, readFileSync(join(dir, 'a.json.log'), 'utf8')).toContain('deploy /dev/vda: 0');
      expect(rescue.output, readFileSync(join(dir, 'c.json.log'), 'utf8')).toContain('deploy /dev/vdc: 0');
      // b and d keep their (now degraded) halves: only the chosen disks are touched.
      expect(rescue.output).toContain('after: 0 arrays, 0 volumes, 0 mounts, 0 swaps');
      for (const status of ['a.json', 'c.json'])
        expect(JSON.parse(readFileSync(join(dir, status), 'utf8')).status).toBe('done');
      for (const target of [disks[0]!, disks[2]!]) expect(await imageBody(target.file)).toBe(imageSha);

      // Boot 3: nothing old comes back on a or c; b and d still carry their old halves.
      const check = await runInVm({
        disks,
        timeoutSeconds: 300,
        script: `for d in vda vdc vdb vdd; do
          echo "$d: $(lsblk -nrpo NAME /dev/$d | while read -r p; do blkid -p -o value -s TYPE "$p"; mdadm --examine --brief "$p" 2>/dev/null | grep -q ARRAY && echo md-superblock; done | sort | tr '\\n' ' ')"
        done
        echo "pvs: $(pvs --noheadings -o pv_name | tr -d ' ' | tr '\\n' ' ')"
        sgdisk -v /dev/vda | grep -c 'No problems found'`,
      });
      expect(check.output).toMatch(/^vda: +$/m);
      expect(check.output).toMatch(/^vdc: +$/m);
      expect(check.output).toMatch(/^vdb: .*linux_raid_member/m);
      expect(check.output).toMatch(/^vdd: .*linux_raid_member/m);
      expect(check.output).not.toMatch(/pvs: .*\/dev\/(vda|vdc|md)/);
      expect(check.output).toMatch(/^1$/m);
    },
    20 * 60_000,
  );
});
