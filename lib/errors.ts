// The vocabulary: every message byoi shows a user or reports in its status lives here.
// Sentences OVHcloud documents are kept verbatim (the "Result examples" of OVHcloud's Bring Your
// Own Image guide); failures OVH has no sentence for get one in the same style.
// One shape: a factory per failure, returning a ByoiError (or, for the API's refusals, an ApiError with its
// HTTP status) with its stable code; the few sentences that are not failures are named as such.
// In order: the codes and the error types; qcow2; disks; the config drive; images and writing them; the
// job; download, checksum and partition tables; the API, its agent and APIv6; a deployment's life after
// POST; network configuration; UEFI; compressed raw, VMDK and OVA; the streaming mode.
import { ApiError, type OvhErrorCode } from './api/ovh-error.ts';

/** What went wrong, for exit codes and status: a bad job, a refused image, or a failure while deploying. */
export type ErrorKind = 'invalid-job' | 'refused-image' | 'failed';

/**
 * Every failure's code, stable and machine-readable: the API, the control panel and the tests match on
 * them, so a code is never renamed or reused for another failure (test/errors.test.ts keeps the list).
 */
export const errorCodes = [
  'agent-lost',
  'agent-silent',
  'bad-agent-settings',
  'bad-ca-file',
  'bad-checksum',
  'bad-checksum-type',
  'bad-config',
  'bad-content-length',
  'bad-content-type',
  'bad-credential-request',
  'bad-csrf-token',
  'bad-customer-name',
  'bad-disk',
  'bad-disk-group-id',
  'bad-events',
  'bad-field',
  'bad-http-header',
  'bad-http-header-flag',
  'bad-image-type',
  'bad-job-body',
  'bad-json',
  'bad-loader-path',
  'bad-network',
  'bad-operating-system',
  'bad-ram-size',
  'bad-request',
  'bad-request-url',
  'bad-secrets-key',
  'bad-service-name',
  'bad-target',
  'bad-url',
  'bad-validation-form',
  'body-too-large',
  'boot-entry-failed',
  'boot-failed',
  'boot-manager-unavailable',
  'cancelled',
  'cannot-read-image',
  'cannot-write-image',
  'checksum-mismatch',
  'checksum-pair',
  'compressed-image-bad',
  'compressed-image-too-big',
  'configdrive-four-primaries',
  'configdrive-gpt-backup-not-at-end',
  'configdrive-image-sector-size',
  'configdrive-image-too-big',
  'configdrive-no-free-gpt-entry',
  'configdrive-no-partition-table',
  'configdrive-no-room-at-end',
  'configdrive-partition-not-made',
  'configdrive-partition-too-small',
  'configdrive-tool-failed',
  'configdrive-two-config-drives',
  'could-not-release-disk',
  'credential-request-gone',
  'customer-exists',
  'database-password-on-command-line',
  'database-unavailable',
  'decompression-stopped',
  'decompression-worker-failed',
  'deployment-cancelled',
  'deployment-finished',
  'deployment-running',
  'device-busy',
  'download-failed',
  'empty-image',
  'empty-metadata-key',
  'forbidden-ip',
  'form-field-too-large',
  'form-too-large',
  'gpt-fix-failed',
  'headers-too-large',
  'image-file-changed',
  'image-file-unreadable',
  'image-format-mismatch',
  'image-larger-than-device',
  'insecure-api',
  'internal-error',
  'internal-write-error',
  'invalid-credential',
  'invalid-credential-request',
  'invalid-hostname',
  'invalid-key',
  'invalid-signature',
  'invalid-ssh-key',
  'invalid-user-metadata-flag',
  'job-unavailable',
  'macs-needed',
  'mbr-sector-size-mismatch',
  'metadata-key-control',
  'metadata-key-too-long',
  'metadata-too-big',
  'metadata-value-not-string',
  'missing-agent-token',
  'missing-api-key',
  'missing-url',
  'no-disks-report',
  'no-esp',
  'no-loader',
  'no-partition-table',
  'no-partition-table-in-disk',
  'no-rescue-image',
  'no-secret',
  'no-such-application',
  'no-such-credential',
  'no-such-customer',
  'no-such-mac',
  'no-such-server',
  'no-such-task',
  'not-a-disk',
  'not-credential',
  'not-found',
  'not-granted-call',
  'not-installing',
  'not-multipart',
  'not-pending',
  'not-provisioning-network',
  'not-your-server',
  'ova-bad',
  'ova-manifest-mismatch',
  'ova-unsupported',
  'qcow2-backing-file',
  'qcow2-bad-cluster-bits',
  'qcow2-bad-compressed-cluster',
  'qcow2-bad-header-extension',
  'qcow2-bad-header-length',
  'qcow2-bad-magic',
  'qcow2-bad-refcount-order',
  'qcow2-bad-version',
  'qcow2-beyond-end',
  'qcow2-compressed-with-bitmap',
  'qcow2-compression-bit-mismatch',
  'qcow2-corrupt',
  'qcow2-encrypted',
  'qcow2-extended-l2-small-clusters',
  'qcow2-external-data-file',
  'qcow2-l1-too-large',
  'qcow2-l1-too-small',
  'qcow2-misaligned',
  'qcow2-raw-data-file-without-data-file',
  'qcow2-subcluster-alloc-and-zero',
  'qcow2-subcluster-without-cluster',
  'qcow2-too-short',
  'qcow2-unknown-compression',
  'qcow2-unknown-features',
  'qcow2-v2-zero-flag',
  'qcow2-virtual-size-too-big',
  'query-time-out',
  'range-not-satisfiable',
  'read-back-mismatch',
  'reboot-failed',
  'request-timeout',
  'reread-failed',
  'reserved-key',
  'reserved-metadata-key',
  'sector-size-mismatch',
  'shared-key-needed',
  'stream-image-bad',
  'streamed-image-too-big',
  'streaming-unsupported',
  'system-disk',
  'too-big-for-memory',
  'too-many-failures',
  'too-many-pending',
  'unexpected',
  'unknown-api-key',
  'unknown-disk-group',
  'unknown-phase',
  'unreadable-ca-file',
  'unreadable-job',
  'unreadable-token-file',
  'unsupported-image-format',
  'url-too-long',
  'user-data-too-big',
  'vmdk-bad',
  'vmdk-unsupported',
  'wrong-agent-token',
  'wrong-sign-in',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** What a ByoiError says beyond its sentence. */
export interface ErrorDetails {
  /** The cause in more words, for the log and the status detail; never shown instead of the message. */
  readonly detail?: string | undefined;
  /** The underlying error (ES2022 `cause`), when there is one. */
  readonly cause?: unknown;
  /** The job field (OVH's name, or a command-line flag) the failure is about: the control panel shows it there. */
  readonly field?: string | undefined;
}

/** An error whose message is fit for the status file and the last line of stderr. */
export class ByoiError extends Error {
  readonly kind: ErrorKind;
  /** Which failure this is, stable and machine-readable (kebab-case): what the API, the panel and tests match on. */
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  readonly field: string | undefined;

  constructor(kind: ErrorKind, code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ByoiError';
    this.kind = kind;
    this.code = code;
    this.detail = details.detail;
    this.field = details.field;
  }
}

/** An image that byoi will not write: a malformed, hostile or unsupported file. */
function refusedImage(code: ErrorCode, message: string, details?: ErrorDetails): ByoiError {
  return new ByoiError('refused-image', code, message, details);
}

/** Exit codes of every command: 0 done, 1 a refused image or a failed deployment, 2 a usage error or invalid job. */
export function exitCodeOf(error: unknown): 1 | 2 {
  return error instanceof ByoiError && error.kind === 'invalid-job' ? 2 : 1;
}

// qcow2 images (lib/formats/qcow2*.ts). "Bad" means malformed or hostile; "Unsupported" means a valid
// qcow2 feature that a self-contained deployment cannot honour. Offsets are printed in hex, as qemu does.

const hex = (value: number | bigint): string => `0x${value.toString(16)}`;

export function qcow2TooShort(fileSize: number): ByoiError {
  return refusedImage(
    'qcow2-too-short',
    `Bad qcow2 image: the file is ${fileSize} bytes, too short to hold a qcow2 header.`,
  );
}
export function qcow2BadMagic(): ByoiError {
  return refusedImage('qcow2-bad-magic', 'Bad qcow2 image: the file does not start with the qcow2 magic "QFI\\xfb".');
}
export function qcow2BadVersion(version: number): ByoiError {
  return refusedImage(
    'qcow2-bad-version',
    `Unsupported qcow2 image: version ${version}; byoi reads qcow2 versions 2 and 3.`,
  );
}
export function qcow2UnknownFeatures(names: readonly string[]): ByoiError {
  return refusedImage(
    'qcow2-unknown-features',
    `Unsupported qcow2 image: it needs features byoi does not know: ${names.join(', ')}.`,
  );
}
export function qcow2Encrypted(method: number): ByoiError {
  return refusedImage(
    'qcow2-encrypted',
    `Unsupported qcow2 image: it is encrypted (${method === 1 ? 'AES' : method === 2 ? 'LUKS' : `method ${method}`}); deploy an unencrypted image.`,
  );
}
export function qcow2BackingFile(name: string): ByoiError {
  return refusedImage(
    'qcow2-backing-file',
    `Unsupported qcow2 image: it needs the backing file "${name}"; make a self-contained image first (qemu-img convert -O qcow2).`,
  );
}
export function qcow2ExternalDataFile(name: string): ByoiError {
  return refusedImage(
    'qcow2-external-data-file',
    `Unsupported qcow2 image: its data lives in the external data file "${name}", which is not part of the image.`,
  );
}
export function qcow2RawDataFileWithoutDataFile(): ByoiError {
  return refusedImage(
    'qcow2-raw-data-file-without-data-file',
    'Bad qcow2 image: autoclear feature bit 1 (raw external data) is set but the image has no external data file.',
  );
}
export function qcow2Corrupt(): ByoiError {
  return refusedImage(
    'qcow2-corrupt',
    'Bad qcow2 image: it is marked corrupt (qemu found inconsistent metadata); repair it with qemu-img check -r all first.',
  );
}
export function qcow2BadClusterBits(bits: number): ByoiError {
  return refusedImage(
    'qcow2-bad-cluster-bits',
    `Bad qcow2 image: cluster_bits is ${bits}; qcow2 allows 9 to 21 (clusters of 512 bytes to 2 MiB).`,
  );
}
export function qcow2BadHeaderLength(length: number, clusterSize: number): ByoiError {
  return refusedImage(
    'qcow2-bad-header-length',
    `Bad qcow2 image: header_length is ${length}; a version 3 header is at least 104 bytes, a multiple of 8 and inside the first cluster (${clusterSize} bytes).`,
  );
}
export function qcow2BadHeaderExtension(offset: number): ByoiError {
  return refusedImage(
    'qcow2-bad-header-extension',
    `Bad qcow2 image: the header extension at offset ${hex(offset)} runs past the end of the header area.`,
  );
}
export function qcow2BadRefcountOrder(order: number): ByoiError {
  return refusedImage(
    'qcow2-bad-refcount-order',
    `Bad qcow2 image: refcount_order is ${order}; qcow2 allows at most 6 (64-bit refcounts).`,
  );
}
export function qcow2UnknownCompression(type: number): ByoiError {
  return refusedImage(
    'qcow2-unknown-compression',
    `Unsupported qcow2 image: compression type ${type} is unknown (byoi reads 0, zlib, and 1, zstd).`,
  );
}
export function qcow2CompressionBitMismatch(type: 'zlib' | 'zstd'): ByoiError {
  return refusedImage(
    'qcow2-compression-bit-mismatch',
    type === 'zlib'
      ? 'Bad qcow2 image: the compression type is zlib but incompatible feature bit 3 (compression type) is set.'
      : 'Bad qcow2 image: the compression type is zstd but incompatible feature bit 3 (compression type) is not set.',
  );
}
export function qcow2ExtendedL2SmallClusters(clusterSize: number): ByoiError {
  return refusedImage(
    'qcow2-extended-l2-small-clusters',
    `Bad qcow2 image: extended L2 entries need clusters of at least 16384 bytes (512-byte subclusters); this image has ${clusterSize}-byte clusters.`,
  );
}
export function qcow2VirtualSizeTooBig(size: bigint): ByoiError {
  return refusedImage(
    'qcow2-virtual-size-too-big',
    `Bad qcow2 image: its virtual size of ${size} bytes is more than byoi can represent (at most 2^52 bytes, 4 PiB: byte offsets past it lose precision).`,
  );
}
export function qcow2L1TooSmall(entries: number, needed: number): ByoiError {
  return refusedImage(
    'qcow2-l1-too-small',
    `Bad qcow2 image: the L1 table has ${entries} entries but the virtual size needs ${needed}.`,
  );
}
export function qcow2L1TooLarge(entries: number): ByoiError {
  return refusedImage(
    'qcow2-l1-too-large',
    `Bad qcow2 image: the L1 table has ${entries} entries, above the limit of 4194304 (32 MiB).`,
  );
}
/** `what` names a structure: "the L1 table", "the L2 table", "the data of guest offset 0x...". */
export function qcow2BeyondEnd(what: string, offset: number | bigint, fileSize: number): ByoiError {
  return refusedImage(
    'qcow2-beyond-end',
    `Bad qcow2 image: ${what} at offset ${hex(offset)} is beyond the end of the file (${fileSize} bytes).`,
  );
}
export function qcow2Misaligned(what: string, offset: number | bigint, clusterSize: number): ByoiError {
  return refusedImage(
    'qcow2-misaligned',
    `Bad qcow2 image: ${what} at offset ${hex(offset)} is not aligned to the cluster size (${clusterSize} bytes).`,
  );
}
export function qcow2GuestData(guestOffset: number): string {
  return `the data of guest offset ${hex(guestOffset)}`;
}
export function qcow2CompressedData(guestOffset: number): string {
  return `the compressed data of guest offset ${hex(guestOffset)}`;
}
export function qcow2V2ZeroFlag(guestOffset: number): ByoiError {
  return refusedImage(
    'qcow2-v2-zero-flag',
    `Bad qcow2 image: the cluster at guest offset ${hex(guestOffset)} has the zero flag, which version 2 images do not have.`,
  );
}
export function qcow2SubclusterAllocAndZero(guestOffset: number, subcluster: number): ByoiError {
  return refusedImage(
    'qcow2-subcluster-alloc-and-zero',
    `Bad qcow2 image: subcluster ${subcluster} of the cluster at guest offset ${hex(guestOffset)} is marked both allocated and zero.`,
  );
}
export function qcow2SubclusterWithoutCluster(guestOffset: number): ByoiError {
  return refusedImage(
    'qcow2-subcluster-without-cluster',
    `Bad qcow2 image: the cluster at guest offset ${hex(guestOffset)} has allocated subclusters but no host cluster.`,
  );
}
export function qcow2CompressedWithBitmap(guestOffset: number): ByoiError {
  return refusedImage(
    'qcow2-compressed-with-bitmap',
    `Bad qcow2 image: the compressed cluster at guest offset ${hex(guestOffset)} has a non-zero subcluster bitmap.`,
  );
}
export function qcow2BadCompressedCluster(
  guestOffset: number,
  codec: 'zlib' | 'zstd',
  clusterSize: number,
  reason: string,
): ByoiError {
  return refusedImage(
    'qcow2-bad-compressed-cluster',
    `Bad qcow2 image: the ${codec} data of guest offset ${hex(guestOffset)} does not decompress to exactly one cluster (${clusterSize} bytes): ${reason}.`,
  );
}
export function decompressionWorkerFailed(reason: string): ByoiError {
  return new ByoiError(
    'failed',
    'decompression-worker-failed',
    `Could not decompress the image: a decompression thread failed (${reason}).`,
  );
}
export function decompressionStopped(): ByoiError {
  return new ByoiError('failed', 'decompression-stopped', 'Could not decompress the image: decompression was stopped.');
}

// Disks and disk groups.
export function unknownDiskGroup(id: number, groups: string[]): ByoiError {
  const known = groups.length ? `the disk groups here are: ${groups.join('; ')}` : 'no disk here may be deployed onto';
  return new CustomerFailure('unknown-disk-group', `Disk group ${id} does not exist on this server: ${known}.`);
}

export function notADisk(path: string): ByoiError {
  return new ByoiError('failed', 'not-a-disk', `${path} is not a disk of this server.`);
}

export function systemDisk(path: string, reason: string): ByoiError {
  return new ByoiError('failed', 'system-disk', `Refusing to write to ${path}: ${reason}.`);
}

export function couldNotReleaseDisk(path: string, holder: string, detail?: string): ByoiError {
  return new ByoiError(
    'failed',
    'could-not-release-disk',
    `Could not release disk ${path}: it is still held by ${holder}.`,
    { detail },
  );
}

// --- Config drive ---------------------------------------------------------------------------

/** A config drive field the job gave that cloud-init could not use: exit 2, nothing written. */
function invalidConfigDrive(code: ErrorCode, field: string, message: string): ByoiError {
  return new ByoiError('invalid-job', code, message, { field });
}

export function reservedMetadataKey(key: string): ByoiError {
  return invalidConfigDrive(
    'reserved-metadata-key',
    'userMetadatas',
    `Invalid configdrive metadata: the key "${key}" is reserved by cloud-init (it sets the datasource mode); use another key.`,
  );
}
export function emptyMetadataKey(): ByoiError {
  return invalidConfigDrive('empty-metadata-key', 'userMetadatas', 'Invalid configdrive metadata: a key is empty.');
}
export function metadataKeyTooLong(key: string, max: number): ByoiError {
  return invalidConfigDrive(
    'metadata-key-too-long',
    'userMetadatas',
    `Invalid configdrive metadata: the key "${key.slice(0, 40)}…" is longer than ${max} characters.`,
  );
}
export function metadataKeyControl(key: string): ByoiError {
  return invalidConfigDrive(
    'metadata-key-control',
    'userMetadatas',
    `Invalid configdrive metadata: the key ${JSON.stringify(key)} contains control characters.`,
  );
}
export function metadataValueNotString(key: string): ByoiError {
  return invalidConfigDrive(
    'metadata-value-not-string',
    'userMetadatas',
    `Invalid configdrive metadata: the value of "${key}" is not a string.`,
  );
}
export function metadataTooBig(bytes: number, max: number): ByoiError {
  return invalidConfigDrive(
    'metadata-too-big',
    'userMetadatas',
    `Invalid configdrive metadata: ${bytes} bytes in all, more than the ${max} bytes allowed.`,
  );
}
export function invalidHostname(hostname: string, reason: string): ByoiError {
  return invalidConfigDrive(
    'invalid-hostname',
    'hostname',
    `Invalid configdrive hostname ${JSON.stringify(hostname)}: ${reason}.`,
  );
}
export function invalidSshKey(index: number, reason: string): ByoiError {
  return invalidConfigDrive('invalid-ssh-key', 'sshKey', `Invalid configdrive SSH key #${index}: ${reason}.`);
}
export function userDataTooBig(bytes: number, max: number): ByoiError {
  return invalidConfigDrive(
    'user-data-too-big',
    'userData',
    `Invalid configdrive user data: ${bytes} bytes, more than the ${max} bytes a config drive holds.`,
  );
}
export function invalidUserMetadataFlag(value: string): ByoiError {
  return invalidConfigDrive(
    'invalid-user-metadata-flag',
    '--user-metadata',
    `Invalid --user-metadata ${JSON.stringify(value)}: expected key=value.`,
  );
}

/** OVH's sentence for any failure to add the config drive partition; the reason goes in the detail. */
function couldNotCreateConfigDrive(code: ErrorCode, detail: string): ByoiError {
  return new ByoiError('failed', code, 'Could not create configdrive on disk.', { detail });
}

// Why the config drive partition could not be made: each is the detail of OVH's one sentence.
export function configDrivePartitionNotMade(got: string, number: number, start: number, sectors: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-partition-not-made',
    `the partition table shows ${got} where partition ${number} at ${start}+${sectors} was created.`,
  );
}
export function configDriveNoPartitionTable(device: string): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-no-partition-table',
    `${device} holds no partition table the config drive could be added to.`,
  );
}
export function configDriveTwoConfigDrives(numbers: number[]): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-two-config-drives',
    `the image already holds ${numbers.length} config-2 partitions (${numbers.join(', ')}); cloud-init would pick one at random.`,
  );
}
export function configDriveFourPrimaries(): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-four-primaries',
    'the MBR already has four primary partitions (an extended partition counts as one); no room for a fifth.',
  );
}
export function configDriveNoRoomAtEnd(freeBytes: number, neededBytes: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-no-room-at-end',
    `only ${freeBytes} bytes are free at the end of the disk; the config drive partition needs at least ${neededBytes}.`,
  );
}
export function configDriveGptBackupNotAtEnd(backupLba: number, lastLba: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-gpt-backup-not-at-end',
    `the GPT backup header is at sector ${backupLba}, not at the last sector ${lastLba}; move it to the end of the disk first.`,
  );
}
export function configDriveNoFreeGptEntry(): ByoiError {
  return couldNotCreateConfigDrive('configdrive-no-free-gpt-entry', 'every entry of the GPT partition array is used.');
}
export function configDrivePartitionTooSmall(number: number, bytes: number, neededBytes: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-partition-too-small',
    `the existing config-2 partition ${number} has ${bytes} bytes, less than the ${neededBytes} a config drive needs.`,
  );
}
export function configDriveImageTooBig(imageBytes: number, partitionBytes: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-image-too-big',
    `the config drive filesystem has ${imageBytes} bytes but its partition only ${partitionBytes}.`,
  );
}
export function configDriveImageSectorSize(imageSectorSize: number, diskSectorSize: number): ByoiError {
  return couldNotCreateConfigDrive(
    'configdrive-image-sector-size',
    `the config drive filesystem uses ${imageSectorSize}-byte sectors, smaller than the disk's ${diskSectorSize}-byte sectors.`,
  );
}
export function configDriveToolFailed(command: string, output: string): ByoiError {
  return couldNotCreateConfigDrive('configdrive-tool-failed', `${command} failed: ${output.trim()}`);
}

