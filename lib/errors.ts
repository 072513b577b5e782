// The vocabulary: every message byoi shows a user or reports in its status lives here.
// Sentences OVHcloud documents are kept verbatim (research/ovh-byoi.md); failures OVH has no
// sentence for get one in the same style.

/** What went wrong, for exit codes and status: a bad job, a refused image, or a failure while deploying. */
export type ErrorKind = 'invalid-job' | 'refused-image' | 'failed';

/** An error whose message is fit for the status file and the last line of stderr. */
export class ByoiError extends Error {
  readonly kind: ErrorKind;
  /** The cause in more words, for the log and the status detail; never shown instead of the message. */
  readonly detail: string | undefined;

  constructor(kind: ErrorKind, message: string, detail?: string) {
    super(message);
    this.name = 'ByoiError';
    this.kind = kind;
    this.detail = detail;
  }
}

/** An image that byoi will not write: a malformed, hostile or unsupported file. */
export function refusedImage(message: string, detail?: string): ByoiError {
  return new ByoiError('refused-image', message, detail);
}

/** Exit codes of every command: 0 done, 1 a refused image or a failed deployment, 2 a usage error or invalid job. */
export function exitCodeOf(error: unknown): 1 | 2 {
  return error instanceof ByoiError && error.kind === 'invalid-job' ? 2 : 1;
}

// Disks and disk groups.
export function unknownDiskGroup(id: number, groups: string[]): ByoiError {
  const known = groups.length ? `the disk groups here are: ${groups.join('; ')}` : 'no disk here may be deployed onto';
  return new ByoiError('failed', `Disk group ${id} does not exist on this server: ${known}.`);
}

export function notADisk(path: string): ByoiError {
  return new ByoiError('failed', `${path} is not a disk of this server.`);
}

export function systemDisk(path: string, reason: string): ByoiError {
  return new ByoiError('failed', `Refusing to write to ${path}: ${reason}.`);
}

export function couldNotReleaseDisk(path: string, holder: string, detail?: string): ByoiError {
  return new ByoiError('failed', `Could not release disk ${path}: it is still held by ${holder}.`, detail);
}

// ---- Deploy: the job, download, checksum, inspection, disk, write and GPT steps. ----

/** An invalid job: exit 2, nothing downloaded or written. */
export function invalidJob(message: string, detail?: string): ByoiError {
  return new ByoiError('invalid-job', message, detail);
}

/** A deployment step that failed: exit 1. */
export function failed(message: string, detail?: string): ByoiError {
  return new ByoiError('failed', message, detail);
}

export const messages = {
  // The job (OVH's sentences verbatim, then ours in the same style).
  badImageType: 'Bad format image, expected: qcow2, raw.',
  badChecksumType: 'Bad checkSumType, expected: md5, sha1, sha256, sha512.',
  checksumPair: 'Please provide checkSum AND checkSumType or none of them',
  badChecksum: (type: string, digits: number) => `Bad checkSum, expected: ${digits} hexadecimal digits for ${type}.`,
  missingUrl: 'Missing URL, expected: the http or https address of the image.',
  badUrl: 'Bad URL, expected: an http or https address.',
  badDiskGroupId: 'Bad diskGroupId, expected: a positive integer.',
  badDisk: 'Bad disk, expected: the path of a block device such as /dev/sda.',
  badHttpHeader: (name: string) => `Bad httpHeader ${JSON.stringify(name)}, expected: a header name and a value on one line.`,
  badHttpHeaderFlag: "Bad httpHeader, expected: 'Name: value'.",
  badRamSize: 'Bad ramSize, expected: a number of bytes.',
  badJobBody: 'Bad job, expected: a bringYourOwnImage or reinstall JSON body.',
  unreadableJob: (path: string) => `Could not read job from ${path}.`,
  badField: (name: string, expected: string) => `Bad ${name}, expected: ${expected}.`,

  // Download and checksum.
  tooBigForMemory: (type: string) => `Could not download, ${type} image is too big to download in memory.`,
  downloadFailed: (url: string) => `Could not download image located: ${url}.`,
  checksumMismatch: (type: string, got: string, expected: string) => `Bad ${type} for downloaded file, got: ${got} while expecting ${expected}.`,

  // Inspection.
  notQcow2: (format: string) => `image provided format is ${format} which does not match expected qcow2 format`,
  noPartitionTable: (contents: string) => `image provided format is not of type raw because no partition table was found. It seems to contain: ${contents}`,
  largerThanDevice: (imageBytes: number, deviceBytes: number) => `image provided has a size of ${imageBytes} bytes which is larger than device of ${deviceBytes} bytes`,

  // Write, partition table, reboot.
  writeFailed: (type: string) => `Can't write ${type} on disk.`,
  gptFixFailed: 'Can not move backup GPT data structures to the end of disk.',
  rereadFailed: (disk: string) => `Could not re-read the partition table of ${disk}.`,
  rebootFailed: 'Could not reboot the server.',
} as const;

// ---- The provisioning API (byoi serve) and its agent (byoi agent). ----

