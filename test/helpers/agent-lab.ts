// The lab of the whole-loop tests (test/api/e2e.test.ts, test/api/ovh-sdk.test.ts,
// test/panel/panel-browser.test.ts): a GPT image made by tools we did not write, and the boot
// command with which the API spawns `byoi agent` onto the loop device the test attached.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh } from './deploy.ts';

const MiB = 2 ** 20;
const repo = fileURLToPath(new URL('../..', import.meta.url));

/**
 * `raw`: a GPT disk image of `sizeMiB` made by sgdisk, one Linux partition of `partitionMiB` at
 * 1 MiB filled with random data; `qcow2`: the same converted by qemu-img.
 */
export function makeGptImages(raw: string, qcow2: string, sizeMiB: number, partitionMiB: number): void {
  sh('truncate', ['-s', `${sizeMiB * MiB}`, raw]);
  sh('sgdisk', [`-n1:2048:+${partitionMiB}M`, '-t1:8300', raw]);
  sh('dd', ['if=/dev/urandom', `of=${raw}`, 'bs=1M', 'seek=1', `count=${partitionMiB}`, 'conv=notrunc', 'status=none']);
  sh('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
}

/**
 * The boot command that runs `byoi agent` for the booted server ({server}, {service}) onto `disk`,
 * without rebooting; `insecure`: the API it reports to is plain HTTP.
 */
export function agentCommand(disk: string, options: { insecure: boolean }): string[] {
  return [
    process.execPath,
    join(repo, 'agent/byoi.ts'),
    'agent',
    ...(options.insecure ? ['--insecure'] : []),
    '--server',
    '{server}',
    '--service-name',
    '{service}',
    '--disk',
    disk,
    '--no-reboot',
    '--ram-size',
    String(4 * 1024 * MiB),
    '--deliver-timeout',
    '30',
  ];
}