// --- Images and writing them (lib/formats/open.ts, lib/write/) ---

/** An image in a format byoi recognises but does not convert (VMDK, OVA, a compressed stream). */
export function unsupportedImageFormat(format: string, description: string): ByoiError {
  return refusedImage(
    'unsupported-image-format',
    `image provided format is ${format} (${description}) which byoi cannot convert, expected: qcow2, raw, ova, vmdk.`,
  );
}

/** OVH's sentence for an image whose content is not the type the job named. */
export function imageFormatMismatch(format: string, expected: string, description: string): ByoiError {
  return refusedImage(
    'image-format-mismatch',
    `image provided format is ${format} which does not match expected ${expected} format`,
    { detail: `The file is ${description}.` },
  );
}

export function emptyImage(): ByoiError {
  return refusedImage('empty-image', 'image provided is empty.');
}

/** OVH's sentence for an image whose virtual size exceeds the disk. */
export function imageLargerThanDevice(imageBytes: number, deviceBytes: number): ByoiError {
  return refusedImage(
    'image-larger-than-device',
    `image provided has a size of ${imageBytes} bytes which is larger than device of ${deviceBytes} bytes`,
  );
}

/** A target that is neither a regular file (or a new one) nor a block device. */
export function badTarget(path: string, what: string): ByoiError {
  return new ByoiError(
    'invalid-job',
    'bad-target',
    `Can not write to ${path}: it is ${what}, not a regular file or a block device.`,
  );
}