export const apiMessages = {
  badJson: 'Bad request body, expected: a JSON object.',
  badOperatingSystem: 'Bad operatingSystem, expected: byoi_64.',
  missingApiKey: 'You must authenticate: send your API key as "Authorization: Bearer <key>".',
  unknownApiKey: 'This API key is not valid.',
  notYourServer: (serviceName: string) => `You are not allowed to manage the server ${serviceName}.`,
  noSuchServer: (serviceName: string) => `The requested object (serviceName = ${serviceName}) does not exist`,
  noSuchTask: (taskId: string) => `The requested object (taskId = ${taskId}) does not exist`,
  deploymentRunning: (serviceName: string) => `An installation is already in progress on ${serviceName}.`,
  notInstalling: 'Server is not being installed or reinstalled at the moment',
  missingAgentToken: 'The agent must authenticate: send its token as "Authorization: Bearer <token>".',
  wrongAgentToken: 'This agent token is not valid for this server.',
  deploymentFinished: 'This deployment is finished: there is no job to take.',
  badEvents: 'Bad events, expected: {"events": [{status, message, phase, ...}]}.',
  notFound: 'Not found.',
  bootFailed: (serviceName: string) => `Could not boot ${serviceName} on the deployment agent.`,
  badConfig: (path: string, why: string) => `Bad server configuration ${path}: ${why}.`,
  badAgentSettings: (missing: string[]) => `Missing agent settings: ${missing.join(', ')} (flags --server, --service-name, --token or byoi.server=, byoi.service=, byoi.token= on the kernel command line).`,
  jobUnavailable: (url: string) => `Could not fetch the job from ${url}.`,
} as const;

/** The first step of every deployment, before the agent has taken its job. */
export const bootStep = { phase: 'boot', message: 'Booting the server on the deployment agent' } as const;

// --- Config drive ---------------------------------------------------------------------------

/** A config drive field the job gave that cloud-init could not use: exit 2, nothing written. */
export function invalidConfigDrive(message: string): ByoiError {
  return new ByoiError('invalid-job', message);
}

export const configDriveMessages = {
  reservedMetadataKey: (key: string) =>
    `Invalid configdrive metadata: the key "${key}" is reserved by cloud-init (it sets the datasource mode); use another key.`,
  emptyMetadataKey: () => 'Invalid configdrive metadata: a key is empty.',
  metadataKeyTooLong: (key: string, max: number) =>
    `Invalid configdrive metadata: the key "${key.slice(0, 40)}…" is longer than ${max} characters.`,
  metadataKeyControl: (key: string) =>
    `Invalid configdrive metadata: the key ${JSON.stringify(key)} contains control characters.`,
  metadataValueNotString: (key: string) => `Invalid configdrive metadata: the value of "${key}" is not a string.`,
  metadataTooBig: (bytes: number, max: number) =>
    `Invalid configdrive metadata: ${bytes} bytes in all, more than the ${max} bytes allowed.`,
  invalidHostname: (hostname: string, reason: string) =>
    `Invalid configdrive hostname ${JSON.stringify(hostname)}: ${reason}.`,
  invalidSshKey: (index: number, reason: string) => `Invalid configdrive SSH key #${index}: ${reason}.`,
  userDataTooBig: (bytes: number, max: number) =>
    `Invalid configdrive user data: ${bytes} bytes, more than the ${max} bytes a config drive holds.`,
  invalidUserMetadataFlag: (value: string) =>
    `Invalid --user-metadata ${JSON.stringify(value)}: expected key=value.`,
} as const;

/** OVH's sentence for any failure to add the config drive partition; the reason goes in the detail. */
export const COULD_NOT_CREATE_CONFIGDRIVE = 'Could not create configdrive on disk.';

export function couldNotCreateConfigDrive(detail: string): ByoiError {
  return new ByoiError('failed', COULD_NOT_CREATE_CONFIGDRIVE, detail);
}

/** Why the config drive partition could not be made: the detail of COULD_NOT_CREATE_CONFIGDRIVE. */
export const configDriveRefusals = {
  noPartitionTable: (device: string) => `${device} holds no partition table the config drive could be added to.`,
  twoConfigDrives: (numbers: number[]) =>
    `the image already holds ${numbers.length} config-2 partitions (${numbers.join(', ')}); cloud-init would pick one at random.`,
  fourPrimaries: () =>
    'the MBR already has four primary partitions (an extended partition counts as one); no room for a fifth.',
  noRoomAtEnd: (freeBytes: number, neededBytes: number) =>
    `only ${freeBytes} bytes are free at the end of the disk; the config drive partition needs at least ${neededBytes}.`,
  gptBackupNotAtEnd: (backupLba: number, lastLba: number) =>
    `the GPT backup header is at sector ${backupLba}, not at the last sector ${lastLba}; move it to the end of the disk first.`,
  noFreeGptEntry: () => 'every entry of the GPT partition array is used.',
  partitionTooSmall: (number: number, bytes: number, neededBytes: number) =>
    `the existing config-2 partition ${number} has ${bytes} bytes, less than the ${neededBytes} a config drive needs.`,
  imageTooBig: (imageBytes: number, partitionBytes: number) =>
    `the config drive filesystem has ${imageBytes} bytes but its partition only ${partitionBytes}.`,
  imageSectorSize: (imageSectorSize: number, diskSectorSize: number) =>
    `the config drive filesystem uses ${imageSectorSize}-byte sectors, smaller than the disk's ${diskSectorSize}-byte sectors.`,
  toolFailed: (command: string, output: string) => `${command} failed: ${output.trim()}`,
} as const;
