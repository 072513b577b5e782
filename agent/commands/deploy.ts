// `byoi deploy`: a job from flags and/or a JSON body (--job FILE|-), validated, then the
// pipeline of agent/deploy.ts with its status file, JSON log and progress bar. Exit 0 done,
// 1 a deployment error, 2 an invalid job; the message is the last line of stderr. What the handler
// runs is in ./deploy-handler.ts, imported when it runs.
import type { CommandModule } from 'yargs';
import {
  DEFAULT_CONNECTIONS,
  DEFAULT_DEADLINE_MS,
  defaultRetry,
  defaultTimeouts,
  SEGMENTED_MIN_BYTES,
} from '../../lib/download/settings.ts';
import { run } from '../run.ts';
import { configDriveFlags, type ConfigDriveArgs } from './configdrive.ts';

export interface DeployArgs extends ConfigDriveArgs {
  job?: string;
  url?: string;
  type?: string;
  checksum?: string;
  'checksum-type'?: string;
  'disk-group-id'?: number;
  disk?: string;
  description?: string;
  'http-header'?: string[];
  reboot?: boolean;
  'status-file'?: string;
  'ram-size'?: number;
  'download-timeout': number;
  'stall-timeout': number;
  'download-attempts': number;
  'download-connections': number;
  'ca-file'?: string;
  'verify-write'?: boolean;
  'efi-bootloader-path'?: string;
  'efi-check'?: boolean;
  stream?: boolean;
}

export const deployCommandModule: CommandModule<object, DeployArgs> = {
  command: 'deploy',
  describe: 'Download an image into RAM, verify it, write it to a disk, fix its GPT and reboot',
  builder: (yargs) =>
    yargs
      .option('job', {
        type: 'string',
        nargs: 1,
        describe: 'JSON body of bringYourOwnImage or reinstall (a file, or - for stdin); flags override its fields',
      })
      .option('url', { type: 'string', describe: 'http(s) URL of the image' })
      .option('type', {
        type: 'string',
        describe: 'image type: qcow2, raw (also gzip, xz, zstd or bzip2-compressed) or ova',
      })
      .option('checksum', { type: 'string', describe: 'expected checksum of the image file (hex)' })
      .option('checksum-type', { type: 'string', describe: 'md5, sha1, sha256 or sha512' })
      .option('disk-group-id', {
        type: 'number',
        describe: 'disk group to install on; its first disk is written (default 1)',
      })
      .option('disk', { type: 'string', describe: 'the disk to write, e.g. /dev/sda (instead of a disk group)' })
      .conflicts('disk', 'disk-group-id')
      .option('description', { type: 'string', describe: "the image's name" })
      .option('http-header', {
        type: 'string',
        array: true,
        describe: "'Name: value' sent with the download (repeatable); values are secrets",
      })
      .option('reboot', { type: 'boolean', describe: 'reboot when done (--no-reboot to stay)' })
      .option('status-file', { type: 'string', describe: 'JSON status file, replaced atomically at each change' })
      .option('ram-size', { type: 'number', describe: 'bytes of RAM to assume instead of MemTotal' })
      .option('download-timeout', {
        type: 'number',
        default: DEFAULT_DEADLINE_MS / 1000,
        describe: 'seconds the whole download may take, retries included',
      })
      .option('stall-timeout', {
        type: 'number',
        default: defaultTimeouts.idle / 1000,
        describe: 'seconds without a byte before the download is resumed on a new connection',
      })
      .option('download-attempts', {
        type: 'number',
        default: defaultRetry.attempts,
        describe: 'attempts in a row that may fail without a new byte before the download fails',
      })
      .option('download-connections', {
        type: 'number',
        default: DEFAULT_CONNECTIONS,
        describe: `connections for an image of ${SEGMENTED_MIN_BYTES / 1024 ** 2} MiB or more from a server that takes ranges (each fetches its own byte ranges)`,
      })
      .option('verify-write', {
        type: 'boolean',
        describe: 'after writing, read the disk back around the page cache and compare it with the decoded image',
      })
      .option('efi-bootloader-path', {
        type: 'string',
        requiresArg: true,
        describe:
          "UEFI: the bootloader in the image's EFI system partition to make the boot entry for (default \\EFI\\BOOT\\BOOTX64.EFI)",
      })
      .option('efi-check', {
        type: 'boolean',
        describe:
          'UEFI: refuse an image without an EFI system partition or bootloader (--no-efi-check deploys it anyway)',
      })
      .option('ca-file', {
        type: 'string',
        describe: 'PEM file of extra CA certificates to trust for https (besides the system ones)',
      })
      .option('stream', {
        type: 'boolean',
        describe:
          'streaming mode, for images larger than RAM: write as it downloads, the first MiB last (a failure leaves no partition table; see docs/images.md)',
      })
      .options(configDriveFlags),
  handler: (args) => run(async () => (await import('./deploy-handler.ts')).deployCommand(args)),
};