/** The block device is mounted or held open exclusively by something else. */
export function deviceBusy(path: string): ByoiError {
  return new ByoiError(
    'failed',
    'device-busy',
    `Can not write to ${path}: the device is in use (mounted, or held by another program).`,
  );
}

/** An error byoi has no sentence for (a bug, or a failure nobody foresaw): its words, scrubbed of secrets. */
export function unexpectedError(text: string, details?: ErrorDetails): ByoiError {
  return failed('unexpected', `Unexpected error: ${text}`, details);
}

/** A bug of byoi's met while writing (no system call failed): never reported as the disk's failure. */
export function internalWriteError(detail: string, cause?: unknown): ByoiError {
  return new ByoiError(
    'failed',
    'internal-write-error',
    'Internal error while writing the image (a bug of byoi, not a failure of the disk).',
    { detail, cause },
  );
}

/** OVH's sentence for a failure while writing; the cause goes in the detail. */
export function cannotWriteImage(format: string, detail: string, cause?: unknown): ByoiError {
  return new ByoiError('failed', 'cannot-write-image', `Can't write ${format} on disk.`, { detail, cause });
}

/** Read-back verification found other bytes on the target than were written: a failed deployment. */
export function readBackMismatch(detail: string): ByoiError {
  return new ByoiError(
    'failed',
    'read-back-mismatch',
    'The disk does not read back what was written: it may be failing.',
    { detail },
  );
}

