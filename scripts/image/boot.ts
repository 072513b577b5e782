// Boots a disk image in QEMU (TCG) the way a server boots its local disk: through firmware,
// SeaBIOS (legacy) or OVMF (UEFI), then the disk's own boot loader. Watches the serial console
// until a line matches `until`, then kills QEMU: a booted cloud image never powers itself off.
//
//   import { bootDisk, ensureCloudImage } from './boot.ts';
//   const { console } = await bootDisk({ disks: [{ file: 'disk.qcow2', format: 'qcow2' }], firmware: 'uefi', until: /marker/ });
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { machineArgs, qemuValue, startQemu, VmError } from '../vm/qemu.ts';

const here = dirname(fileURLToPath(import.meta.url));

export type Firmware = 'bios' | 'uefi';

export interface BootDisk {
  file: string;
  format?: 'raw' | 'qcow2';
  /** Opened read-only through a throw-away overlay: the file is left as it was. */
  snapshot?: boolean;
}

export interface BootOptions {
  /** The first disk is the boot disk. */
  disks: BootDisk[];
  firmware: Firmware;
  /** Stops the VM once the console matches. */
  until: RegExp;
  /** NICs on QEMU's user-mode network, by MAC: a config drive's network_data.json names the
   * server's NICs, and cloud-init stops if one of them is missing. */
  nicMacs?: string[];
  memoryMiB?: number;
  timeoutSeconds?: number;
  onConsole?: (text: string) => void;
}

export interface BootResult {
  /** The serial console up to the match, \n line ends. */
  console: string;
  seconds: number;
}

const ovmfCode = '/usr/share/OVMF/OVMF_CODE.fd';
const ovmfVars = '/usr/share/OVMF/OVMF_VARS.fd';

export async function bootDisk(options: BootOptions): Promise<BootResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'byoi-boot-'));
  const args = machineArgs({ memoryMiB: options.memoryMiB ?? 1024 });
  if (options.firmware === 'uefi') {
    // OVMF writes its variables (boot entries it discovers): each boot gets its own copy.
    const vars = join(scratch, 'OVMF_VARS.fd');
    copyFileSync(ovmfVars, vars);
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${ovmfCode}`);
    args.push('-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  }
  options.disks.forEach((disk, index) => {
    const snapshot = disk.snapshot ? ',snapshot=on' : '';
    args.push(
      '-drive',
      `file=${qemuValue(resolve(disk.file))},format=${disk.format ?? 'raw'},if=none,id=d${index},cache=unsafe${snapshot}`,
    );
    args.push('-device', `virtio-blk-pci,drive=d${index},bootindex=${index}`);
  });

  (options.nicMacs ?? []).forEach((mac, index) => {
    args.push('-netdev', `user,id=n${index}`, '-device', `virtio-net-pci,netdev=n${index},mac=${mac}`);
  });

  try {
    const { outcome } = startQemu({
      args,
      until: options.until,
      timeoutSeconds: options.timeoutSeconds ?? 600,
      onConsole: options.onConsole,
    });
    const { end, status, console, stderr, seconds } = await outcome;
    if (end === 'matched') return { console, seconds };
    if (end === 'timeout')
      throw new VmError(`no ${options.until} on the console within ${options.timeoutSeconds ?? 600} s`, console);
    throw new VmError(
      `QEMU stopped (status ${status}) before ${options.until} appeared${stderr ? `: ${stderr}` : ''}`,
      console,
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Builds the cloud image (scripts/image/build-cloud-image.sh) or finds it in the cache. */
export async function ensureCloudImage(): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', [join(here, 'build-cloud-image.sh')], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim().split('\n').pop() ?? '';
}
