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

// --- Images and writing them (lib/formats/open.ts, lib/disk/writer.ts) ---

/** An image in a format byoi recognises but does not convert (VMDK, OVA, a compressed stream). */
export function unsupportedImageFormat(format: string, description: string): ByoiError {
  return refusedImage(`image provided format is ${format} (${description}) which byoi cannot convert, expected: qcow2, raw.`);
}

/** OVH's sentence for an image whose content is not the type the job named. */
export function imageFormatMismatch(format: string, expected: string, description: string): ByoiError {
  return refusedImage(`image provided format is ${format} which does not match expected ${expected} format`, `The file is ${description}.`);
}

export function emptyImage(): ByoiError {
  return refusedImage('image provided is empty.');
}

/** Until the qcow2 decoder is wired into lib/formats/open.ts. */
export function qcow2NotAvailable(): ByoiError {
  return refusedImage('qcow2 images cannot be decoded by this build of byoi yet.');
}

/** OVH's sentence for an image whose virtual size exceeds the disk. */
export function imageLargerThanDevice(imageBytes: number, deviceBytes: number): ByoiError {
  return refusedImage(`image provided has a size of ${imageBytes} bytes which is larger than device of ${deviceBytes} bytes`);
}

/** A target that is neither a regular file (or a new one) nor a block device. */
export function badTarget(path: string, what: string): ByoiError {
  return new ByoiError('invalid-job', `Can not write to ${path}: it is ${what}, not a regular file or a block device.`);
}

/** The block device is mounted or held open exclusively by something else. */
export function deviceBusy(path: string): ByoiError {
  return new ByoiError('failed', `Can not write to ${path}: the device is in use (mounted, or held by another program).`);
}

/** OVH's sentence for a failure while writing; the cause goes in the detail. */
export function cannotWriteImage(format: string, cause: string): ByoiError {
  return new ByoiError('failed', `Can't write ${format} on disk.`, cause);
}

/** IMAGE given on the command line cannot be read. */
export function cannotReadImage(path: string, cause: string): ByoiError {
  return new ByoiError('invalid-job', `Can not read image ${path}: ${cause}`);
}