/** The image file (a local IMAGE) is shorter than when it was opened: its bytes are no longer those checked. */
export function imageFileChanged(endedAt: number): ByoiError {
  return new ByoiError(
    'failed',
    'image-file-changed',
    `The image file changed while it was read: it now ends at byte ${endedAt}.`,
  );
}

/** A read of the image file (a local IMAGE) failed after it was opened. */
export function imageFileUnreadable(reason: string, cause?: unknown): ByoiError {
  return new ByoiError('failed', 'image-file-unreadable', `Could not read the image file: ${reason}.`, { cause });
}

/** IMAGE given on the command line cannot be read. */
export function cannotReadImage(path: string, reason: string, cause?: unknown): ByoiError {
  return new ByoiError('invalid-job', 'cannot-read-image', `Can not read image ${path}: ${reason}`, { cause });
}

// ---- Deploy: the job, download, checksum, inspection, disk, write and GPT steps. ----

/** An invalid job: exit 2, nothing downloaded or written. */
function invalidJob(code: ErrorCode, message: string, details?: ErrorDetails): ByoiError {
  return new ByoiError('invalid-job', code, message, details);
}

/** A deployment step that failed: exit 1. */
function failed(code: ErrorCode, message: string, details?: ErrorDetails): ByoiError {
  return new ByoiError('failed', code, message, details);
}

