// Boots the rescue system (build-rescue.sh) in QEMU (TCG) as a lab PXE-boots a server: its kernel,
// its initramfs and a command line naming the provisioning API, with the server's disks and a NIC
// on QEMU's user-mode network (the guest is 10.0.2.15 by DHCP; the host's 127.0.0.1 is 10.0.2.2).
// Under -no-reboot, the reboot that ends a deployment ends QEMU.
//
//   import { ensureRescue, bootRescue } from './boot.ts';
//   const rescue = await ensureRescue({ dist, out });
//   const vm = bootRescue({ rescue, disks: ['disk.img'], cmdline: ['byoi.server=http://10.0.2.2:8080', ...] });
//   const { end, status, console } = await vm.outcome;
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { machineArgs, qemuValue, startQemu, type QemuRunning } from '../vm/qemu.ts';

const here = dirname(fileURLToPath(import.meta.url));

export interface Rescue {
  /** The uncompressed ELF kernel: QEMU boots it through PVH, without firmware or decompression. */
  kernel: string;
  initrd: string;
}

/** Builds the rescue system around the bundle in `dist` into `out` (the Debian part comes from the cache). */
export async function ensureRescue(options: { dist: string; out: string }): Promise<Rescue> {
  const { stdout } = await promisify(execFile)(
    'bash',
    [join(here, 'build-rescue.sh'), '--dist', options.dist, '--out', options.out],
    {
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const dir = stdout.trim().split('\n').pop() ?? '';
  return { kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img') };
}

export interface RescueBootOptions {
  rescue: Rescue;
  /** Raw disk images, on virtio (/dev/vda, ...), in this order; the guest writes to them. */
  disks: string[];
  /** Kernel parameters after console=ttyS0: the byoi.* settings. */
  cmdline: string[];
  /** The NIC's MAC: a config drive's network_data.json names the NICs the agent saw. */
  mac?: string;
  memoryMiB?: number;
  timeoutSeconds?: number;
  onConsole?: (text: string) => void;
}

export function bootRescue(options: RescueBootOptions): QemuRunning {
  const args = [
    // qemu64, not max: without the AVX and SHA extensions TCG emulates slowly, the agent's SHA-256
    // (OpenSSL) runs 2-3 times faster (measured: 64 MiB in 1.6-2.1 s against 4.2-5.2 s).
    ...machineArgs({ cpu: 'qemu64', memoryMiB: options.memoryMiB ?? 4096 }),
    '-kernel',
    options.rescue.kernel,
    '-initrd',
    options.rescue.initrd,
    // Switches that save seconds under TCG (no self-tests, no mitigations, one UART probed).
    '-append',
    [
      'console=ttyS0',
      'quiet',
      'mitigations=off',
      'cryptomgr.notests',
      'random.trust_cpu=on',
      'tsc=reliable',
      '8250.nr_uarts=1',
      ...options.cmdline,
    ].join(' '),
    '-netdev',
    'user,id=net0',
    '-device',
    `virtio-net-pci,netdev=net0${options.mac ? `,mac=${options.mac}` : ''}`,
  ];
  options.disks.forEach((file, index) => {
    args.push('-drive', `file=${qemuValue(resolve(file))},format=raw,if=none,id=d${index},cache=unsafe`);
    args.push('-device', `virtio-blk-pci,drive=d${index},serial=disk${index}`);
  });
  return startQemu({ args, timeoutSeconds: options.timeoutSeconds ?? 900, onConsole: options.onConsole });
}
