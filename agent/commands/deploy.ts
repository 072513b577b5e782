// `byoi deploy`: a job from flags and/or a JSON body (--job FILE|-), validated, then the
// pipeline of agent/deploy.ts with its status file, JSON log and progress bar. Exit 0 done,
// 1 a deployment error, 2 an invalid job; the message is the last line of stderr.
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import type { CommandModule } from 'yargs';
import { badField, badJobBody, unreadableCaFile, unreadableJob } from '../../lib/errors.ts';
import { jobFromBody, mergeJobInputs, parseHeaderFlag, validateJob, type JobInput } from '../../lib/job.ts';
import { Redactor } from '../../lib/report/redact.ts';
import { StatusFile } from '../../lib/report/status.ts';
import {
  DEFAULT_CONNECTIONS,
  DEFAULT_DEADLINE_MS,
  defaultRetry,
  defaultTimeouts,
  MAX_CONNECTIONS,
  SEGMENTED_MIN_BYTES,
  type DownloadSettings,
} from '../../lib/download/settings.ts';
import { run } from '../run.ts';
import { configDriveFlags, configDriveFromArgs, networkFromArgs, type ConfigDriveArgs } from './configdrive.ts';

interface DeployArgs extends ConfigDriveArgs {
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

/** How to download, from the flags; the CA file is read now so a bad path fails before anything else. */
async function downloadSettings(args: DeployArgs): Promise<DownloadSettings> {
  for (const name of ['download-timeout', 'stall-timeout'] as const) {
    if (!(args[name] > 0)) throw badField(`--${name}`, 'a positive number of seconds');
  }
  const attempts = args['download-attempts'];
  if (!Number.isInteger(attempts) || attempts < 1) throw badField('--download-attempts', 'a positive integer');
  const connections = args['download-connections'];
  if (!Number.isInteger(connections) || connections < 1 || connections > MAX_CONNECTIONS) {
    throw badField('--download-connections', `an integer from 1 to ${MAX_CONNECTIONS}`);
  }
  let ca: string | undefined;
  if (args['ca-file'] !== undefined) {
    try {
      ca = await readFile(args['ca-file'], 'utf8');
    } catch (error) {
      throw unreadableCaFile(args['ca-file'], {
        detail: (error as Error).message,
        cause: error,
      });
    }
  }
  return {
    deadline: args['download-timeout'] * 1000,
    timeouts: { ...defaultTimeouts, idle: args['stall-timeout'] * 1000 },
    retry: { ...defaultRetry, attempts },
    connections,
    ...(ca !== undefined && { ca }),
  };
}

async function readJobBody(path: string): Promise<JobInput> {
  let raw: string;
  try {
    raw = path === '-' ? await text(process.stdin) : await readFile(path, 'utf8');
  } catch (error) {
    throw unreadableJob(path, {
      detail: (error as Error).message,
      cause: error,
    });
  }
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw badJobBody(); // no detail: the parser quotes the text, which may hold secrets
  }
  return jobFromBody(body);
}

async function jobFromFlags(args: DeployArgs): Promise<JobInput> {
  const headers = args['http-header']?.map(parseHeaderFlag);
  const drive = await configDriveFromArgs(args);
  const network = await networkFromArgs(args);
  const input: JobInput = {
    url: args.url,
    type: args.type,
    checksum: args.checksum,
    checksumType: args['checksum-type'],
    diskGroupId: args['disk-group-id'],
    disk: args.disk,
    description: args.description,
    statusFile: args['status-file'],
    ramSize: args['ram-size'],
    noReboot: args.reboot === undefined ? undefined : !args.reboot,
    network,
    verifyWrite: args['verify-write'],
    efiBootloaderPath: args['efi-bootloader-path'],
    skipEfiCheck: args['efi-check'] === false ? true : undefined,
    stream: args.stream,
    ...(headers && { httpHeaders: Object.fromEntries(headers) }),
    ...(drive && {
      configDrive: {
        hostname: drive.hostname,
        sshKey: drive.sshKeys.length ? drive.sshKeys.join('\n') : undefined,
        userData: drive.userData,
        metadata: drive.metadata,
      },
    }),
  };
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as JobInput;
}

async function deployCommand(args: DeployArgs): Promise<void> {
  // Loaded here, not at start-up: every other command would pay for the logger and HTTP client.
  const [{ createLogger, ProgressBar }, { deploy }, { Reporter }] = await Promise.all([
    import('../../lib/report/log.ts'),
    import('../deploy.ts'),
    import('../reporter.ts'),
  ]);
  // Reporting starts first, so that even a job that cannot be read ends in an error status.
  let redactor = new Redactor([]);
  const scrub = (text: string) => redactor.scrub(text);
  const bar = process.stderr.isTTY ? new ProgressBar() : undefined;
  const report = new Reporter(new StatusFile(args['status-file'], scrub), createLogger(scrub, bar), bar);
  try {
    const flags = await jobFromFlags(args);
    const input = mergeJobInputs(args.job === undefined ? {} : await readJobBody(args.job), flags);
    redactor = Redactor.forJob(input);
    const settings = await downloadSettings(args);
    await deploy(validateJob(input), report, settings);
  } catch (error) {
    const visible = redactor.visible(error);
    report.error(visible.message, visible.detail);
    throw visible;
  }
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
  handler: (args) => run(() => deployCommand(args)),
};