// The job (OVH's sentences verbatim, then ours in the same style); `field` names the job field.
function badJobField(code: ErrorCode, field: string, message: string, details?: ErrorDetails): ByoiError {
  return invalidJob(code, message, { ...details, field });
}
export function badImageType(): ByoiError {
  return badJobField('bad-image-type', 'type', 'Bad format image, expected: qcow2, raw, ova.');
}
export function badChecksumType(): ByoiError {
  return badJobField('bad-checksum-type', 'checkSumType', 'Bad checkSumType, expected: md5, sha1, sha256, sha512.');
}
export function checksumPair(): ByoiError {
  return badJobField('checksum-pair', 'checkSum', 'Please provide checkSum AND checkSumType or none of them');
}
export function badChecksum(type: string, digits: number): ByoiError {
  return badJobField('bad-checksum', 'checkSum', `Bad checkSum, expected: ${digits} hexadecimal digits for ${type}.`);
}
export function missingUrl(): ByoiError {
  return badJobField('missing-url', 'URL', 'Missing URL, expected: the http or https address of the image.');
}
export function badUrl(): ByoiError {
  return badJobField('bad-url', 'URL', 'Bad URL, expected: an http or https address.');
}
export function badDiskGroupId(): ByoiError {
  return badJobField('bad-disk-group-id', 'diskGroupId', 'Bad diskGroupId, expected: a positive integer.');
}
export function badDisk(): ByoiError {
  return badJobField('bad-disk', 'disk', 'Bad disk, expected: the path of a block device such as /dev/sda.');
}
export function badHttpHeader(name: string): ByoiError {
  return badJobField(
    'bad-http-header',
    'httpHeader',
    `Bad httpHeader ${JSON.stringify(name)}, expected: a header name and a value on one line.`,
  );
}
export function badHttpHeaderFlag(): ByoiError {
  return badJobField('bad-http-header-flag', '--http-header', "Bad httpHeader, expected: 'Name: value'.");
}
export function badRamSize(): ByoiError {
  return badJobField('bad-ram-size', 'ramSize', 'Bad ramSize, expected: a number of bytes.');
}
export function badJobBody(): ByoiError {
  return invalidJob('bad-job-body', 'Bad job, expected: a bringYourOwnImage or reinstall JSON body.');
}
export function unreadableJob(path: string, details?: ErrorDetails): ByoiError {
  return invalidJob('unreadable-job', `Could not read job from ${path}.`, details);
}
export function unreadableCaFile(path: string, details?: ErrorDetails): ByoiError {
  return invalidJob('unreadable-ca-file', `Could not read CA certificates from ${path}.`, details);
}
/** A field (of the job, or a flag such as `--listen`) whose value is not what `expected` says. */
export function badField(name: string, expected: string): ByoiError {
  return badJobField('bad-field', name, `Bad ${name}, expected: ${expected}.`);
}
export function reservedKey(field: string): ByoiError {
  return badJobField(
    'reserved-key',
    field,
    `Bad ${field}, expected: names other than __proto__, constructor and prototype.`,
  );
}

/** The detail of downloadFailed when the download's deadline passes. */
export function downloadDeadlineDetail(seconds: number, held: number, total: number | null): string {
  return `the download did not finish within ${seconds} s (${held} of ${total ?? 'unknown'} bytes received)`;
}

// ---- Download, checksum, inspection, partition table and reboot: OVH's sentences verbatim. ----

export function downloadFailed(url: string, details?: ErrorDetails): ByoiError {
  return new CustomerFailure('download-failed', `Could not download image located: ${url}.`, details);
}
export function tooBigForMemory(type: string): ByoiError {
  return new CustomerFailure(
    'too-big-for-memory',
    `Could not download, ${type} image is too big to download in memory.`,
  );
}
export function checksumMismatch(type: string, got: string, expected: string): ByoiError {
  return new CustomerFailure(
    'checksum-mismatch',
    `Bad ${type} for downloaded file, got: ${got} while expecting ${expected}.`,
  );
}
export function noPartitionTable(contents: string, details?: ErrorDetails): ByoiError {
  return refusedImage(
    'no-partition-table',
    `image provided format is not of type raw because no partition table was found. It seems to contain: ${contents}`,
    details,
  );
}
/** The same refusal for a qcow2 (or any container) whose disk holds no partition table. */
export function noPartitionTableInDisk(format: string, contents: string): ByoiError {
  return refusedImage(
    'no-partition-table-in-disk',
    `image provided is of type ${format} but its disk has no partition table. It seems to contain: ${contents}`,
  );
}
export function sectorSizeMismatch(imageSector: number, deviceSector: number): ByoiError {
  return refusedImage(
    'sector-size-mismatch',
    `image provided has a GPT for ${imageSector}-byte sectors which does not match device of ${deviceSector}-byte sectors`,
  );
}
export function mbrSectorSizeMismatch(imageSector: number, deviceSector: number): ByoiError {
  return refusedImage(
    'mbr-sector-size-mismatch',
    `image provided has an MBR for ${imageSector}-byte sectors which does not match device of ${deviceSector}-byte sectors`,
  );
}
export function gptFixFailed(details?: ErrorDetails): ByoiError {
  return failed('gpt-fix-failed', 'Can not move backup GPT data structures to the end of disk.', details);
}
export function rereadFailed(disk: string, details?: ErrorDetails): ByoiError {
  return failed('reread-failed', `Could not re-read the partition table of ${disk}.`, details);
}
export function rebootFailed(details?: ErrorDetails): ByoiError {
  return failed('reboot-failed', 'Could not reboot the server.', details);
}

// ---- The provisioning API (byoi serve) and its agent (byoi agent). ----

/** A refusal of the API, answered OVH's way with its HTTP status (lib/api/ovh-error.ts). */
function refusal(code: ErrorCode, statusCode: number, message: string, errorCode?: OvhErrorCode): ApiError {
  return new ApiError(code, statusCode, message, errorCode === undefined ? {} : { errorCode });
}

/** A job the API refuses (400): the ByoiError of its validation, whose code and field it keeps as its cause. */
export function refusedJob(error: ByoiError): ApiError {
  return new ApiError(error.code, 400, error.message, { cause: error });
}

