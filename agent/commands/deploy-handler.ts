// What `byoi deploy` runs (./deploy.ts declares its flags, and imports this module when it runs:
// no other command loads the logger, the HTTP client or the pipeline): the job from the flags and
// --job, the download settings, then the pipeline of agent/deploy.ts with its status file, JSON log
// and progress bar.
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { badField, badJobBody, unreadableCaFile, unreadableJob } from '../../lib/errors.ts';
import { jobFromBody, mergeJobInputs, parseHeaderFlag, validateJob, type JobInput } from '../../lib/job.ts';
import { createLogger, ProgressBar } from '../../lib/report/log.ts';
import { Redactor } from '../../lib/report/redact.ts';
import { StatusFile } from '../../lib/report/status.ts';
import { defaultRetry, defaultTimeouts, MAX_CONNECTIONS, type DownloadSettings } from '../../lib/download/settings.ts';
import { deploy } from '../deploy.ts';
import { Reporter } from '../reporter.ts';
import { configDriveFromArgs, networkFromArgs } from './configdrive-args.ts';
import type { DeployArgs } from './deploy.ts';

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

export async function deployCommand(args: DeployArgs): Promise<void> {
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
