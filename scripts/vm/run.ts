// Runs a shell script as root inside a QEMU guest (TCG) that boots Debian 12's kernel, for what this
// machine's kernel cannot do (md, LVM, dm-crypt). The guest (scripts/vm/build-guest.sh) sees the
// project read-only at /byoi (node and `byoi` are on its PATH) and an exchange directory at /job.
//
//   import { runInVm } from './run.ts';
//   const { exitCode, output } = await runInVm({ disks: [{ file: 'a.img' }], script: 'lsblk' });
//
// CLI: npx node scripts/vm/run.ts [--disk FILE[,serial=S][,bus=virtio|scsi|nvme|sata]
//        [,format=raw|qcow2][,lbs=512|4096]]... [--memory MiB] [--cpus N] [--timeout S] [--net]
//        [--exchange DIR] (--script-file FILE | -- SCRIPT...)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { machineArgs, qemuValue, startQemu, VmError } from './qemu.ts';

const here = dirname(fileURLToPath(import.meta.url));
const projectRoot = resolve(here, '../..');

export type DiskBus = 'virtio' | 'scsi' | 'nvme' | 'sata';

export interface VmDisk {
  /** Image file on the host; the guest writes to it. */
  file: string;
  format?: 'raw' | 'qcow2';
  /** Shows up in /dev/disk/by-id (virtio-<serial>, nvme-QEMU_NVMe_Ctrl_<serial>, ...). */
  serial?: string;
  bus?: DiskBus;
  logicalBlockSize?: 512 | 4096;
}

export interface VmOptions {
  disks?: VmDisk[];
  /** Run by bash as root in the guest, from /; add `set -euo pipefail` if wanted. */
  script: string;
  memoryMiB?: number;
  cpus?: number;
  timeoutSeconds?: number;
  /** User-mode networking: the guest is 10.0.2.15 and reaches the host's 127.0.0.1 at 10.0.2.2. */
  network?: boolean;
  /** Host directory mounted read-write at /job, to pass files in and out. Default: a temp dir. */
  exchangeDir?: string;
  /** Receives the serial console as it comes (boot messages included). */
  onConsole?: (text: string) => void;
}

export interface VmResult {
  exitCode: number;
  /** What the script wrote to stdout and stderr, interleaved, with \n line ends. */
  output: string;
  /** The whole serial console. */
  console: string;
  /** From QEMU's start until the script started. */
  bootSeconds: number;
  totalSeconds: number;
}

export { VmError };

export interface Guest {
  kernel: string;
  initrd: string;
}

let guestBuild: Promise<Guest> | undefined;