// The request itself: answered however early it fails (framework, HTTP parser, routes).
export function badJson(): ApiError {
  return refusal('bad-json', 400, 'Bad request body, expected: a JSON object.');
}
export function badRequestUrl(): ApiError {
  return refusal('bad-request-url', 400, 'Bad request URL.');
}
export function urlTooLong(): ApiError {
  return refusal('url-too-long', 414, 'The request URL is too long.');
}
export function bodyTooLarge(): ApiError {
  return refusal('body-too-large', 413, 'The request body is too large.');
}
/** 415 for a type the API does not read; the framework answers 400 for a malformed Content-Type. */
export function badContentType(statusCode = 415): ApiError {
  return refusal('bad-content-type', statusCode, 'Bad Content-Type, expected: application/json.');
}
export function badContentLength(): ApiError {
  return refusal('bad-content-length', 400, 'The request body does not match its Content-Length.');
}
export function requestTimeout(): ApiError {
  return refusal('request-timeout', 408, 'The request was not received in time.');
}
export function headersTooLarge(): ApiError {
  return refusal('headers-too-large', 431, 'The request headers are too large.');
}
/** Any other refusal of a request; `statusCode` is the framework's when it gave one (4xx). */
export function badRequest(statusCode = 400): ApiError {
  return refusal('bad-request', statusCode, 'Bad request.');
}
export function internalError(): ApiError {
  return refusal('internal-error', 500, 'Internal server error');
}
export function notFound(): ApiError {
  return refusal('not-found', 404, 'Not found.');
}
export function badServiceName(): ApiError {
  return refusal('bad-service-name', 404, 'The requested object (serviceName) does not exist');
}

// The customer's calls.
export function badOperatingSystem(): ApiError {
  return refusal('bad-operating-system', 400, 'Bad operatingSystem, expected: byoi_64.');
}
export function missingApiKey(): ApiError {
  return refusal('missing-api-key', 401, 'You must authenticate: send your API key as "Authorization: Bearer <key>".');
}
export function unknownApiKey(): ApiError {
  return refusal('unknown-api-key', 403, 'This API key is not valid.');
}
export function notYourServer(serviceName: string): ApiError {
  return refusal('not-your-server', 403, `You are not allowed to manage the server ${serviceName}.`);
}
export function noSuchServer(serviceName: string): ApiError {
  return refusal('no-such-server', 404, `The requested object (serviceName = ${serviceName}) does not exist`);
}
export function noSuchTask(taskId: string): ApiError {
  return refusal('no-such-task', 404, `The requested object (taskId = ${taskId}) does not exist`);
}
export function deploymentRunning(serviceName: string): ApiError {
  return refusal('deployment-running', 409, `An installation is already in progress on ${serviceName}.`);
}
export function notInstalling(): ApiError {
  return refusal('not-installing', 404, 'Server is not being installed or reinstalled at the moment');
}
export function tooManyFailures(): ApiError {
  return refusal('too-many-failures', 429, 'Too many failed authentications from your address: try again later.');
}

// The agent's calls.
export function missingAgentToken(): ApiError {
  return refusal(
    'missing-agent-token',
    401,
    'The agent must authenticate: send its token as "Authorization: Bearer <token>".',
  );
}
export function wrongAgentToken(): ApiError {
  return refusal('wrong-agent-token', 403, 'This agent token is not valid for this server.');
}
export function deploymentFinished(): ApiError {
  return refusal('deployment-finished', 409, 'This deployment is finished: there is no job to take.');
}
export function badEvents(): ApiError {
  return refusal('bad-events', 400, 'Bad events, expected: {"events": [{status, message, phase, ...}]}.');
}

// Network boot (lib/api/routes/netboot.ts).
export function notProvisioningNetwork(): ApiError {
  return refusal(
    'not-provisioning-network',
    403,
    'Network boot is served to the provisioning network only (netboot.clients).',
  );
}
export function rangeNotSatisfiable(): ApiError {
  return refusal('range-not-satisfiable', 416, 'The requested range is outside the file.');
}

// The control panel's form posts (lib/api/routes/panel.ts).
export function badCsrfToken(): ApiError {
  return refusal('bad-csrf-token', 403, 'bad CSRF token');
}
export function notMultipart(): ApiError {
  return refusal('not-multipart', 415, 'expected multipart/form-data');
}
export function formFieldTooLarge(): ApiError {
  return refusal('form-field-too-large', 413, 'form field too large');
}
export function formTooLarge(): ApiError {
  return refusal('form-too-large', 413, 'form too large');
}

// The service's own failures (byoi serve) and its agent's (byoi agent).
export function bootFailed(serviceName: string, details?: ErrorDetails): ByoiError {
  return failed('boot-failed', `Could not boot ${serviceName} on the deployment agent.`, details);
}
export function badConfig(path: string, why: string, details?: ErrorDetails): ByoiError {
  return failed('bad-config', `Bad server configuration ${path}: ${why}.`, details);
}
export function badAgentSettings(missing: string[]): ByoiError {
  return invalidJob(
    'bad-agent-settings',
    `Missing agent settings: ${missing.join(', ')} (flags --server, --service-name, --token-file or $BYOI_AGENT_TOKEN, or byoi.server=, byoi.service=, byoi.token= on the kernel command line).`,
  );
}
/** The agent could not get its job; the detail says why (the API's answer, or one of the reasons below). */
export function jobUnavailable(url: string, details?: ErrorDetails): ByoiError {
  return failed('job-unavailable', `Could not fetch the job from ${url}.`, details);
}
// Why the agent's last attempt to fetch its job is worth retrying: the detail of jobUnavailable.
export const notAJobReason = 'the API answered something that is not a job';
export function apiUnreachableReason(code: string): string {
  return `the API could not be reached (${code})`;
}
export function apiCertificateRefusedReason(code: string): string {
  return `the API's certificate could not be verified (${code}): give the agent the lab's CA (--ca-file, byoi.ca=)`;
}
/** A reason of badConfig: an API key in the config that is too easy to guess. */
export function weakApiKeyReason(where: string): string {
  return `${where} is too weak: use at least 32 random characters (openssl rand -hex 32)`;
}
export function insecureApi(url: string): ByoiError {
  return invalidJob(
    'insecure-api',
    `Refusing to send the agent token to ${url} in clear: use https, or allow plain http explicitly (--insecure or byoi.insecure=1).`,
  );
}
export function badCaFile(path: string, details?: ErrorDetails): ByoiError {
  return invalidJob('bad-ca-file', `Could not read the API's CA certificate ${path}.`, details);
}
export function badSecretsKey(path: string, why: string, details?: ErrorDetails): ByoiError {
  return failed('bad-secrets-key', `Bad secrets key file ${path}: ${why}.`, details);
}
export function databaseUnavailable(location: string, details?: ErrorDetails): ByoiError {
  return failed('database-unavailable', `Could not open the database ${location}.`, details);
}
export function databasePasswordOnCommandLine(): ByoiError {
  return invalidJob(
    'database-password-on-command-line',
    'Do not put the database password on the command line: use PGPASSWORD, a password file (PGPASSFILE or ~/.pgpass) or "database" in the config file.',
  );
}
export function sharedKeyNeeded(path: string | undefined): ByoiError {
  return failed(
    'shared-key-needed',
    `A store on PostgreSQL needs "secretsKeyFile" in the config naming a key file made once and copied to every replica${path ? ` (${path} does not exist)` : ''}: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE.`,
  );
}

