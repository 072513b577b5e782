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