/** Builds the guest, or finds it in the cache (seconds); a cold build takes a few minutes. */
export function ensureGuest(): Promise<Guest> {
  guestBuild ??= promisify(execFile)('bash', [join(here, 'build-guest.sh')], {
    maxBuffer: 64 * 1024 * 1024,
  }).then(
    ({ stdout }) => {
      const dir = stdout.trim().split('\n').pop() ?? '';
      return { kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img') };
    },
    (error: Error & { stderr?: string }) => {
      guestBuild = undefined;
      throw new Error(`building the VM guest failed: ${error.message}\n${error.stderr ?? ''}`);
    },
  );
  return guestBuild;
}

function diskArgs(disks: VmDisk[]): string[] {
  const args: string[] = [];
  if (disks.some((disk) => disk.bus === 'scsi')) args.push('-device', 'virtio-scsi-pci,id=scsi0');
  let sataPort = 0;
  disks.forEach((disk, index) => {
    const id = `disk${index}`;
    const format = disk.format ?? 'raw';
    args.push('-drive', `file=${qemuValue(resolve(disk.file))},format=${format},if=none,id=${id},cache=unsafe`);
    const serial = qemuValue(disk.serial ?? `byoi-disk${index}`);
    const blocks = disk.logicalBlockSize
      ? `,logical_block_size=${disk.logicalBlockSize},physical_block_size=${disk.logicalBlockSize}`
      : '';
    switch (disk.bus ?? 'virtio') {
      case 'virtio':
        args.push('-device', `virtio-blk-pci,drive=${id},serial=${serial}${blocks}`);
        break;
      case 'scsi':
        args.push('-device', `scsi-hd,drive=${id},bus=scsi0.0,serial=${serial}${blocks}`);
        break;
      case 'nvme':
        args.push('-device', `nvme,drive=${id},serial=${serial}${blocks}`);
        break;
      case 'sata':
        // q35's built-in AHCI controller has six ports; ATA disks have 512-byte logical sectors.
        args.push('-device', `ide-hd,drive=${id},bus=ide.${sataPort++},serial=${serial}${blocks}`);
        break;
    }
  });
  return args;
}

export async function runInVm(options: VmOptions): Promise<VmResult> {
  const guest = await ensureGuest();
  const nonce = randomBytes(8).toString('hex');
  const ownExchange = options.exchangeDir === undefined;
  const exchange = options.exchangeDir ?? mkdtempSync(join(tmpdir(), 'byoi-vm-'));
  writeFileSync(join(exchange, '.byoi-vm-script.sh'), options.script);

  // Boot switches that save seconds under TCG (no self-tests, no W+X scan, no mitigations).
  const append = [
    'console=ttyS0',
    'panic=-1',
    'quiet',
    'rdinit=/init',
    'net.ifnames=0',
    `byoi.nonce=${nonce}`,
    'rodata=off',
    'mitigations=off',
    'cryptomgr.notests',
    'random.trust_cpu=on',
    'no_timer_check',
    'audit=0',
    'nowatchdog',
    '8250.nr_uarts=1',
    'tsc=reliable',
  ];
  if (options.network) append.push('byoi.net=1');
  const args = [
    ...machineArgs({ cpus: options.cpus ?? 1, memoryMiB: options.memoryMiB ?? 1024 }),
    '-kernel',
    guest.kernel,
    '-initrd',
    guest.initrd,
    '-append',
    append.join(' '),
    '-virtfs',
    `local,path=${qemuValue(projectRoot)},mount_tag=byoi,security_model=none,readonly=on,multidevs=remap`,
    '-virtfs',
    `local,path=${qemuValue(resolve(exchange))},mount_tag=job,security_model=none,multidevs=remap`,
    ...diskArgs(options.disks ?? []),
    ...(options.network ? ['-netdev', 'user,id=net0', '-device', 'virtio-net-pci,netdev=net0'] : []),
  ];

  const started = performance.now();
  let bootSeconds = Number.NaN;
  const begin = `byoi-vm:${nonce}:begin\n`;
  try {
    const timeoutSeconds = options.timeoutSeconds ?? 300;
    const qemu = startQemu({
      args,
      timeoutSeconds,
      onConsole: (chunk) => {
        options.onConsole?.(chunk);
        if (Number.isNaN(bootSeconds) && qemu.console().includes(begin))
          bootSeconds = (performance.now() - started) / 1000;
      },
    });
    const { end: qemuEnd, status, console: consoleText, stderr } = await qemu.outcome;
    if (qemuEnd === 'timeout') throw new VmError(`the VM did not finish within ${timeoutSeconds} s`, consoleText);
    const start = consoleText.indexOf(begin);
    const end = new RegExp(`byoi-vm:${nonce}:exit:(\\d+)\n`).exec(consoleText.slice(start + begin.length));
    if (start < 0 || !end) {
      throw new VmError(
        `the VM stopped (QEMU status ${status}) before the script finished${stderr ? `: ${stderr}` : ''}`,
        consoleText,
      );
    }
    return {
      exitCode: Number(end[1]),
      output: consoleText.slice(start + begin.length, start + begin.length + end.index),
      console: consoleText,
      bootSeconds,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    if (ownExchange) rmSync(exchange, { recursive: true, force: true });
    else rmSync(join(exchange, '.byoi-vm-script.sh'), { force: true });
  }
}

function parseDisk(spec: string): VmDisk {
  const [file, ...settings] = spec.split(',');
  const disk: VmDisk = { file: file ?? '' };
  for (const setting of settings) {
    const [key, value = ''] = setting.split('=');
    if (key === 'serial') disk.serial = value;
    else if (key === 'bus') disk.bus = value as DiskBus;
    else if (key === 'format') disk.format = value as 'raw' | 'qcow2';
    else if (key === 'lbs') disk.logicalBlockSize = Number(value) as 512 | 4096;
    else throw new Error(`unknown disk setting ${JSON.stringify(setting)}`);
  }
  return disk;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      disk: { type: 'string', multiple: true, default: [] },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      timeout: { type: 'string' },
      net: { type: 'boolean', default: false },
      exchange: { type: 'string' },
      'script-file': { type: 'string' },
    },
  });
  const script = values['script-file'] ? readFileSync(values['script-file'], 'utf8') : positionals.join(' ');
  if (!script) throw new Error('give a script: --script-file FILE or -- SCRIPT');
  const result = await runInVm({
    disks: values.disk.map(parseDisk),
    script,
    memoryMiB: values.memory ? Number(values.memory) : undefined,
    cpus: values.cpus ? Number(values.cpus) : undefined,
    timeoutSeconds: values.timeout ? Number(values.timeout) : undefined,
    network: values.net,
    exchangeDir: values.exchange,
  });
  process.stdout.write(result.output);
  process.stderr.write(
    `vm: exit ${result.exitCode}, boot ${result.bootSeconds.toFixed(1)} s, total ${result.totalSeconds.toFixed(1)} s\n`,
  );
  process.exitCode = result.exitCode;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 125;
  });
}