/** Sentences that are not failures: the service's warnings in its log, and a deployment's first step. */
export const notices = {
  netbootOpenToAll:
    'netboot.clients is not set: boot scripts, and the agent tokens in them, are answered to any client that reaches this API (docs/netboot.md).',
  fleetWithoutPublicUrl:
    'byoi serve: warning: on PostgreSQL, several replicas usually stand behind a load balancer: set "publicUrl" in the config to its address, or agents are sent to this replica alone and stall if it goes.',
} as const;

/** The first step of every deployment, before the agent has taken its job. */
export const bootStep = { phase: 'boot', message: 'Booting the server on the deployment agent' } as const;

// APIv6 (signed requests, consumer keys): OVH's own error codes and messages, which its clients map to
// their exception types (docs/api.md lists them), and the operator's and the validation page's words.
export function invalidKey(): ApiError {
  return refusal('invalid-key', 403, 'Invalid application key', 'INVALID_KEY');
}
export function notCredential(): ApiError {
  return refusal('not-credential', 403, 'This credential does not exist', 'NOT_CREDENTIAL');
}
export function invalidCredential(): ApiError {
  return refusal('invalid-credential', 403, 'This credential is not valid', 'INVALID_CREDENTIAL');
}
export function invalidSignature(): ApiError {
  return refusal('invalid-signature', 400, 'Invalid signature', 'INVALID_SIGNATURE');
}
export function queryTimeOut(): ApiError {
  return refusal('query-time-out', 400, 'Query out of time', 'QUERY_TIME_OUT');
}
export function notGrantedCall(): ApiError {
  return refusal('not-granted-call', 403, 'This call has not been granted', 'NOT_GRANTED_CALL');
}
export function forbiddenIp(): ApiError {
  return refusal('forbidden-ip', 403, 'This credential cannot be used from your IP address', 'FORBIDDEN');
}
const credentialRequestSentence = (why: string) => `Invalid credential request: ${why}.`;
export function invalidCredentialRequest(why: string): ApiError {
  return refusal('invalid-credential-request', 400, credentialRequestSentence(why));
}
export function noSuchCredential(id: string): ApiError {
  return refusal('no-such-credential', 404, `The requested object (credentialId = ${id}) does not exist`);
}
export function noSuchApplication(id: string): ApiError {
  return refusal('no-such-application', 404, `The requested object (applicationId = ${id}) does not exist`);
}
export function tooManyPending(): ApiError {
  return refusal(
    'too-many-pending',
    429,
    'Too many credential requests of this application are waiting for validation: try again later.',
  );
}
// The validation page.
export function credentialRequestGone(): ApiError {
  return refusal('credential-request-gone', 404, 'This credential request does not exist or is no longer pending.');
}
export function badValidationForm(): ApiError {
  return refusal(
    'bad-validation-form',
    403,
    'The form expired or was not sent by this page: open the validation link again.',
  );
}
export function wrongSignIn(): ApiError {
  return refusal('wrong-sign-in', 401, 'Wrong account name or password.');
}
// Operator subcommands.
export function noSecret(what: string): ByoiError {
  return failed('no-secret', `Give the ${what} on standard input (never on the command line).`);
}
export function customerExists(name: string): ByoiError {
  return failed('customer-exists', `Customer ${name} already exists.`);
}
export function noSuchCustomer(name: string): ByoiError {
  return failed('no-such-customer', `No customer named ${name}.`);
}
export function badCustomerName(): ByoiError {
  return invalidJob('bad-customer-name', 'A customer name is 1 to 64 letters, digits, dots, dashes, underscores or @.');
}
export function notPending(): ByoiError {
  return failed('not-pending', 'No pending credential has this consumer key.');
}
/** An operator subcommand's flags that make an invalid credential request. */
export function badCredentialRequest(why: string): ByoiError {
  return invalidJob('bad-credential-request', credentialRequestSentence(why));
}

// ---- A deployment's life after POST (issue 17): cancellation, the watchdog, netboot, who is at fault. ----

/** A failure caused by what the customer asked for (a bad URL, a wrong checksum, a too-big image): a customerError task. */
export class CustomerFailure extends ByoiError {
  constructor(code: ErrorCode, message: string, details?: ErrorDetails) {
    super('failed', code, message, details);
  }
}

/** Whose fault an error is, for the task's status: the customer's request, or the lab (disk, network, agent). */
export type Fault = 'customer' | 'lab';

export function faultOf(error: unknown): Fault {
  if (error instanceof CustomerFailure) return 'customer';
  return error instanceof ByoiError && (error.kind === 'invalid-job' || error.kind === 'refused-image')
    ? 'customer'
    : 'lab';
}

/** The deployment was cancelled (DELETE) while the agent worked: it stops where it is. */
export class DeploymentCancelled extends ByoiError {
  constructor(detail: string) {
    super('failed', 'cancelled', 'The deployment was cancelled: the agent stopped.', { detail });
  }
}

