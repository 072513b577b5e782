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