export function deploymentCancelled(): ApiError {
  return refusal('deployment-cancelled', 410, 'This deployment was cancelled: its agent must stop.');
}
/** The watchdog's verdict, recorded as the deployment's error. */
export function agentSilent(seconds: number): ByoiError {
  return failed(
    'agent-silent',
    `The deployment agent was not heard from for ${seconds} s: the server goes back to rescue mode.`,
  );
}
/** The netboot's verdict, recorded as the deployment's error. */
export function agentLost(boots: number): ByoiError {
  return failed(
    'agent-lost',
    `The server booted ${boots} times without its agent reporting an outcome: the server goes back to rescue mode.`,
  );
}
/** A reason of badConfig: a boot command that would show the agent's token in the process list. */
export function tokenOnCommandLineReason(where: string): string {
  return `${where} must not contain {token}: the agent's token would be readable in the process list; the boot command gets it as BYOI_AGENT_TOKEN (environment) or in the file BYOI_AGENT_TOKEN_FILE (mode 0600)`;
}
export function unreadableTokenFile(path: string, details?: ErrorDetails): ByoiError {
  return invalidJob('unreadable-token-file', `Could not read the agent token from ${path}.`, details);
}
export function noSuchMac(mac: string): ApiError {
  return refusal('no-such-mac', 404, `No server of this lab has the MAC address ${mac}.`);
}
export function noRescueImage(): ApiError {
  return refusal(
    'no-rescue-image',
    404,
    'No rescue kernel and initrd are configured (netboot.kernel, netboot.initrd).',
  );
}
export function noDisksReport(serviceName: string): ApiError {
  return refusal(
    'no-disks-report',
    404,
    `No agent has reported the disks of ${serviceName} yet: they are known once it boots the rescue system.`,
  );
}

/** A phase name the store holds that this version of byoi does not know (lib/report/phases.ts). */
export function unknownPhase(text: string): ByoiError {
  return failed('unknown-phase', `The store holds an unknown deployment phase ${JSON.stringify(text.slice(0, 40))}.`);
}

// ---- Network configuration of the deployed server (lib/configdrive/network-config.ts). ----

/** A network configuration (flags or file) that cannot be turned into cloud-init's: exit 2. */
export function badNetwork(where: string, why: string, details?: ErrorDetails): ByoiError {
  return invalidJob('bad-network', `Bad network configuration (${where}): ${why}.`, details);
}
export function macsNeeded(): ByoiError {
  return invalidJob(
    'macs-needed',
    'Bad network configuration: static addresses need the MAC of the NIC they go on (--mac, or links in the network configuration); byoi takes its own NICs only when it deploys its own disk.',
  );
}

// ---- UEFI boot (lib/disk/efi.ts). ----

export function badLoaderPath(path: string): ByoiError {
  return invalidJob(
    'bad-loader-path',
    `Bad efiBootloaderPath ${JSON.stringify(path.slice(0, 80))}, expected: the absolute path of a file in the EFI system partition, such as \\EFI\\debian\\shimx64.efi.`,
  );
}
export function noEsp(): ByoiError {
  return refusedImage(
    'no-esp',
    'image provided has no EFI system partition (GPT type EF00 or MBR type 0xEF), which a server booting with UEFI needs.',
  );
}
export function noLoader(loader: string, partition: number): ByoiError {
  return refusedImage(
    'no-loader',
    `image provided has no EFI bootloader at ${loader} in its EFI system partition (partition ${partition}).`,
  );
}
/** efibootmgr failed; `cause` is its error. */
export function bootEntryFailed(cause: unknown): ByoiError {
  return failed('boot-entry-failed', 'Could not create the UEFI boot entry.', {
    detail: cause instanceof Error ? cause.message : String(cause),
    cause,
  });
}
export function bootManagerUnavailable(cause: unknown): ByoiError {
  return failed(
    'boot-manager-unavailable',
    'Could not read the UEFI boot entries, so no boot entry could be made after the write (are the EFI variables mounted?).',
    { detail: cause instanceof Error ? cause.message : String(cause), cause },
  );
}

// ---- Compressed raw images, VMDK and OVA (lib/formats/compressed-raw.ts, vmdk*.ts, ova.ts). ----

/** A compressed raw image whose disk grows past what can be written (a decompression bomb, or too big a disk). */
export function compressedImageTooBig(format: string, limit: number): ByoiError {
  return refusedImage(
    'compressed-image-too-big',
    `image provided decompresses (${format}) to more than ${limit} bytes which is larger than device of ${limit} bytes`,
  );
}

/** A compressed raw image (gzip, xz, zstd, bzip2) that does not decode: `reason` says how. */
export function compressedImageBad(format: string, reason: string, details?: ErrorDetails): ByoiError {
  return refusedImage('compressed-image-bad', `Bad ${format} image: ${reason}.`, details);
}

/** A malformed or hostile VMDK: `what` says which structure and where. */
export function vmdkBad(what: string): ByoiError {
  return refusedImage('vmdk-bad', `Bad VMDK image: ${what}.`);
}
/** A valid VMDK that byoi cannot deploy on its own. */
export function vmdkUnsupported(what: string): ByoiError {
  return refusedImage('vmdk-unsupported', `Unsupported VMDK image: ${what}.`);
}

/** A malformed OVA: its tar archive, OVF descriptor or manifest. */
export function ovaBad(what: string): ByoiError {
  return refusedImage('ova-bad', `Bad OVA image: ${what}.`);
}
/** A valid OVA that byoi cannot deploy. */
export function ovaUnsupported(what: string): ByoiError {
  return refusedImage('ova-unsupported', `Unsupported OVA image: ${what}.`);
}
/** The OVA's manifest gives another digest than the file's. */
export function ovaManifestMismatch(name: string, algorithm: string, got: string, expected: string): ByoiError {
  return refusedImage(
    'ova-manifest-mismatch',
    `Bad OVA image: its manifest gives ${algorithm} ${expected} for "${name}", the file has ${got}.`,
  );
}

// ---- The streaming mode (agent/deploy-stream.ts): images larger than RAM, written as they arrive. ----

/** What the streaming mode cannot deploy; the same job without it may work. */
export function streamingUnsupported(what: string): ByoiError {
  return refusedImage(
    'streaming-unsupported',
    `Can not deploy ${what} in streaming mode; deploy it without streaming (it must then fit in RAM).`,
  );
}
/** A failure once the streaming mode has written: the disk was left with no partition table. */
export function streamingAborted(error: ByoiError, disk: string): ByoiError {
  const message = `${error.message} Streaming mode: ${disk} was left with no partition table.`;
  // Whose fault it is does not change (a wrong checksum stays the customer's).
  const details = { detail: error.detail, cause: error };
  return error instanceof CustomerFailure
    ? new CustomerFailure(error.code, message, details)
    : new ByoiError(error.kind, error.code, message, details);
}
/** A compressed image, streamed, that does not decode: `reason` says how. */
export function streamImageBad(format: string, reason: string): ByoiError {
  return refusedImage('stream-image-bad', `Bad ${format} image: ${reason}.`);
}
/** An image, streamed, that runs past the end of the disk. */
export function streamedImageTooBig(deviceBytes: number): ByoiError {
  return refusedImage(
    'streamed-image-too-big',
    `image provided has a size of more than ${deviceBytes} bytes which is larger than device of ${deviceBytes} bytes`,
  );
}
